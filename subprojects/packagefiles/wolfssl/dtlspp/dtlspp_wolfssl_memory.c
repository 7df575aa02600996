/* wolfSSL's heap for dtlspp (XMALLOC_USER in user_settings.h).
 *
 * wolfSSL reads and writes each record through a buffer it allocates for
 * that record and frees as soon as the record is done (GrowInputBuffer /
 * ShrinkInputBuffer, GrowOutputBuffer / ShrinkOutputBuffer in internal.c):
 * four heap calls per echo, where OpenSSL and mbedTLS keep their buffers.
 * Keeping them in every session instead (LARGE_STATIC_BUFFERS) would cost
 * each session two 16 KiB buffers while it sits idle.
 *
 * So the record buffers (DYNAMIC_TYPE_IN_BUFFER and DYNAMIC_TYPE_OUT_BUFFER)
 * come from a small cache per thread: a freed one is kept for the next
 * record, whichever session it belongs to, and a thread holds at most
 * POOL_SLOTS of them (72 KiB), which go back to the system when the
 * thread ends. Every other allocation goes straight to malloc. The input
 * buffer is zeroed by wolfSSL before it is freed (ForceZero), so a cached
 * buffer holds no plaintext; the output buffer only ever held ciphertext.
 *
 * On Windows, and under AddressSanitizer, nothing is cached.
 *
 * Every block carries a small header with its size class, so a block is
 * freed correctly whatever type wolfSSL names when it frees it. */
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/types.h>

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Under AddressSanitizer every buffer goes back to the system, so that a
 * use after free in wolfSSL's record handling is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#define DTLSPP_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DTLSPP_UNDER_ASAN 1
#endif
#endif

#if !defined(_WIN32) && !defined(SINGLE_THREADED) && !defined(DTLSPP_UNDER_ASAN)
#include <pthread.h>
#define DTLSPP_POOL 1
#endif

/* One size for every pooled buffer, so any cached one serves any request:
 * room for the input buffer of a DTLS read (the MTU plus
 * WOLFSSL_DTLS_MTU_ADDITIONAL_READ_BUFFER plus alignment: 17,872 bytes at
 * dtlspp's default max_udp_payload of 1472) for an MTU up to about 2000
 * bytes, or a full 2^14-byte record with its header and expansion. Larger
 * requests (a jumbo-frame MTU) are not pooled. */
#define POOL_BLOCK_SIZE (18 * 1024)
#define POOL_SLOTS 4

typedef union {
    size_t pooled; /* 1 when the block is POOL_BLOCK_SIZE bytes and may be cached */
    max_align_t align;
} block_header;

static void* to_user(block_header* h) { return (void*)(h + 1); }
static block_header* to_header(void* p) { return ((block_header*)p) - 1; }

static int is_record_buffer(int type)
{
    return type == DYNAMIC_TYPE_IN_BUFFER || type == DYNAMIC_TYPE_OUT_BUFFER;
}

#ifdef DTLSPP_POOL
typedef struct {
    block_header* blocks[POOL_SLOTS];
    int count;
} block_pool;

static _Thread_local block_pool pool;
static pthread_key_t pool_key;
static pthread_once_t pool_key_once = PTHREAD_ONCE_INIT;

/* At thread exit: the cached blocks go back to the system. */
static void release_pool(void* unused)
{
    (void)unused;
    while (pool.count > 0) free(pool.blocks[--pool.count]);
}

static void make_pool_key(void) { (void)pthread_key_create(&pool_key, release_pool); }

static block_header* take_cached(void)
{
    return pool.count > 0 ? pool.blocks[--pool.count] : NULL;
}

/* Keeps a freed block for the next record; 0 when the cache is full. */
static int keep_cached(block_header* h)
{
    if (pool.count >= POOL_SLOTS) return 0;
    if (pool.count == 0) {
        /* The first block this thread keeps: arrange for its release. */
        (void)pthread_once(&pool_key_once, make_pool_key);
        (void)pthread_setspecific(pool_key, &pool);
    }
    pool.blocks[pool.count++] = h;
    return 1;
}
#else
static block_header* take_cached(void) { return NULL; }
static int keep_cached(block_header* h)
{
    (void)h;
    return 0;
}
#endif

void* XMALLOC(size_t n, void* heap, int type)
{
    block_header* h;
    (void)heap;
    if (is_record_buffer(type) && n <= POOL_BLOCK_SIZE) {
        h = take_cached();
        if (!h) h = (block_header*)malloc(sizeof(block_header) + POOL_BLOCK_SIZE);
        if (!h) return NULL;
        h->pooled = 1;
        return to_user(h);
    }
    if (n > (size_t)-1 - sizeof(block_header)) return NULL;
    h = (block_header*)malloc(sizeof(block_header) + n);
    if (!h) return NULL;
    h->pooled = 0;
    return to_user(h);
}

void XFREE(void* p, void* heap, int type)
{
    block_header* h;
    (void)heap;
    (void)type;
    if (!p) return;
    h = to_header(p);
    if (h->pooled && keep_cached(h)) return;
    free(h);
}

void* XREALLOC(void* p, size_t n, void* heap, int type)
{
    block_header* h;
    block_header* grown;
    if (!p) return XMALLOC(n, heap, type);
    h = to_header(p);
    if (h->pooled) {
        /* A pooled block keeps its size: fine while n fits, else a plain
         * block takes its bytes. */
        void* q;
        if (n <= POOL_BLOCK_SIZE) return p;
        q = XMALLOC(n, heap, -1);
        if (!q) return NULL;
        memcpy(q, p, POOL_BLOCK_SIZE);
        XFREE(p, heap, type);
        return q;
    }
    if (n > (size_t)-1 - sizeof(block_header)) return NULL;
    grown = (block_header*)realloc(h, sizeof(block_header) + n);
    if (!grown) return NULL;
    return to_user(grown);
}
