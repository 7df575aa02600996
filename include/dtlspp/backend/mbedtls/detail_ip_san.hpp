// SPDX-License-Identifier: MIT
// Host checks against IP addresses for the mbedTLS adapter.
//
// mbedTLS 2.28 matches mbedtls_ssl_set_hostname() against the CN and the
// dNSName entries of subjectAltName only: its parser does not even keep
// iPAddress entries (x509_crt.h, "currently only dNSName and OtherName are
// listed"). A client connecting to "127.0.0.1" would therefore fail with a
// CN mismatch against a certificate that names 127.0.0.1, while OpenSSL
// (X509_VERIFY_PARAM_set1_ip_asc) accepts it. To behave the same, the
// adapter sets no host name for an IP literal (SNI must not carry one
// anyway, RFC 6066 §3) and checks the iPAddress entries itself here, in the
// verify callback.
#pragma once

#include <dtlspp/version.hpp>

#include <mbedtls/asn1.h>
#include <mbedtls/oid.h>
#include <mbedtls/x509.h>
#include <mbedtls/x509_crt.h>

#include <dtlspp/transport/detail/native_socket.hpp>

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

namespace dtlspp::detail::mbedtls {

// The address bytes of an IPv4 or IPv6 literal, or nothing for a name.
struct ip_literal {
    std::array<unsigned char, 16> bytes{};
    std::size_t size = 0;
};

inline std::optional<ip_literal> parse_ip_literal(const std::string& text)
{
    ip_literal ip;
    ip.size = detail::parse_numeric_ip(text, ip.bytes);
    if (ip.size == 0) return std::nullopt;
    return ip;
}

// True when the certificate's subjectAltName (OID 2.5.29.17) lists `ip` as
// an iPAddress ([7] OCTET STRING, RFC 5280 §4.2.1.6).
inline bool certificate_names_ip(const mbedtls_x509_crt& crt, const ip_literal& ip) noexcept
{
    if (crt.v3_ext.p == nullptr || crt.v3_ext.len == 0) return false;
    unsigned char* p = crt.v3_ext.p;
    const unsigned char* const extensions_end = crt.v3_ext.p + crt.v3_ext.len;
    std::size_t length = 0;
    // Extensions ::= SEQUENCE OF Extension
    if (mbedtls_asn1_get_tag(&p, extensions_end, &length, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
        return false;
    const unsigned char* const list_end = p + length;
    while (p < list_end) {
        // Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
        if (mbedtls_asn1_get_tag(&p, list_end, &length, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
            return false;
        const unsigned char* const extension_end = p + length;
        std::size_t oid_length = 0;
        if (mbedtls_asn1_get_tag(&p, extension_end, &oid_length, MBEDTLS_ASN1_OID) != 0) return false;
        mbedtls_x509_buf oid{MBEDTLS_ASN1_OID, oid_length, p};
        p += oid_length;
        if (MBEDTLS_OID_CMP(MBEDTLS_OID_SUBJECT_ALT_NAME, &oid) != 0) {
            p = const_cast<unsigned char*>(extension_end);
            continue;
        }
        // critical BOOLEAN DEFAULT FALSE may be absent, and asn1.h leaves *p
        // undefined when mbedtls_asn1_get_bool fails: start again from here.
        // A malformed value then fails the OCTET STRING read below.
        unsigned char* const before_critical = p;
        int critical = 0;
        if (mbedtls_asn1_get_bool(&p, extension_end, &critical) != 0) p = before_critical;
        if (mbedtls_asn1_get_tag(&p, extension_end, &length, MBEDTLS_ASN1_OCTET_STRING) != 0) return false;
        // GeneralNames ::= SEQUENCE OF GeneralName
        if (mbedtls_asn1_get_tag(&p, extension_end, &length, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
            return false;
        const unsigned char* const names_end = p + length;
        while (p < names_end) {
            const unsigned char tag = *p++;
            std::size_t name_length = 0;
            if (mbedtls_asn1_get_len(&p, names_end, &name_length) != 0) return false;
            if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_IP_ADDRESS) && name_length == ip.size &&
                std::memcmp(p, ip.bytes.data(), ip.size) == 0)
                return true;
            p += name_length;
        }
        return false;
    }
    return false;
}

// mbedtls_ssl_set_verify callback: at the leaf, flags a certificate that
// does not name the expected address like mbedTLS flags a wrong host name.
inline int verify_ip_address(void* expected, mbedtls_x509_crt* crt, int depth, std::uint32_t* flags) noexcept
{
    if (depth == 0 && !certificate_names_ip(*crt, *static_cast<const ip_literal*>(expected)))
        *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
}

} // namespace dtlspp::detail::mbedtls
