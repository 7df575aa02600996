#define BOOST_TEST_MODULE admission
#include <boost/test/unit_test.hpp>

#include "support/wire_bytes.hpp"

#include <dtlspp/detail/admission.hpp>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <span>
#include <vector>

namespace dtlspp::detail {

// So a failed check names the reason.
std::ostream& operator<<(std::ostream& out, drop_reason reason)
{
    switch (reason) {
    case drop_reason::none: return out << "none";
    case drop_reason::malformed: return out << "malformed";
    case drop_reason::wrong_epoch: return out << "wrong_epoch";
    case drop_reason::unexpected_type: return out << "unexpected_type";
    case drop_reason::bad_length: return out << "bad_length";
    case drop_reason::unknown_connection_id: return out << "unknown_connection_id";
    }
    return out << "drop_reason " << static_cast<int>(reason);
}

} // namespace dtlspp::detail

namespace {

using bytes = dtlspp::test::wire::bytes;
using dtlspp::content_type;
using dtlspp::detail::admission_limits;
using dtlspp::detail::drop_reason;
using dtlspp::detail::judge_datagram;

using dtlspp::test::wire::cid_record;
using dtlspp::test::wire::concat;
using dtlspp::test::wire::filler;
using dtlspp::test::wire::fragment;
using dtlspp::test::wire::put;
using dtlspp::test::wire::record;

bytes client_hello() { return record(content_type::handshake, 0, 0, fragment(1, 40, 0, 0, filler(40))); }

const bytes own_cid = {std::byte{0x0a}, std::byte{0x1b}, std::byte{0x2c}, std::byte{0x3d}};
const bytes other_cid = {std::byte{0x0a}, std::byte{0x1b}, std::byte{0x2c}, std::byte{0x3e}};

admission_limits with_cid(admission_limits limits = {})
{
    limits.own_connection_id = own_cid;
    limits.connection_id_negotiated = true;
    return limits;
}

drop_reason drop_of(const bytes& datagram, const admission_limits& limits) { return judge_datagram(datagram, limits).drop; }

} // namespace

BOOST_AUTO_TEST_CASE(non_cid_verdicts_are_the_same_with_or_without_a_connection_id)
{
    // Every rule that predates CIDs, judged once without and once with a
    // CID negotiated: plain records never look at it.
    for (const auto& base : {admission_limits{}, with_cid()}) {
        BOOST_TEST_CONTEXT("CID negotiated: " << base.connection_id_negotiated)
        {
            auto open = base;
            open.open = true;
            auto known = base;
            known.known_expansion = 16;
            known.shortest_protected = 16;

            BOOST_TEST(drop_of(client_hello(), base) == drop_reason::none);
            BOOST_TEST(drop_of({}, base) == drop_reason::malformed);
            BOOST_TEST(drop_of(bytes{std::byte{22}, std::byte{0xfe}}, base) == drop_reason::malformed);
            BOOST_TEST(drop_of(record(content_type::application_data, 2, 0, filler(40)), base) ==
                       drop_reason::wrong_epoch);
            BOOST_TEST(drop_of(record(content_type::heartbeat, 0, 0, filler(3)), base) == drop_reason::unexpected_type);

            // Protected: at least the expansion, at most 2^14 plus it.
            BOOST_TEST(drop_of(record(content_type::application_data, 1, 0, filler(23)), base) == drop_reason::bad_length);
            BOOST_TEST(drop_of(record(content_type::application_data, 1, 0, filler(24)), base) == drop_reason::none);
            BOOST_TEST(drop_of(record(content_type::application_data, 1, 0, filler(16384 + 2048)), base) ==
                       drop_reason::none);
            BOOST_TEST(drop_of(record(content_type::application_data, 1, 0, filler(16384 + 2049)), base) ==
                       drop_reason::bad_length);
            BOOST_TEST(drop_of(record(content_type::application_data, 1, 0, filler(16)), known) == drop_reason::none);
            BOOST_TEST(drop_of(record(content_type::application_data, 1, 0, filler(15)), known) ==
                       drop_reason::bad_length);
            BOOST_TEST(drop_of(record(content_type::application_data, 1, 0, filler(16384 + 16)), known) ==
                       drop_reason::none);
            BOOST_TEST(drop_of(record(content_type::application_data, 1, 0, filler(16384 + 17)), known) ==
                       drop_reason::bad_length);
            BOOST_TEST(drop_of(record(content_type::handshake, 0, 0, fragment(11, 16372, 2, 0, filler(16372))), base) ==
                       drop_reason::none);
            BOOST_TEST(drop_of(record(content_type::handshake, 0, 0, fragment(11, 16373, 2, 0, filler(16373))), base) ==
                       drop_reason::bad_length);

            // Plaintext alerts and data only before the association opens.
            const auto alert = record(content_type::alert, 0, 0, {std::byte{2}, std::byte{40}});
            BOOST_TEST(drop_of(alert, base) == drop_reason::none);
            BOOST_TEST(drop_of(alert, open) == drop_reason::wrong_epoch);
            BOOST_TEST(drop_of(record(content_type::application_data, 0, 0, filler(5)), open) ==
                       drop_reason::wrong_epoch);

            // Fragments OpenSSL would mistake or abandon the handshake over.
            BOOST_TEST(drop_of(record(content_type::handshake, 0, 0, fragment(11, 900, 2, 0, {})), base) ==
                       drop_reason::malformed);
            BOOST_TEST(drop_of(record(content_type::handshake, 0, 0, fragment(11, 65537, 2, 0, filler(10))), base) ==
                       drop_reason::malformed);

            const auto finish = concat({record(content_type::change_cipher_spec, 0, 6, {std::byte{1}}),
                                        record(content_type::handshake, 1, 0, filler(40))});
            const auto verdict = judge_datagram(finish, base);
            BOOST_TEST(verdict.drop == drop_reason::none);
            BOOST_TEST(verdict.change_cipher_spec);
            BOOST_TEST(!judge_datagram(client_hello(), base).change_cipher_spec);
        }
    }
}

BOOST_AUTO_TEST_CASE(a_connection_id_record_with_our_connection_id_is_admitted)
{
    BOOST_TEST(drop_of(cid_record(1, 0, own_cid, filler(40)), with_cid()) == drop_reason::none);
    const auto finish = concat({record(content_type::change_cipher_spec, 0, 6, {std::byte{1}}),
                                cid_record(1, 0, own_cid, filler(40))});
    const auto verdict = judge_datagram(finish, with_cid());
    BOOST_TEST(verdict.drop == drop_reason::none);
    BOOST_TEST(verdict.change_cipher_spec);
    // The limits hold a view: an equal CID elsewhere in memory matches.
    const bytes copy = own_cid;
    admission_limits limits;
    limits.own_connection_id = copy;
    limits.connection_id_negotiated = true;
    BOOST_TEST(drop_of(cid_record(1, 0, own_cid, filler(40)), limits) == drop_reason::none);
}

BOOST_AUTO_TEST_CASE(a_connection_id_record_with_another_connection_id_is_dropped_as_unknown)
{
    BOOST_TEST(drop_of(cid_record(1, 0, other_cid, filler(40)), with_cid()) == drop_reason::unknown_connection_id);
    // One stranger's record spoils the datagram, as for the other rules.
    const auto mixed = concat({cid_record(1, 0, own_cid, filler(40)), cid_record(1, 1, other_cid, filler(40))});
    BOOST_TEST(drop_of(mixed, with_cid()) == drop_reason::unknown_connection_id);
}

BOOST_AUTO_TEST_CASE(a_connection_id_record_too_short_for_the_inner_content_type_is_dropped_as_bad_length)
{
    // 24 bytes of expansion plus the inner content type.
    BOOST_TEST(drop_of(cid_record(1, 0, own_cid, filler(25)), with_cid()) == drop_reason::none);
    BOOST_TEST(drop_of(cid_record(1, 0, own_cid, filler(24)), with_cid()) == drop_reason::bad_length);
    BOOST_TEST(drop_of(cid_record(1, 0, own_cid, {}), with_cid()) == drop_reason::bad_length);
    admission_limits chacha;
    chacha.shortest_protected = 16;
    chacha.known_expansion = 16;
    BOOST_TEST(drop_of(cid_record(1, 0, own_cid, filler(17)), with_cid(chacha)) == drop_reason::none);
    BOOST_TEST(drop_of(cid_record(1, 0, own_cid, filler(16)), with_cid(chacha)) == drop_reason::bad_length);
    // Too long: 2^14 of content, its type byte and the expansion at most.
    BOOST_TEST(drop_of(cid_record(1, 0, own_cid, filler(16384 + 1 + 16)), with_cid(chacha)) == drop_reason::none);
    BOOST_TEST(drop_of(cid_record(1, 0, own_cid, filler(16384 + 1 + 17)), with_cid(chacha)) ==
               drop_reason::bad_length);
    // Drop reasons keep their order: a short stranger's record is bad_length.
    BOOST_TEST(drop_of(cid_record(1, 0, other_cid, filler(10)), with_cid()) == drop_reason::bad_length);
}

BOOST_AUTO_TEST_CASE(a_connection_id_record_without_a_negotiated_connection_id_is_malformed)
{
    const auto datagram = cid_record(1, 0, own_cid, filler(40));
    BOOST_TEST(drop_of(datagram, {}) == drop_reason::malformed);
    // Our CID known but not (yet) agreed by the peer.
    auto not_agreed = with_cid();
    not_agreed.connection_id_negotiated = false;
    BOOST_TEST(drop_of(datagram, not_agreed) == drop_reason::malformed);
    // Negotiated, but we asked for an empty CID: the peer sends none.
    admission_limits empty_cid;
    empty_cid.connection_id_negotiated = true;
    BOOST_TEST(drop_of(datagram, empty_cid) == drop_reason::malformed);
}

BOOST_AUTO_TEST_CASE(a_connection_id_record_at_a_wrong_epoch_is_dropped)
{
    BOOST_TEST(drop_of(cid_record(0, 0, own_cid, filler(40)), with_cid()) == drop_reason::malformed);
    BOOST_TEST(drop_of(cid_record(2, 0, own_cid, filler(40)), with_cid()) == drop_reason::wrong_epoch);
}

// The fast path (one application-data record that fills the datagram,
// judged from its header) and the full parse agree on every datagram near
// it: each length around both bounds, each version and epoch byte, a
// length field one off either way, a second record behind it, and the
// datagrams cut short.
BOOST_AUTO_TEST_CASE(the_single_record_fast_path_agrees_with_the_full_parse)
{
    using dtlspp::detail::judge_datagram_parsed;
    std::vector<admission_limits> all_limits(3);
    all_limits[1].known_expansion = 16;
    all_limits[1].shortest_protected = 16;
    all_limits[1].open = true;
    all_limits[2] = with_cid();
    all_limits[2].max_plaintext = 4096;
    int compared = 0;
    for (const auto& limits : all_limits) {
        for (const std::size_t length : {0u, 1u, 15u, 16u, 23u, 24u, 25u, 100u, 4096u, 4096u + 16u, 4096u + 17u,
                                         4096u + 2048u, 4096u + 2049u, 16384u + 16u, 16384u + 17u, 16384u + 2048u,
                                         16384u + 2049u}) {
            for (const int epoch : {0, 1, 2}) {
                for (const std::uint8_t minor : {0xfdu, 0xffu, 0xfcu}) {
                    auto d = record(content_type::application_data, epoch, 7, filler(length));
                    d[2] = std::byte{minor};
                    std::vector<bytes> variants = {d, concat({d, d})};
                    for (const int delta : {-1, 1}) {
                        auto off = d;
                        const auto claimed = static_cast<int>(length) + delta;
                        if (claimed < 0 || claimed > 0xffff) continue;
                        off[11] = std::byte(static_cast<unsigned>(claimed) >> 8);
                        off[12] = std::byte(static_cast<unsigned>(claimed) & 0xff);
                        variants.push_back(off);
                    }
                    if (d.size() > 13) variants.emplace_back(d.begin(), d.end() - 1);
                    variants.emplace_back(d.begin(), d.begin() + 12);
                    for (const auto& v : variants) {
                        const auto fast = judge_datagram(v, limits);
                        const auto parsed = judge_datagram_parsed(v, limits);
                        BOOST_TEST(fast.drop == parsed.drop, "length " << length << " epoch " << epoch << " size "
                                                                        << v.size());
                        BOOST_TEST(fast.change_cipher_spec == parsed.change_cipher_spec);
                        ++compared;
                    }
                }
            }
        }
    }
    BOOST_TEST(compared > 500);
}
