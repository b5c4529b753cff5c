/* fuzz_chunked.c — libFuzzer target for the chunked body decoder (gw_chunked_step in
 * runtime/http_parser.c). Decodes each input in one shot and byte by byte, every step over an
 * exact-size copy of the pending bytes, and traps when the two disagree (verdict, body checksum,
 * bytes consumed), when a step makes no progress, or when the pending bytes outgrow the bound
 * the header promises callers. */
#include "http_parser.h"
#include "fuzz.h"

/* Decodes with `feed` bytes arriving at a time (0 = all); returns the final code, the body
 * checksum and the bytes consumed. Each step sees an exact-size copy of the pending bytes. */
static int dechunk(const char *in, size_t n, size_t feed, uint64_t *sum, size_t *bodylen, size_t *used)
{
    gw_chunked c;
    char *pend = malloc(n + 1);
    size_t pn = 0, fed = 0, total = 0;
    int result = GW_CHUNK_AGAIN;

    gw_chunked_init(&c);
    *sum = 0;
    *bodylen = 0;
    *used = 0;
    for (;;) {
        size_t add = feed ? feed : n, off = 0;
        if (add > n - fed) add = n - fed;
        if (add) memcpy(pend + pn, in + fed, add);
        pn += add;
        fed += add;
        for (;;) {
            size_t cons = 0, dl = 0, m = pn - off;
            char *win = malloc(m ? m : 1);
            int rc;
            if (m) memcpy(win, pend + off, m);
            rc = gw_chunked_step(&c, win, m, &cons, &dl);
            if (rc == GW_CHUNK_DATA) {
                ENSURE(dl > 0 && dl == cons && dl <= m);
                for (size_t i = 0; i < dl; i++) *sum = *sum * 131 + (unsigned char)win[i];
                *bodylen += dl;
            }
            free(win);
            if (rc == GW_CHUNK_DATA || rc == GW_CHUNK_MORE) {
                ENSURE(cons > 0 && cons <= m);
                off += cons;
                continue;
            }
            if (rc == GW_CHUNK_DONE) { ENSURE(cons <= m); *used = total + off + cons; result = rc; goto out; }
            if (rc == GW_CHUNK_ERROR) { ENSURE(c.error != NULL); result = rc; goto out; }
            ENSURE(rc == GW_CHUNK_AGAIN && cons == 0);
            break;
        }
        memmove(pend, pend + off, pn - off);
        pn -= off;
        total += off;
        ENSURE(pn <= GW_CHUNK_MAX_TRAILERS + GW_CHUNK_MAX_SIZE_LINE + (feed ? feed : n));
        if (fed == n) break;
    }
out:
    free(pend);
    return result;
}

static void check_chunked(const char *b, size_t n)
{
    uint64_t s1, s2;
    size_t l1, l2, u1, u2;
    int rc1 = dechunk(b, n, 0, &s1, &l1, &u1);
    int rc2 = dechunk(b, n, 1, &s2, &l2, &u2);
    ENSURE(rc1 == rc2);
    if (rc1 == GW_CHUNK_DONE) ENSURE(s1 == s2 && l1 == l2 && u1 == u2 && u1 <= n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_chunked((const char *)data, size);
    return 0;
}
