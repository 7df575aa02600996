/* wolfSSL's clock for dtlspp (USER_TICKS in user_settings.h).
 *
 * DTLS 1.3 in wolfSSL reads TimeNowInMilliseconds() to space its
 * retransmissions (DTLS13_MIN_RTX_INTERVAL). dtlspp drives every timer from
 * the caller's clock, virtual time included, so during each backend call the
 * adapter tells wolfSSL what time it is (dtlspp_wolfssl_set_time_ms); outside
 * any call the monotonic clock answers. LowResTimer() (seconds, for session
 * lifetimes dtlspp does not use) stays on the system clock. */
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/types.h>

#include <time.h>
#ifdef _WIN32
#include <windows.h>
#endif

static _Thread_local long long call_time_ms;
static _Thread_local int call_time_set;

void dtlspp_wolfssl_set_time_ms(long long ms)
{
    call_time_ms = ms;
    call_time_set = 1;
}

void dtlspp_wolfssl_clear_time(void) { call_time_set = 0; }

static long long monotonic_ms(void)
{
#ifdef _WIN32
    return (long long)GetTickCount64();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#endif
}

word32 LowResTimer(void) { return (word32)time(NULL); }

#ifdef WOLFSSL_32BIT_MILLI_TIME
word32 TimeNowInMilliseconds(void) { return (word32)(call_time_set ? call_time_ms : monotonic_ms()); }
#else
sword64 TimeNowInMilliseconds(void) { return (sword64)(call_time_set ? call_time_ms : monotonic_ms()); }
#endif
