/* fuzz_request.c — libFuzzer target for gw_http_parse_request (runtime/http_parser.c). Traps when
 * an invariant breaks: slices outside the buffer, a bad status on error, CL and chunked together,
 * or a verdict that changes when the same bytes arrive prefix by prefix. Each input is parsed with
 * the default limits and with tiny ones (so 414/431 paths are reached). */
#include "http_parser.h"
#include "fuzz.h"

#define NH 16

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const gw_http_limits small = { 40, 200, 4 };
    char *b = fuzz_copy(data, size);
    check_request(b, size, NULL);
    check_request(b, size, &small);
    free(b);
    return 0;
}
