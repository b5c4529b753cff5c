/* fuzz_http_parser.c — libFuzzer driver for runtime/http_parser.c. Feeds each input to the request
 * parser, the response parser and the chunked decoder, and traps when an invariant breaks: slices
 * outside the buffer, a verdict that changes with how the bytes were split (prefix-by-prefix vs one
 * shot, byte-by-byte vs one-shot chunked decoding), or no progress.
 * Build: clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -Iruntime \
 *            runtime/http_parser.c fuzz/fuzz_http_parser.c -o build/fuzz_http_parser */
#include "http_parser.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NH 16
#define ENSURE(c) do { if (!(c)) __builtin_trap(); } while (0)

static int in_buf(gw_str s, const char *b, size_t n)
{
    if (s.n == 0) return 1;
    return s.p >= b && s.p + s.n <= b + n;
}

static void check_request(const char *b, size_t n, const gw_http_limits *lim)
{
    gw_header h[NH], h2[NH];
    gw_http_request r, r2;
    int rc = gw_http_parse_request(b, n, &r, h, NH, lim);

    ENSURE(rc == GW_HTTP_AGAIN || rc == GW_HTTP_ERROR || (rc > 0 && (size_t)rc <= n));
    if (rc == GW_HTTP_ERROR) ENSURE(r.error && r.status >= 400 && r.status <= 505);
    if (rc > 0) {
        ENSURE(r.nheaders >= 0 && r.nheaders <= NH);
        ENSURE(in_buf(r.method, b, n) && in_buf(r.target, b, n) && in_buf(r.query, b, n));
        ENSURE(r.absolute_form || (in_buf(r.path, b, n) && in_buf(r.host, b, n)));
        for (int i = 0; i < r.nheaders; i++)
            ENSURE(in_buf(h[i].name, b, n) && in_buf(h[i].value, b, n) && h[i].name.n > 0);
        ENSURE(!(r.chunked && r.content_length >= 0));
    }
    /* prefix-by-prefix must reach the same verdict (small inputs only: quadratic) */
    if (n <= 400) {
        for (size_t k = 0; k <= n; k++) {
            char *p = malloc(k ? k : 1);
            int rc2;
            if (k) memcpy(p, b, k);
            rc2 = gw_http_parse_request(p, k, &r2, h2, NH, lim);
            free(p);
            if (rc2 != GW_HTTP_AGAIN) {
                ENSURE(rc2 == rc && r2.status == r.status);
                break;
            }
            ENSURE(k < n || rc == GW_HTTP_AGAIN);
        }
    }
}

static void check_response(const char *b, size_t n)
{
    gw_header h[NH];
    gw_http_response r;
    int rc = gw_http_parse_response(b, n, &r, h, NH, 256);
    ENSURE(rc == GW_HTTP_AGAIN || rc == GW_HTTP_ERROR || (rc > 0 && (size_t)rc <= n && rc <= 256));
    if (rc == GW_HTTP_ERROR) ENSURE(r.error != NULL);
    if (rc > 0) {
        ENSURE(r.status >= 100 && r.status <= 999 && in_buf(r.reason, b, n));
        for (int i = 0; i < r.nheaders; i++)
            ENSURE(in_buf(h[i].name, b, n) && in_buf(h[i].value, b, n));
        (void)gw_http_response_body(&r, (gw_str){ "GET", 3 });
    }
    if (n <= 400) {
        for (size_t k = 0; k <= n; k++) {
            gw_http_response r2;
            gw_header h2[NH];
            char *p = malloc(k ? k : 1);
            int rc2;
            if (k) memcpy(p, b, k);
            rc2 = gw_http_parse_response(p, k, &r2, h2, NH, 256);
            free(p);
            if (rc2 != GW_HTTP_AGAIN) {
                ENSURE(rc2 == rc && r2.status == r.status && r2.chunked == r.chunked
                       && r2.content_length == r.content_length);
                break;
            }
        }
    }
}

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
    static const gw_http_limits small = { 40, 200, 4 };
    char *b = malloc(size ? size : 1);
    if (size) memcpy(b, data, size);
    check_request(b, size, NULL);
    check_request(b, size, &small);
    check_response(b, size);
    check_chunked(b, size);
    free(b);
    return 0;
}
