/* fuzz_response.c — libFuzzer target for gw_http_parse_response and gw_http_response_body
 * (runtime/http_parser.c): what an upstream sends back. Traps on slices outside the buffer, a
 * status outside 100..999, a head longer than max_head, or a verdict that changes when the bytes
 * arrive prefix by prefix. */
#include "http_parser.h"
#include "fuzz.h"

#define NH 16

static int in_buf(gw_str s, const char *b, size_t n)
{
    if (s.n == 0) return 1;
    return s.p >= b && s.p + s.n <= b + n;
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *b = fuzz_copy(data, size);
    check_response(b, size);
    free(b);
    return 0;
}
