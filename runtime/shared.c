/* shared.c — gw.shared: named dictionaries in shared memory, visible to every worker (the
 * equivalent of OpenResty's lua_shared_dict), plus the shared worker stats block.
 *
 * Each dict is one MAP_SHARED|MAP_ANONYMOUS mapping made by the master before it forks, so
 * every worker inherits it at the same address. Inside the mapping, everything is addressed
 * by byte offsets from the start of the mapping (0 = none), never by pointers:
 *
 *   [struct gw_dict header | bucket array | heap ........................................]
 *
 * The header holds a process-shared robust mutex guarding the whole dict, the LRU list ends
 * and the allocator's free lists. The heap is carved into blocks with boundary tags
 * (size|used word at both ends) so freeing coalesces with both neighbours in O(1); free
 * blocks sit in segregated size-class lists searched first-fit. Each used block holds one
 * entry: hash-chain link, LRU links, expiry, value, then the key and string value bytes.
 * Nothing here mallocs after creation.
 *
 * The Lua side (lua/gw/shared.lua) reaches the gw_ffi_* functions through LuaJIT FFI; the
 * binary is linked with -Wl,-E so they are visible to ffi.C. Time is CLOCK_MONOTONIC in
 * milliseconds, which is system-wide and so agrees across processes. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <lua.h>
#include <lauxlib.h>
#include <event2/buffer.h>
#include "gw.h"
#include "shm.h"

/* ---- worker stats ---------------------------------------------------------------------- */

gw_shm_stats *gw_stats;

int gw_shm_stats_init(void)
{
    if (gw_stats) return 0;
    void *p = mmap(NULL, sizeof(gw_shm_stats), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        gw_err("shm: cannot map worker stats: %s", strerror(errno));
        return -1;
    }
    gw_stats = p;       /* anonymous mappings start zeroed */
    return 0;
}

/* ---- dict layout ----------------------------------------------------------------------- */

#define DICT_MAGIC   0x67772d6469637431ULL
#define MAX_DICTS    64
#define NAME_LEN     63
#define KEY_MAX      65535
#define MIN_DICT     8192           /* the header alone is ~1.5 KB */
#define NBINS        160            /* 31 small classes + 4 per power of two up to 2^42 */
#define BINWORDS     ((NBINS + 63) / 64)
#define BLK_OVERHEAD 16             /* header word + footer word */
#define MIN_BLOCK    32             /* header, two free-list links, footer */
#define USED         1ULL
#define OWN_BIN_PROBES 16           /* first-fit probes in the request's own size class */

/* Value types and store operations, shared with lua/gw/shared.lua. */
enum { T_NIL = 0, T_BOOL = 1, T_NUM = 2, T_STR = 3 };
enum { OP_SET = 0, OP_ADD = 1, OP_REPLACE = 2, OP_SAFE_SET = 3, OP_SAFE_ADD = 4 };

struct gw_dict {
    uint64_t magic;
    pthread_mutex_t lock;
    uint32_t dirty;             /* set while someone holds the lock; see dict_lock() */
    uint32_t nbuckets;          /* power of two */
    uint64_t size;              /* the whole mapping */
    uint64_t heap_start, heap_end;
    uint64_t free_bytes;        /* sum of the sizes of free blocks */
    uint64_t count;             /* entries stored, expired or not */
    uint64_t lru_head, lru_tail;    /* entry offsets; head = most recently used */
    uint64_t binmap[BINWORDS];  /* bit i set <=> bins[i] non-empty */
    uint64_t bins[NBINS];       /* free block offsets, heads of doubly linked lists */
    char name[NAME_LEN + 1];
    uint64_t buckets[];         /* entry offsets, heads of singly linked hash chains */
};

typedef struct {
    uint64_t hnext;             /* next entry in the same bucket */
    uint64_t lru_prev, lru_next;
    uint64_t expires;           /* CLOCK_MONOTONIC ms; 0 = never */
    double num;                 /* number, or 0/1 for a boolean */
    uint32_t hash;
    uint32_t vlen;              /* string value length */
    uint32_t flags;
    uint16_t klen;
    uint8_t type;
    uint8_t pad;
    /* key bytes, then string value bytes */
} entry;

#define AT(d, off)  ((unsigned char *)(d) + (off))
#define U64(d, off) (*(uint64_t *)AT(d, off))
#define ENT(d, off) ((entry *)AT(d, off))
#define ENT_KEY(e)  ((char *)(e) + sizeof(entry))
#define ENT_VAL(e)  (ENT_KEY(e) + (e)->klen)
/* An entry lives right after its block's header word. */
#define BLK_OF(e)   ((e) - 8)
#define ENT_OF(b)   ((b) + 8)

static struct { char name[NAME_LEN + 1]; size_t len; gw_dict *d; } registry[MAX_DICTS];
static int nregistry;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t deadline(double ttl, uint64_t now)
{
    if (ttl <= 0) return 0;
    double ms = ttl * 1000.0;
    if (ms > 1e15) ms = 1e15;               /* ~31k years: keeps the cast defined */
    uint64_t m = (uint64_t)(ms + 0.5);
    return now + (m ? m : 1);               /* a positive ttl never means "forever" */
}

static int is_expired(const entry *e, uint64_t now)
{
    return e->expires != 0 && e->expires <= now;
}

static uint32_t hash_key(const char *k, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;     /* FNV-1a, then a mixer so the low bits spread */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (uint32_t)h;
}

/* ---- heap: boundary-tag blocks in segregated free lists -------------------------------- */

static uint64_t blk_size(gw_dict *d, uint64_t b) { return U64(d, b) & ~7ULL; }
static int blk_used(gw_dict *d, uint64_t b) { return (int)(U64(d, b) & USED); }

static void blk_mark(gw_dict *d, uint64_t b, uint64_t size, uint64_t used)
{
    U64(d, b) = size | used;
    U64(d, b + size - 8) = size | used;
}

#define FNEXT(d, b) U64(d, (b) + 8)
#define FPREV(d, b) U64(d, (b) + 16)

static unsigned bin_of(uint64_t size)
{
    if (size < 1024) return (unsigned)(size >> 5);          /* 32-byte classes */
    unsigned lg = 63u - (unsigned)__builtin_clzll(size);    /* >= 10 */
    unsigned b = 32 + (lg - 10) * 4 + (unsigned)((size >> (lg - 2)) & 3);
    return b < NBINS ? b : NBINS - 1;
}

static void free_push(gw_dict *d, uint64_t b, uint64_t size)
{
    unsigned i = bin_of(size);
    blk_mark(d, b, size, 0);
    FPREV(d, b) = 0;
    FNEXT(d, b) = d->bins[i];
    if (d->bins[i]) FPREV(d, d->bins[i]) = b;
    d->bins[i] = b;
    d->binmap[i >> 6] |= 1ULL << (i & 63);
    d->free_bytes += size;
}

static void free_unlink(gw_dict *d, uint64_t b)
{
    uint64_t size = blk_size(d, b);
    unsigned i = bin_of(size);
    uint64_t n = FNEXT(d, b), p = FPREV(d, b);
    if (p) FNEXT(d, p) = n; else d->bins[i] = n;
    if (n) FPREV(d, n) = p;
    if (!d->bins[i]) d->binmap[i >> 6] &= ~(1ULL << (i & 63));
    d->free_bytes -= size;
}

/* Marks free block b used with `need` bytes, returning the tail to the free lists. */
static uint64_t take(gw_dict *d, uint64_t b, uint64_t need)
{
    uint64_t size = blk_size(d, b);
    free_unlink(d, b);
    if (size - need >= MIN_BLOCK) {
        free_push(d, b + need, size - need);
        size = need;
    }
    blk_mark(d, b, size, USED);
    return b;
}

static uint64_t heap_alloc(gw_dict *d, uint64_t need)
{
    unsigned own = bin_of(need);
    /* The request's own class mixes sizes either side of `need`: probe a few first-fit. */
    int probes = OWN_BIN_PROBES;
    uint64_t f = d->bins[own];
    for (; f && probes > 0; f = FNEXT(d, f), probes--)
        if (blk_size(d, f) >= need) return take(d, f, need);
    uint64_t resume = f;
    /* Any block of a higher class fits (except in the last, open-ended class). */
    for (unsigned i = own + 1; i < NBINS; ) {
        unsigned w = i >> 6;
        uint64_t bits = d->binmap[w] & (~0ULL << (i & 63));
        while (!bits) {
            if (++w >= BINWORDS) goto rest_of_own;
            bits = d->binmap[w];
        }
        i = w * 64 + (unsigned)__builtin_ctzll(bits);
        if (i >= NBINS) break;
        for (uint64_t g = d->bins[i]; g; g = FNEXT(d, g))
            if (blk_size(d, g) >= need) return take(d, g, need);
        i++;
    }
rest_of_own:
    for (f = resume; f; f = FNEXT(d, f))
        if (blk_size(d, f) >= need) return take(d, f, need);
    return 0;
}

static void heap_free(gw_dict *d, uint64_t b)
{
    uint64_t size = blk_size(d, b);
    if (b > d->heap_start) {
        uint64_t pf = U64(d, b - 8);
        if (!(pf & USED)) {
            uint64_t p = b - (pf & ~7ULL);
            free_unlink(d, p);
            b = p;
            size += pf & ~7ULL;
        }
    }
    uint64_t n = b + size;
    if (n < d->heap_end && !blk_used(d, n)) {
        size += blk_size(d, n);
        free_unlink(d, n);
    }
    free_push(d, b, size);
}

/* Shrinks used block b to `need` bytes when the spare tail is worth a block of its own. */
static void heap_shrink(gw_dict *d, uint64_t b, uint64_t need)
{
    uint64_t size = blk_size(d, b);
    if (size - need < MIN_BLOCK) return;
    blk_mark(d, b, need, USED);
    uint64_t t = b + need;
    blk_mark(d, t, size - need, USED);
    heap_free(d, t);        /* coalesces with a free successor */
}

static uint64_t block_need(size_t klen, size_t vlen)
{
    uint64_t n = BLK_OVERHEAD + sizeof(entry) + klen + vlen;
    n = (n + 7) & ~7ULL;
    return n < MIN_BLOCK ? MIN_BLOCK : n;
}

static void heap_reset(gw_dict *d)
{
    memset(d->buckets, 0, (size_t)d->nbuckets * sizeof(uint64_t));
    memset(d->bins, 0, sizeof d->bins);
    memset(d->binmap, 0, sizeof d->binmap);
    d->lru_head = d->lru_tail = 0;
    d->count = 0;
    d->free_bytes = 0;
    free_push(d, d->heap_start, d->heap_end - d->heap_start);
}

/* ---- locking --------------------------------------------------------------------------- */

/* `dirty` is set for as long as the lock is held. If a worker dies holding the lock, the
 * next locker gets EOWNERDEAD and finds dirty set: the structures may be half-updated, so
 * the dict is emptied rather than trusted. */
static int dict_lock(gw_dict *d)
{
    int rc = pthread_mutex_lock(&d->lock);
    if (rc == EOWNERDEAD) {
        pthread_mutex_consistent(&d->lock);
        if (d->dirty) {
            gw_warn("gw.shared: dict \"%s\": a process died while holding its lock; "
                    "the dict was emptied", d->name);
            heap_reset(d);
        }
    } else if (rc != 0) {
        return -1;
    }
    __atomic_store_n(&d->dirty, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static void dict_unlock(gw_dict *d)
{
    __atomic_store_n(&d->dirty, 0, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&d->lock);
}

/* ---- entries --------------------------------------------------------------------------- */

static void lru_unlink(gw_dict *d, uint64_t e)
{
    entry *x = ENT(d, e);
    if (x->lru_prev) ENT(d, x->lru_prev)->lru_next = x->lru_next; else d->lru_head = x->lru_next;
    if (x->lru_next) ENT(d, x->lru_next)->lru_prev = x->lru_prev; else d->lru_tail = x->lru_prev;
    x->lru_prev = x->lru_next = 0;
}

static void lru_push(gw_dict *d, uint64_t e)
{
    entry *x = ENT(d, e);
    x->lru_prev = 0;
    x->lru_next = d->lru_head;
    if (d->lru_head) ENT(d, d->lru_head)->lru_prev = e; else d->lru_tail = e;
    d->lru_head = e;
}

static void lru_touch(gw_dict *d, uint64_t e)
{
    if (d->lru_head == e) return;
    lru_unlink(d, e);
    lru_push(d, e);
}

static uint64_t *bucket_of(gw_dict *d, uint32_t h)
{
    return &d->buckets[h & (d->nbuckets - 1)];
}

static uint64_t lookup(gw_dict *d, const char *key, size_t klen, uint32_t h)
{
    for (uint64_t e = *bucket_of(d, h); e; e = ENT(d, e)->hnext) {
        entry *x = ENT(d, e);
        if (x->hash == h && x->klen == klen && memcmp(ENT_KEY(x), key, klen) == 0) return e;
    }
    return 0;
}

static void remove_entry(gw_dict *d, uint64_t e)
{
    entry *x = ENT(d, e);
    uint64_t *link = bucket_of(d, x->hash);
    while (*link != e) link = &ENT(d, *link)->hnext;
    *link = x->hnext;
    lru_unlink(d, e);
    d->count--;
    heap_free(d, BLK_OF(e));
}

/* Lazily drops up to two expired entries from the cold end, as every write passes by. */
static void expire_some(gw_dict *d, uint64_t now)
{
    for (int i = 0; i < 2 && d->lru_tail; i++) {
        uint64_t e = d->lru_tail;
        if (!is_expired(ENT(d, e), now)) return;
        remove_entry(d, e);
    }
}

static void fill(entry *x, int type, const char *str, size_t slen, double num,
                 uint64_t expires, uint32_t flags)
{
    x->type = (uint8_t)type;
    x->num = type == T_STR ? 0 : num;
    x->vlen = type == T_STR ? (uint32_t)slen : 0;
    if (type == T_STR && slen) memcpy(ENT_VAL(x), str, slen);
    x->expires = expires;
    x->flags = flags;
}

/* Allocates and links a new entry, evicting from the LRU end unless `safe`. */
static int insert(gw_dict *d, const char *key, size_t klen, uint32_t h, int type,
                  const char *str, size_t slen, double num, uint64_t expires, uint32_t flags,
                  int safe, uint64_t now, int *forcible)
{
    uint64_t need = block_need(klen, slen);
    if (need > d->heap_end - d->heap_start) return -1;
    uint64_t b;
    while (!(b = heap_alloc(d, need))) {
        if (safe || !d->lru_tail) return -1;
        uint64_t victim = d->lru_tail;
        if (!is_expired(ENT(d, victim), now)) *forcible = 1;
        remove_entry(d, victim);
    }
    uint64_t e = ENT_OF(b);
    entry *x = ENT(d, e);
    memset(x, 0, sizeof *x);
    x->hash = h;
    x->klen = (uint16_t)klen;
    memcpy(ENT_KEY(x), key, klen);
    fill(x, type, str, slen, num, expires, flags);
    uint64_t *bk = bucket_of(d, h);
    x->hnext = *bk;
    *bk = e;
    lru_push(d, e);
    d->count++;
    return 0;
}

/* ---- creation and lookup --------------------------------------------------------------- */

int gw_dict_create(const char *name, size_t bytes)
{
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > NAME_LEN) {
        gw_err("gw.shared: bad dict name \"%s\" (1 to %d characters)", name, NAME_LEN);
        return -1;
    }
    gw_dict *old = gw_dict_find(name, nlen);
    if (old) {
        /* The master keeps dicts across reloads: the first size wins. */
        if (old->size < bytes)
            gw_notice("gw.shared: dict \"%s\" already exists with %llu bytes; keeping it",
                      name, (unsigned long long)old->size);
        return 0;
    }
    if (nregistry >= MAX_DICTS) {
        gw_err("gw.shared: too many dicts (max %d)", MAX_DICTS);
        return -1;
    }
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) page = 4096;
    if (bytes < MIN_DICT) bytes = MIN_DICT;
    if (bytes > ((size_t)1 << 42)) {
        gw_err("gw.shared: dict \"%s\" too large", name);
        return -1;
    }
    bytes = (bytes + (size_t)page - 1) & ~((size_t)page - 1);

    /* About one bucket per 256 bytes (3% of the dict): an entry takes at least 80 bytes,
     * so chains stay around three long even when the dict is full of tiny entries. */
    uint32_t nb = 8;
    while (nb < (1u << 30) && (uint64_t)nb * 2 * 256 <= bytes) nb *= 2;
    uint64_t heap_start = (sizeof(gw_dict) + (uint64_t)nb * sizeof(uint64_t) + 15) & ~15ULL;
    if (heap_start + 4 * MIN_BLOCK > bytes) {
        gw_err("gw.shared: dict \"%s\" too small", name);
        return -1;
    }

    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        gw_err("gw.shared: cannot map %zu bytes for dict \"%s\": %s", bytes, name, strerror(errno));
        return -1;
    }
    gw_dict *d = p;
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (!rc) rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (!rc) rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (!rc) rc = pthread_mutex_init(&d->lock, &a);
    pthread_mutexattr_destroy(&a);
    if (rc) {
        gw_err("gw.shared: dict \"%s\": cannot init its mutex: %s", name, strerror(rc));
        munmap(p, bytes);
        return -1;
    }
    d->magic = DICT_MAGIC;
    d->nbuckets = nb;
    d->size = bytes;
    d->heap_start = heap_start;
    d->heap_end = bytes & ~7ULL;
    memcpy(d->name, name, nlen + 1);
    heap_reset(d);

    memcpy(registry[nregistry].name, name, nlen + 1);
    registry[nregistry].len = nlen;
    registry[nregistry].d = d;
    nregistry++;
    gw_debug("gw.shared: dict \"%s\": %zu bytes, %u buckets", name, bytes, nb);
    return 0;
}

size_t gw_ffi_dict_free_space(gw_dict *d);

/* gateway_shared_dict_* lines for /metrics (the master's view: the registry is inherited). */
void gw_dicts_render_metrics(struct evbuffer *out)
{
    evbuffer_add_printf(out, "# HELP gateway_shared_dict_capacity_bytes Size of each gw.shared dict\n"
                             "# TYPE gateway_shared_dict_capacity_bytes gauge\n");
    for (int i = 0; i < nregistry; i++)
        evbuffer_add_printf(out, "gateway_shared_dict_capacity_bytes{dict=\"%s\"} %llu\n", registry[i].name,
                            (unsigned long long)registry[i].d->size);
    evbuffer_add_printf(out, "# HELP gateway_shared_dict_free_bytes Bytes of each gw.shared dict in free blocks\n"
                             "# TYPE gateway_shared_dict_free_bytes gauge\n");
    for (int i = 0; i < nregistry; i++)
        evbuffer_add_printf(out, "gateway_shared_dict_free_bytes{dict=\"%s\"} %llu\n", registry[i].name,
                            (unsigned long long)gw_ffi_dict_free_space(registry[i].d));
    evbuffer_add_printf(out, "# HELP gateway_shared_dict_entries Entries stored in each gw.shared dict, expired or not\n"
                             "# TYPE gateway_shared_dict_entries gauge\n");
    for (int i = 0; i < nregistry; i++) {
        gw_dict *d = registry[i].d;
        uint64_t n = 0;
        if (!dict_lock(d)) { n = d->count; dict_unlock(d); }
        evbuffer_add_printf(out, "gateway_shared_dict_entries{dict=\"%s\"} %llu\n", registry[i].name, (unsigned long long)n);
    }
}

gw_dict *gw_dict_find(const char *name, size_t len)
{
    for (int i = 0; i < nregistry; i++)
        if (registry[i].len == len && memcmp(registry[i].name, name, len) == 0)
            return registry[i].d;
    return NULL;
}

/* ---- FFI API (lua/gw/shared.lua) -------------------------------------------------------
 * Return codes: 0 ok, -1 failure (with *err set where there is one). */

gw_dict *gw_ffi_dict(const char *name, size_t len);
int gw_ffi_dict_get(gw_dict *d, const char *key, size_t klen, char **val, size_t *vlen,
                    int *type, double *num, uint32_t *flags, int stale_ok, int *is_stale);
int gw_ffi_dict_set(gw_dict *d, int op, const char *key, size_t klen, int type,
                    const char *str, size_t slen, double num, double ttl, uint32_t flags,
                    int *forcible, char **err);
int gw_ffi_dict_incr(gw_dict *d, const char *key, size_t klen, double by, double *out,
                     int has_init, double init, double init_ttl, int *forcible, char **err);
int gw_ffi_dict_delete(gw_dict *d, const char *key, size_t klen);
int gw_ffi_dict_ttl(gw_dict *d, const char *key, size_t klen, double *ttl);
int gw_ffi_dict_expire(gw_dict *d, const char *key, size_t klen, double ttl);
int gw_ffi_dict_flush_all(gw_dict *d);
int gw_ffi_dict_flush_expired(gw_dict *d, int max);
int gw_ffi_dict_get_keys(gw_dict *d, int max, char *buf, size_t cap, size_t *need);
size_t gw_ffi_dict_capacity(gw_dict *d);
size_t gw_ffi_dict_free_space(gw_dict *d);
int gw_ffi_dict_check(gw_dict *d, char **err);
int luaopen_gw_shared_c(lua_State *L);

static int key_ok(const char *key, size_t klen, char **err)
{
    if (!key || klen == 0) { *err = "empty key"; return 0; }
    if (klen > KEY_MAX) { *err = "key too long"; return 0; }
    return 1;
}

gw_dict *gw_ffi_dict(const char *name, size_t len)
{
    return gw_dict_find(name, len);
}

/* Copies the value out. Strings go to the caller's buffer (*val, capacity *vlen); when it
 * is too small, returns 1 with *vlen = the length needed and copies nothing. */
int gw_ffi_dict_get(gw_dict *d, const char *key, size_t klen, char **val, size_t *vlen,
                    int *type, double *num, uint32_t *flags, int stale_ok, int *is_stale)
{
    char *err;
    *type = T_NIL;
    *flags = 0;
    *is_stale = 0;
    if (!d || !key_ok(key, klen, &err)) return -1;
    uint32_t h = hash_key(key, klen);
    if (dict_lock(d)) return -1;
    uint64_t now = now_ms();
    if (!stale_ok) expire_some(d, now);
    uint64_t e = lookup(d, key, klen, h);
    int rc = 0;
    if (e) {
        entry *x = ENT(d, e);
        int stale = is_expired(x, now);
        if (!stale || stale_ok) {
            if (x->type == T_STR && x->vlen > *vlen) {
                *vlen = x->vlen;
                rc = 1;
            } else {
                *type = x->type;
                *num = x->num;
                *flags = x->flags;
                *is_stale = stale;
                if (x->type == T_STR) {
                    if (x->vlen) memcpy(*val, ENT_VAL(x), x->vlen);
                    *vlen = x->vlen;
                }
                if (!stale) lru_touch(d, e);
            }
        }
    }
    dict_unlock(d);
    return rc;
}

int gw_ffi_dict_set(gw_dict *d, int op, const char *key, size_t klen, int type,
                    const char *str, size_t slen, double num, double ttl, uint32_t flags,
                    int *forcible, char **err)
{
    *forcible = 0;
    *err = NULL;
    if (!d) { *err = "no such dict"; return -1; }
    if (!key_ok(key, klen, err)) return -1;
    if (type < T_NIL || type > T_STR || (type == T_STR && !str && slen)) {
        *err = "bad value type";
        return -1;
    }
    if (type == T_STR && slen > UINT32_MAX) { *err = "value too long"; return -1; }
    if (!(ttl >= 0)) { *err = "bad exptime"; return -1; }
    if (op < OP_SET || op > OP_SAFE_ADD) { *err = "bad operation"; return -1; }
    int add = op == OP_ADD || op == OP_SAFE_ADD;
    int safe = op == OP_SAFE_SET || op == OP_SAFE_ADD;
    if (type == T_NIL && (add || op == OP_REPLACE)) {
        *err = "attempt to add or replace nil values";
        return -1;
    }
    if (type != T_STR) slen = 0;
    uint32_t h = hash_key(key, klen);
    if (dict_lock(d)) { *err = "dict lock failed"; return -1; }
    uint64_t now = now_ms();
    expire_some(d, now);
    uint64_t e = lookup(d, key, klen, h);
    int live = e && !is_expired(ENT(d, e), now);
    int rc = 0;
    if (op == OP_REPLACE && !live) { *err = "not found"; rc = -1; goto out; }
    if (add && live) { *err = "exists"; rc = -1; goto out; }
    if (e) {
        if (type == T_NIL) { remove_entry(d, e); goto out; }
        uint64_t need = block_need(klen, slen), b = BLK_OF(e);
        if (need <= blk_size(d, b)) {
            /* Fits where it is: update in place and give back any spare tail. */
            fill(ENT(d, e), type, str, slen, num, deadline(ttl, now), flags);
            heap_shrink(d, b, need);
            lru_touch(d, e);
            goto out;
        }
        remove_entry(d, e);
    }
    if (type == T_NIL) goto out;
    if (insert(d, key, klen, h, type, str, slen, num, deadline(ttl, now), flags, safe, now,
               forcible)) {
        *err = "no memory";
        rc = -1;
    }
out:
    dict_unlock(d);
    return rc;
}

int gw_ffi_dict_incr(gw_dict *d, const char *key, size_t klen, double by, double *out,
                     int has_init, double init, double init_ttl, int *forcible, char **err)
{
    *forcible = 0;
    *err = NULL;
    if (!d) { *err = "no such dict"; return -1; }
    if (!key_ok(key, klen, err)) return -1;
    if (has_init && !(init_ttl >= 0)) { *err = "bad init_ttl"; return -1; }
    uint32_t h = hash_key(key, klen);
    if (dict_lock(d)) { *err = "dict lock failed"; return -1; }
    uint64_t now = now_ms();
    expire_some(d, now);
    uint64_t e = lookup(d, key, klen, h);
    int rc = 0;
    if (e && !is_expired(ENT(d, e), now)) {
        entry *x = ENT(d, e);
        if (x->type != T_NUM) { *err = "not a number"; rc = -1; goto out; }
        x->num += by;
        *out = x->num;
        lru_touch(d, e);
        goto out;
    }
    if (!has_init) { *err = "not found"; rc = -1; goto out; }
    if (e) remove_entry(d, e);
    double v = init + by;
    if (insert(d, key, klen, h, T_NUM, NULL, 0, v, deadline(init_ttl, now), 0, 0, now,
               forcible)) {
        *err = "no memory";
        rc = -1;
        goto out;
    }
    *out = v;
out:
    dict_unlock(d);
    return rc;
}

int gw_ffi_dict_delete(gw_dict *d, const char *key, size_t klen)
{
    char *err;
    if (!d || !key_ok(key, klen, &err)) return -1;
    uint32_t h = hash_key(key, klen);
    if (dict_lock(d)) return -1;
    uint64_t e = lookup(d, key, klen, h);
    if (e) remove_entry(d, e);
    dict_unlock(d);
    return 0;
}

/* *ttl = seconds left, 0 for an item that never expires; -1 when missing or expired. */
int gw_ffi_dict_ttl(gw_dict *d, const char *key, size_t klen, double *ttl)
{
    char *err;
    if (!d || !key_ok(key, klen, &err)) return -1;
    uint32_t h = hash_key(key, klen);
    if (dict_lock(d)) return -1;
    uint64_t now = now_ms();
    uint64_t e = lookup(d, key, klen, h);
    int rc = -1;
    if (e && !is_expired(ENT(d, e), now)) {
        uint64_t ex = ENT(d, e)->expires;
        *ttl = ex ? (double)(ex - now) / 1000.0 : 0;
        rc = 0;
    }
    dict_unlock(d);
    return rc;
}

int gw_ffi_dict_expire(gw_dict *d, const char *key, size_t klen, double ttl)
{
    char *err;
    if (!d || !key_ok(key, klen, &err) || !(ttl >= 0)) return -1;
    uint32_t h = hash_key(key, klen);
    if (dict_lock(d)) return -1;
    uint64_t now = now_ms();
    uint64_t e = lookup(d, key, klen, h);
    int rc = -1;
    if (e && !is_expired(ENT(d, e), now)) {
        ENT(d, e)->expires = deadline(ttl, now);
        rc = 0;
    }
    dict_unlock(d);
    return rc;
}

/* Like OpenResty: marks everything expired (get_stale still sees it) without freeing. */
int gw_ffi_dict_flush_all(gw_dict *d)
{
    if (!d || dict_lock(d)) return -1;
    uint64_t now = now_ms();
    for (uint64_t e = d->lru_head; e; e = ENT(d, e)->lru_next) {
        entry *x = ENT(d, e);
        if (!is_expired(x, now)) x->expires = now ? now : 1;
    }
    dict_unlock(d);
    return 0;
}

/* Frees expired entries, at most `max` of them when max > 0; returns how many. */
int gw_ffi_dict_flush_expired(gw_dict *d, int max)
{
    if (!d || dict_lock(d)) return -1;
    uint64_t now = now_ms();
    int n = 0;
    uint64_t e = d->lru_tail;
    while (e && (max <= 0 || n < max)) {
        uint64_t prev = ENT(d, e)->lru_prev;
        if (is_expired(ENT(d, e), now)) {
            remove_entry(d, e);
            n++;
        }
        e = prev;
    }
    dict_unlock(d);
    return n;
}

/* Writes up to `max` (0 = all) live keys, most recently used first, into buf as
 * [len lo byte][len hi byte][key bytes]... Returns the number of keys and sets *need to the
 * bytes they take; when *need > cap only the keys that fit were written: call again with a
 * buffer of *need bytes. */
int gw_ffi_dict_get_keys(gw_dict *d, int max, char *buf, size_t cap, size_t *need)
{
    *need = 0;
    if (!d || dict_lock(d)) return -1;
    uint64_t now = now_ms();
    int n = 0;
    size_t pos = 0;
    for (uint64_t e = d->lru_head; e && (max <= 0 || n < max); e = ENT(d, e)->lru_next) {
        entry *x = ENT(d, e);
        if (is_expired(x, now)) continue;
        if (pos + 2 + x->klen <= cap) {
            buf[pos] = (char)(x->klen & 0xff);
            buf[pos + 1] = (char)(x->klen >> 8);
            memcpy(buf + pos + 2, ENT_KEY(x), x->klen);
        }
        pos += 2 + (size_t)x->klen;
        n++;
    }
    dict_unlock(d);
    *need = pos;
    return n;
}

size_t gw_ffi_dict_capacity(gw_dict *d)
{
    return d ? (size_t)d->size : 0;
}

/* Bytes in free blocks (an entry also pays 72 bytes of block and entry header). */
size_t gw_ffi_dict_free_space(gw_dict *d)
{
    if (!d || dict_lock(d)) return 0;
    uint64_t f = d->free_bytes;
    dict_unlock(d);
    return (size_t)f;
}

/* Walks every structure and cross-checks them (for tests): 0 ok, -1 with *err. */
int gw_ffi_dict_check(gw_dict *d, char **err)
{
    *err = NULL;
    if (!d || d->magic != DICT_MAGIC) { *err = "not a dict"; return -1; }
    if (dict_lock(d)) { *err = "lock failed"; return -1; }
    uint64_t used = 0, nfree = 0, freeb = 0, nent = 0;
    int prev_free = 0;
    for (uint64_t b = d->heap_start; b < d->heap_end; ) {
        uint64_t s = blk_size(d, b);
        if (s < MIN_BLOCK || s % 8 || b + s > d->heap_end) { *err = "bad block size"; goto bad; }
        if (U64(d, b) != U64(d, b + s - 8)) { *err = "header/footer mismatch"; goto bad; }
        if (blk_used(d, b)) {
            entry *x = ENT(d, ENT_OF(b));
            if (block_need(x->klen, x->vlen) > s) { *err = "entry overflows its block"; goto bad; }
            if (hash_key(ENT_KEY(x), x->klen) != x->hash) { *err = "bad entry hash"; goto bad; }
            if (lookup(d, ENT_KEY(x), x->klen, x->hash) != ENT_OF(b)) {
                *err = "entry not reachable from its bucket"; goto bad;
            }
            used++;
            prev_free = 0;
        } else {
            if (prev_free) { *err = "two adjacent free blocks"; goto bad; }
            nfree++;
            freeb += s;
            prev_free = 1;
        }
        b += s;
    }
    if (freeb != d->free_bytes) { *err = "free byte count mismatch"; goto bad; }
    if (used != d->count) { *err = "entry count mismatch"; goto bad; }
    uint64_t inbins = 0;
    for (unsigned i = 0; i < NBINS; i++) {
        int has = (d->binmap[i >> 6] >> (i & 63)) & 1;
        if (has != (d->bins[i] != 0)) { *err = "bin map mismatch"; goto bad; }
        uint64_t p = 0;
        for (uint64_t f = d->bins[i]; f; p = f, f = FNEXT(d, f)) {
            if (blk_used(d, f) || bin_of(blk_size(d, f)) != i || FPREV(d, f) != p) {
                *err = "bad free list"; goto bad;
            }
            if (++inbins > nfree) { *err = "free list loop"; goto bad; }
        }
    }
    if (inbins != nfree) { *err = "free block missing from the lists"; goto bad; }
    uint64_t p = 0;
    for (uint64_t e = d->lru_head; e; p = e, e = ENT(d, e)->lru_next) {
        if (ENT(d, e)->lru_prev != p) { *err = "bad LRU links"; goto bad; }
        if (++nent > used) { *err = "LRU loop"; goto bad; }
    }
    if (p != d->lru_tail || nent != used) { *err = "LRU list incomplete"; goto bad; }
    nent = 0;
    for (uint32_t i = 0; i < d->nbuckets; i++)
        for (uint64_t e = d->buckets[i]; e; e = ENT(d, e)->hnext) {
            if ((ENT(d, e)->hash & (d->nbuckets - 1)) != i) { *err = "entry in wrong bucket"; goto bad; }
            if (++nent > used) { *err = "hash chain loop"; goto bad; }
        }
    if (nent != used) { *err = "hash chains incomplete"; goto bad; }
    dict_unlock(d);
    return 0;
bad:
    dict_unlock(d);
    return -1;
}

/* ---- gw.shared_c: the Lua C module for creating dicts where no master does (bin/gw test) */

/* "1m", "512k", "2g", "1048576" -> bytes; 0 when malformed. */
static size_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno) return 0;
    unsigned long long mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1ULL << 10; end++; break;
    case 'm': case 'M': mul = 1ULL << 20; end++; break;
    case 'g': case 'G': mul = 1ULL << 30; end++; break;
    default: break;
    }
    if (*end || v > (1ULL << 42) / mul) return 0;
    return (size_t)(v * mul);
}

/* create(name, size) -> true | nil, err */
static int l_create(lua_State *L)
{
    size_t nlen;
    const char *name = luaL_checklstring(L, 1, &nlen);
    size_t bytes;
    if (lua_type(L, 2) == LUA_TNUMBER) {
        lua_Number n = lua_tonumber(L, 2);
        bytes = n > 0 && n < (lua_Number)(1ULL << 42) ? (size_t)n : 0;
    } else {
        bytes = parse_size(luaL_checkstring(L, 2));
    }
    if (bytes == 0) return luaL_argerror(L, 2, "size must be a positive number or a string like \"1m\"");
    if (nlen == 0 || nlen > NAME_LEN || nlen != strlen(name)) {
        lua_pushnil(L);
        lua_pushfstring(L, "bad dict name \"%s\" (1 to %d characters)", name, NAME_LEN);
        return 2;
    }
    if (gw_dict_create(name, bytes) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot create shared dict \"%s\"", name);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* check(name) -> true | nil, err : verifies the dict's internal structures. */
static int l_check(lua_State *L)
{
    size_t nlen;
    const char *name = luaL_checklstring(L, 1, &nlen);
    gw_dict *d = gw_dict_find(name, nlen);
    char *err = "no such dict";
    if (d && gw_ffi_dict_check(d, &err) == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

int luaopen_gw_shared_c(lua_State *L)
{
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, l_create);
    lua_setfield(L, -2, "create");
    lua_pushcfunction(L, l_check);
    lua_setfield(L, -2, "check");
    return 1;
}
