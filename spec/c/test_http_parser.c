/* test_http_parser.c — unit tests for runtime/http_parser.c: request/response heads, strictness
 * rules, limits, pipelining, incremental feeding and the chunked decoder. Every head is parsed
 * twice: in one shot, and prefix by prefix (as bytes would arrive), and the two must agree. Inputs
 * are copied into exact-size heap buffers so ASan catches any read past `len`.
 * Prints one line per failure; the last line is "N passed, N failed". */
#include "http_parser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

#define CHECK(c) do { if (c) passed++; else { failed++; \
    printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); } } while (0)
#define CHECK_EQ(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
    if (a_ == b_) passed++; else { failed++; \
    printf("FAIL %s:%d: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, #b, a_, b_); } } while (0)
#define CHECK_STR(s, lit) do { gw_str s_ = (s); const char *l_ = (lit); \
    if (s_.n == strlen(l_) && (s_.n == 0 || memcmp(s_.p, l_, s_.n) == 0)) passed++; \
    else { failed++; printf("FAIL %s:%d: %s == \"%s\" (got \"%.*s\")\n", __FILE__, __LINE__, \
           #s, l_, (int)s_.n, s_.p ? s_.p : ""); } } while (0)

/* ---- request harness ---------------------------------------------------------------------- */

#define NH 128
static gw_header H[NH];
static gw_http_request R;
static char *Rbuf;              /* keeps the one-shot buffer alive while R's slices are checked */
static int Rhdrs = NH;          /* header array size passed to the parser */

static char *dup_exact(const char *s, size_t n)
{
    char *b = malloc(n ? n : 1);
    if (n) memcpy(b, s, n);
    return b;
}

/* One-shot parse into R, then every prefix; the first non-AGAIN prefix result must equal the
 * one-shot result, field for field. Returns the one-shot rc. */
static int preq(const char *s, size_t n, const gw_http_limits *lim, int line)
{
    gw_http_request r2;
    gw_header h2[NH];
    int rc, rc2 = GW_HTTP_AGAIN;
    size_t k;

    free(Rbuf);
    Rbuf = dup_exact(s, n);
    rc = gw_http_parse_request(Rbuf, n, &R, H, Rhdrs, lim);
    for (k = 0; k <= n; k++) {
        char *p = dup_exact(s, k);
        rc2 = gw_http_parse_request(p, k, &r2, h2, Rhdrs, lim);
        if (rc2 != GW_HTTP_AGAIN) {
            int same = rc2 == rc && r2.status == R.status;
            if (same && rc > 0) {
                same = r2.nheaders == R.nheaders && r2.content_length == R.content_length
                    && r2.chunked == R.chunked && r2.keepalive == R.keepalive
                    && r2.expect_continue == R.expect_continue && r2.upgrade == R.upgrade
                    && r2.version == R.version && r2.path.n == R.path.n
                    && r2.query.n == R.query.n && r2.host.n == R.host.n
                    && (R.absolute_form || r2.path.p - p == R.path.p - Rbuf);
            }
            if (same) passed++;
            else {
                failed++;
                printf("FAIL %s:%d: incremental parse differs at %zu bytes (rc %d/%d status %d/%d)\n",
                       __FILE__, line, k, rc2, rc, r2.status, R.status);
            }
            free(p);
            return rc;
        }
        free(p);
    }
    if (rc != GW_HTTP_AGAIN) {
        failed++;
        printf("FAIL %s:%d: incremental parse never finished (one-shot rc %d)\n", __FILE__, line, rc);
    } else passed++;
    return rc;
}

#define REQ(s) preq((s), sizeof(s) - 1, NULL, __LINE__)
#define REQ_LIM(s, lim) preq((s), sizeof(s) - 1, (lim), __LINE__)
#define OK_REQ(s) CHECK_EQ(REQ(s), (int)(sizeof(s) - 1))
#define BAD_REQ(s, st) do { int rc_ = REQ(s); CHECK_EQ(rc_, GW_HTTP_ERROR); \
    CHECK_EQ(R.status, st); CHECK(R.error != NULL); } while (0)

/* "GET / HTTP/1.1\r\nHost: h\r\n" + extra header lines + "\r\n" */
#define GET11(hdrs) "GET / HTTP/1.1\r\nHost: h\r\n" hdrs "\r\n"

/* ---- request tests ------------------------------------------------------------------------ */

static void test_basic(void)
{
    OK_REQ("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");
    CHECK_STR(R.method, "GET");
    CHECK_STR(R.target, "/");
    CHECK_STR(R.path, "/");
    CHECK_STR(R.query, "");
    CHECK(R.query.p != NULL);
    CHECK_STR(R.host, "example.com");
    CHECK_EQ(R.version, 11);
    CHECK_EQ(R.nheaders, 1);
    CHECK_EQ(R.content_length, -1);
    CHECK_EQ(R.keepalive, 1);
    CHECK_EQ(R.chunked, 0);
    CHECK_EQ(R.expect_continue, 0);
    CHECK_EQ(R.upgrade, 0);
    CHECK_EQ(R.absolute_form, 0);
    CHECK_EQ(R.status, 0);
    CHECK(R.error == NULL);
    CHECK(R.headers == H);
    CHECK_STR(R.headers[0].name, "Host");
    CHECK_STR(R.headers[0].value, "example.com");

    OK_REQ("POST /a/b%20c?x=1&y=?2 HTTP/1.1\r\nHost: h:8080\r\nContent-Length: 12\r\n"
           "X-Custom:  spaced  value \t\r\nX-Empty:\r\nX-Blank: \t \r\n\r\n");
    CHECK_STR(R.method, "POST");
    CHECK_STR(R.target, "/a/b%20c?x=1&y=?2");
    CHECK_STR(R.path, "/a/b%20c");
    CHECK_STR(R.query, "x=1&y=?2");
    CHECK_STR(R.host, "h:8080");
    CHECK_EQ(R.content_length, 12);
    CHECK_EQ(R.nheaders, 5);
    CHECK_STR(R.headers[2].name, "X-Custom");
    CHECK_STR(R.headers[2].value, "spaced  value");
    CHECK_STR(R.headers[3].value, "");
    CHECK_STR(R.headers[4].value, "");

    OK_REQ("GET /p? HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK_STR(R.path, "/p");
    CHECK_STR(R.query, "");

    /* methods are case-sensitive tokens; unknown ones are the caller's business */
    OK_REQ("get / HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK_STR(R.method, "get");
    OK_REQ("M-SEARCH / HTTP/1.1\r\nHost: h\r\n\r\n");

    /* obs-text in values and targets passes through */
    OK_REQ("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\nX-Name: Jos\xc3\xa9\r\n\r\n");
    CHECK_STR(R.path, "/caf\xc3\xa9");
    OK_REQ(GET11("X-Tab: a\tb\r\n"));
    CHECK_STR(R.headers[1].value, "a\tb");

    /* a long value exercises the word-at-a-time scan, with the bad byte at every offset */
    OK_REQ(GET11("X-Long: 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n"));
    CHECK_STR(R.headers[1].value, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");
    for (int off = 0; off < 40; off++) {
        char b[256];
        int n = snprintf(b, sizeof b, "GET / HTTP/1.1\r\nHost: h\r\nX-Long: %.*s\x01tail\r\n\r\n",
                         off, "0123456789012345678901234567890123456789");
        CHECK_EQ(preq(b, (size_t)n, NULL, __LINE__), GW_HTTP_ERROR);
        CHECK_EQ(R.status, 400);
        n = snprintf(b, sizeof b, "GET /%.*s\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
                     off, "0123456789012345678901234567890123456789");
        CHECK_EQ(preq(b, (size_t)n, NULL, __LINE__), GW_HTTP_ERROR);
        CHECK_EQ(R.status, 400);
    }
}

static void test_http10_keepalive(void)
{
    OK_REQ("GET / HTTP/1.0\r\n\r\n");
    CHECK_EQ(R.version, 10);
    CHECK_EQ(R.keepalive, 0);
    CHECK_STR(R.host, "");
    CHECK(R.host.p != NULL);
    OK_REQ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    CHECK_EQ(R.keepalive, 1);
    OK_REQ("GET / HTTP/1.0\r\nConnection: Foo, Keep-Alive\r\n\r\n");
    CHECK_EQ(R.keepalive, 1);
    OK_REQ("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
    CHECK_EQ(R.keepalive, 0);
    OK_REQ(GET11("Connection: close\r\n"));
    CHECK_EQ(R.keepalive, 0);
    OK_REQ(GET11("Connection: foo,  CLOSE \r\n"));
    CHECK_EQ(R.keepalive, 0);
    OK_REQ(GET11("Connection: foo\r\nConnection: Close\r\n"));
    CHECK_EQ(R.keepalive, 0);
    OK_REQ(GET11("Connection: closed\r\n"));
    CHECK_EQ(R.keepalive, 1);
    OK_REQ(GET11("Connection: keep-alive\r\n"));
    CHECK_EQ(R.keepalive, 1);

    OK_REQ(GET11("Expect: 100-continue\r\n"));
    CHECK_EQ(R.expect_continue, 1);
    OK_REQ(GET11("Expect: 100-Continue\r\n"));
    CHECK_EQ(R.expect_continue, 1);
    OK_REQ(GET11("Expect: something-else\r\n"));
    CHECK_EQ(R.expect_continue, 0);
    OK_REQ("GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
    CHECK_EQ(R.expect_continue, 0);

    OK_REQ(GET11("Connection: Upgrade\r\nUpgrade: websocket\r\n"));
    CHECK_EQ(R.upgrade, 1);
    CHECK_EQ(R.keepalive, 1);
    OK_REQ(GET11("Connection: keep-alive, upgrade\r\nUpgrade: h2c\r\n"));
    CHECK_EQ(R.upgrade, 1);
    OK_REQ(GET11("Upgrade: websocket\r\n"));
    CHECK_EQ(R.upgrade, 0);
    OK_REQ(GET11("Connection: upgrade\r\n"));
    CHECK_EQ(R.upgrade, 0);
}

static void test_content_length(void)
{
    OK_REQ(GET11("Content-Length: 5\r\n"));
    CHECK_EQ(R.content_length, 5);
    OK_REQ(GET11("content-LENGTH: 0\r\n"));
    CHECK_EQ(R.content_length, 0);
    OK_REQ(GET11("Content-Length: 5, 5\r\n"));
    CHECK_EQ(R.content_length, 5);
    OK_REQ(GET11("Content-Length: 5,5 ,  5\r\n"));
    CHECK_EQ(R.content_length, 5);
    OK_REQ(GET11("Content-Length: 5\r\nContent-Length: 5\r\n"));
    CHECK_EQ(R.content_length, 5);
    OK_REQ(GET11("Content-Length: 007\r\n"));
    CHECK_EQ(R.content_length, 7);
    OK_REQ(GET11("Content-Length: 9223372036854775807\r\n"));
    CHECK_EQ(R.content_length, 9223372036854775807LL);

    BAD_REQ(GET11("Content-Length: 5\r\nContent-Length: 6\r\n"), 400);
    BAD_REQ(GET11("Content-Length: 5, 6\r\n"), 400);
    BAD_REQ(GET11("Content-Length: abc\r\n"), 400);
    BAD_REQ(GET11("Content-Length: -1\r\n"), 400);
    BAD_REQ(GET11("Content-Length: +5\r\n"), 400);
    BAD_REQ(GET11("Content-Length: 0x5\r\n"), 400);
    BAD_REQ(GET11("Content-Length: 5 5\r\n"), 400);
    BAD_REQ(GET11("Content-Length: 5,\r\n"), 400);
    BAD_REQ(GET11("Content-Length: ,5\r\n"), 400);
    BAD_REQ(GET11("Content-Length: 1.5\r\n"), 400);
    BAD_REQ(GET11("Content-Length:\r\n"), 400);
    BAD_REQ(GET11("Content-Length: 9223372036854775808\r\n"), 400);
    BAD_REQ(GET11("Content-Length: 99999999999999999999999999\r\n"), 400);
}

static void test_transfer_encoding(void)
{
    OK_REQ(GET11("Transfer-Encoding: chunked\r\n"));
    CHECK_EQ(R.chunked, 1);
    CHECK_EQ(R.content_length, -1);
    OK_REQ(GET11("Transfer-Encoding: Chunked\r\n"));
    CHECK_EQ(R.chunked, 1);
    OK_REQ(GET11("Transfer-Encoding: gzip, chunked\r\n"));
    CHECK_EQ(R.chunked, 1);
    OK_REQ(GET11("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"));
    CHECK_EQ(R.chunked, 1);
    OK_REQ(GET11("Transfer-Encoding: ,chunked,\r\n"));
    CHECK_EQ(R.chunked, 1);

    BAD_REQ(GET11("Transfer-Encoding: chunked, gzip\r\n"), 400);
    BAD_REQ(GET11("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"), 400);
    BAD_REQ(GET11("Transfer-Encoding: gzip\r\n"), 400);
    BAD_REQ(GET11("Transfer-Encoding: chunked, chunked\r\n"), 400);
    BAD_REQ(GET11("Transfer-Encoding:\r\n"), 400);
    BAD_REQ(GET11("Transfer-Encoding: ,\r\n"), 400);
    BAD_REQ(GET11("Transfer-Encoding: \"chunked\"\r\n"), 400);
    BAD_REQ(GET11("Transfer-Encoding: foo\r\n"), 501);
    BAD_REQ(GET11("Transfer-Encoding: identity\r\n"), 501);
    BAD_REQ(GET11("Transfer-Encoding: foo, chunked\r\n"), 501);
    BAD_REQ(GET11("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), 400);
    BAD_REQ(GET11("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400);
    BAD_REQ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    /* parameters on a transfer coding are not guessed about */
    BAD_REQ(GET11("Transfer-Encoding: chunked;q=1\r\n"), 400);
    BAD_REQ(GET11("Transfer-Encoding: gzip;level=1, chunked\r\n"), 400);
    BAD_REQ(GET11("Transfer-Encoding: chunked\x0b\r\n"), 400);
    BAD_REQ(GET11("Transfer-Encoding : chunked\r\n"), 400);
    BAD_REQ(GET11("Transfer-Encoding:\r\n chunked\r\n"), 400);
    /* a near-miss name is just another header */
    OK_REQ(GET11("Transfer-Encodings: foo\r\n"));
    CHECK_EQ(R.chunked, 0);
}

static void test_header_syntax(void)
{
    /* obs-fold */
    BAD_REQ(GET11("X-A: a\r\n b\r\n"), 400);
    BAD_REQ(GET11("X-A: a\r\n\tb\r\n"), 400);
    BAD_REQ("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400);
    /* bare CR / bare LF */
    BAD_REQ("GET / HTTP/1.1\rHost: h\r\n\r\n", 400);
    BAD_REQ(GET11("X-A: a\rb\r\n"), 400);
    BAD_REQ(GET11("X-A: a\r\r\n"), 400);
    BAD_REQ("GET / HTTP/1.1\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET / HTTP/1.1\r\nHost: h\n\r\n", 400);
    BAD_REQ("GET / HTTP/1.1\r\nHost: h\r\n\n", 400);
    BAD_REQ("GET / HTTP/1.1\r\nHost: h\r\n\rX", 400);
    BAD_REQ(GET11("X-A: a\nb\r\n"), 400);
    /* field names */
    BAD_REQ(GET11("X-A : a\r\n"), 400);
    BAD_REQ(GET11("X-A\t: a\r\n"), 400);
    BAD_REQ(GET11(": a\r\n"), 400);
    BAD_REQ(GET11("X(A): a\r\n"), 400);
    BAD_REQ(GET11("X@A: a\r\n"), 400);
    BAD_REQ(GET11("X\xc3\xa9: a\r\n"), 400);
    BAD_REQ(GET11("NoColon\r\n"), 400);
    OK_REQ(GET11("X-A:no-space\r\n"));
    CHECK_STR(R.headers[1].value, "no-space");
    OK_REQ(GET11("!#$%&'*+-.^_`|~09azAZ: v\r\n"));
    /* values: NUL and other controls */
    {
        static const char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n";
        CHECK_EQ(preq(nul, sizeof nul - 1, NULL, __LINE__), GW_HTTP_ERROR);
        CHECK_EQ(R.status, 400);
    }
    BAD_REQ(GET11("X-A: a\x01" "b\r\n"), 400);
    BAD_REQ(GET11("X-A: a\x1f\r\n"), 400);
    BAD_REQ(GET11("X-A: a\x7f\r\n"), 400);
}

static void test_request_line(void)
{
    BAD_REQ("G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET /\r\n\r\n", 400);
    BAD_REQ("GET\r\n\r\n", 400);
    BAD_REQ("/ HTTP/1.1\r\n\r\n", 400);
    BAD_REQ("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400);   /* TLS hello: fails fast */
    BAD_REQ("GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET /a\x01" "b HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    /* versions */
    BAD_REQ("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505);
    BAD_REQ("GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505);
    BAD_REQ("GET / HTTP/0.9\r\n\r\n", 505);
    BAD_REQ("GET / HTTP/9.9\r\n\r\n", 505);
    BAD_REQ("GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET / HTTP/1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET / HTTP/11\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET / http/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET / HTTP/2\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET / HTTPS/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET / HTTP/1.1\r\r\nHost: h\r\n\r\n", 400);
    /* leading empty lines are skipped (and counted in the head length) */
    OK_REQ("\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK_STR(R.method, "GET");
    CHECK_STR(R.path, "/x");
    BAD_REQ("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    CHECK_EQ(REQ("\r\n"), GW_HTTP_AGAIN);
    CHECK_EQ(REQ(""), GW_HTTP_AGAIN);
}

static void test_targets(void)
{
    OK_REQ("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK_STR(R.path, "*");
    CHECK_STR(R.query, "");
    BAD_REQ("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET foo HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400);
    BAD_REQ("GET ?x HTTP/1.1\r\nHost: h\r\n\r\n", 400);

    /* absolute-form: path from the URI, host from the authority (overrides Host) */
    OK_REQ("GET http://example.com:8080/p/q?z=1&w HTTP/1.1\r\nHost: other\r\n\r\n");
    CHECK_EQ(R.absolute_form, 1);
    CHECK_STR(R.target, "http://example.com:8080/p/q?z=1&w");
    CHECK_STR(R.path, "/p/q");
    CHECK_STR(R.query, "z=1&w");
    CHECK_STR(R.host, "example.com:8080");
    /* the received Host is ignored (RFC 9112 3.2.2): its field line now carries the authority */
    CHECK_STR(gw_http_header_get(R.headers, R.nheaders, "host"), "example.com:8080");
    OK_REQ("GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
    CHECK_STR(R.path, "/");
    CHECK_STR(R.query, "");
    CHECK_STR(R.host, "example.com");
    OK_REQ("GET http://example.com?a=b HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_STR(R.path, "/");
    CHECK_STR(R.query, "a=b");
    OK_REQ("GET HTTPS://[::1]:443/ HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_STR(R.host, "[::1]:443");
    CHECK_STR(R.path, "/");
    OK_REQ("GET http://h/a?b?c HTTP/1.0\r\n\r\n");
    CHECK_STR(R.host, "h");
    CHECK_STR(R.path, "/a");
    CHECK_STR(R.query, "b?c");
    BAD_REQ("GET http://h/ HTTP/1.1\r\n\r\n", 400);           /* Host still required in 1.1 */
    BAD_REQ("GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET http:// HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET http://h#f/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET http:/h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

static void test_host(void)
{
    BAD_REQ("GET / HTTP/1.1\r\n\r\n", 400);
    BAD_REQ("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
    BAD_REQ("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400);
    BAD_REQ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    BAD_REQ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400);
    BAD_REQ("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400);
    BAD_REQ("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    OK_REQ("GET / HTTP/1.1\r\nHost:\r\n\r\n");
    CHECK_STR(R.host, "");
    OK_REQ("GET / HTTP/1.1\r\nHOST:  [::1]:80 \r\n\r\n");
    CHECK_STR(R.host, "[::1]:80");
    OK_REQ("GET / HTTP/1.1\r\nhost: api.example.com\r\n\r\n");
    CHECK_STR(R.host, "api.example.com");
    /* absolute-form: the authority wins, and the Host field line says so too (RFC 9112 3.2.2) */
    OK_REQ("GET http://abs.example:8080/p HTTP/1.1\r\nX-A: 1\r\nHost: other.example\r\n\r\n");
    CHECK_STR(R.host, "abs.example:8080");
    CHECK_STR(gw_http_header_get(R.headers, R.nheaders, "host"), "abs.example:8080");
    CHECK_EQ(R.nheaders, 2);
    /* ... but a Host field is still required in HTTP/1.1, still single and still valid */
    BAD_REQ("GET http://abs.example/p HTTP/1.1\r\n\r\n", 400);
    BAD_REQ("GET http://abs.example/p HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
    BAD_REQ("GET http://abs.example/p HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
}

static void test_underscores(void)
{
    OK_REQ(GET11("X_Foo: 1\r\nX-Bar: 2\r\n_: 3\r\nContent_Length: 9\r\n"));
    CHECK_EQ(R.nheaders, 5);
    CHECK_EQ(gw_http_drop_underscores(&R), 3);
    CHECK_EQ(R.nheaders, 2);
    CHECK_STR(R.headers[0].name, "Host");
    CHECK_STR(R.headers[1].name, "X-Bar");
    CHECK_EQ(R.content_length, -1);
    CHECK_EQ(gw_http_header_index(R.headers, R.nheaders, 0, "x_foo"), -1);
    CHECK_EQ(gw_http_drop_underscores(&R), 0);
    CHECK_EQ(R.nheaders, 2);
    /* Transfer_Encoding never framed anything: Content-Length does */
    OK_REQ("POST / HTTP/1.1\r\nHost: h\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
    CHECK_EQ(R.chunked, 0);
    CHECK_EQ(R.content_length, 5);
    CHECK_EQ(gw_http_drop_underscores(&R), 1);
    CHECK_EQ(R.nheaders, 2);
}

static void test_limits(void)
{
    gw_http_limits l = { 20, 128, 3 };
    char big[2000];

    /* request line (28 bytes here): exactly max is fine, one more is 414, even before its
     * CRLF arrives */
    l.max_request_line = 27;
    CHECK_EQ(REQ_LIM("GET /0123456789abcd HTTP/1.0\r\n\r\n", &l), GW_HTTP_ERROR);
    CHECK_EQ(R.status, 414);
    CHECK_EQ(REQ_LIM("GET /0123456789abcd HTTP/1.0\r", &l), GW_HTTP_ERROR);
    CHECK_EQ(R.status, 414);
    CHECK_EQ(REQ_LIM("GET /0123456789abcdefghijklmnopqrstuvwxyz", &l), GW_HTTP_ERROR);
    CHECK_EQ(R.status, 414);
    CHECK_EQ(REQ_LIM("GET /0123456789", &l), GW_HTTP_AGAIN);
    l.max_request_line = 28;
    CHECK_EQ(REQ_LIM("GET /0123456789abcd HTTP/1.0\r\n\r\n", &l), 32);
    CHECK_EQ(REQ_LIM("GET /0123456789abcd HTTP/1.0\r", &l), GW_HTTP_AGAIN);
    CHECK_EQ(REQ_LIM("GET /0123456789abcd HTTP/1.0", &l), GW_HTTP_AGAIN);
    /* 28 bytes of target without a line end: the line is already longer than 28 with its
     * version, but only the byte count is proof; 29 bytes that are not "...\r" are */
    CHECK_EQ(REQ_LIM("GET /0123456789abcdefghijklmn", &l), GW_HTTP_ERROR);
    CHECK_EQ(R.status, 414);
    CHECK_EQ(REQ_LIM("GET /0123456789abcdefghijklm", &l), GW_HTTP_AGAIN);
    /* with an invalid byte past the limit, the limit speaks first */
    CHECK_EQ(REQ_LIM("GET /0123456789abcdefghijklmnopq\x01", &l), GW_HTTP_ERROR);
    CHECK_EQ(R.status, 414);
    CHECK_EQ(REQ_LIM("GET /0123456789abcdefghijklmn\x01", &l), GW_HTTP_ERROR);   /* fuzz find */
    CHECK_EQ(R.status, 414);
    CHECK_EQ(REQ_LIM("GET /0123456789abcdefghijklm\x01", &l), GW_HTTP_ERROR);
    CHECK_EQ(R.status, 414);
    CHECK_EQ(REQ_LIM("GET /0123456789abcdefghijkl\x01", &l), GW_HTTP_ERROR);
    CHECK_EQ(R.status, 400);
    CHECK_EQ(REQ_LIM("GET /0123456789abcdefghijkl \r", &l), GW_HTTP_ERROR);
    CHECK_EQ(R.status, 400);
    /* CR / LF landing exactly on the limit and one before it */
    l.max_request_line = 29;
    CHECK_EQ(REQ_LIM("GET /0123456789abcd HTTP/1.0\r\n\r\n", &l), 32);
    l.max_request_line = 30;
    CHECK_EQ(REQ_LIM("GET /0123456789abcd HTTP/1.0\r\n\r\n", &l), 32);
    l.max_request_line = 28;
    /* ...and before it, the invalid byte does */
    CHECK_EQ(REQ_LIM("GET /01\x01", &l), GW_HTTP_ERROR);
    CHECK_EQ(R.status, 400);

    /* header count */
    l.max_request_line = 100;
    CHECK_EQ(REQ_LIM("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", &l), 39);
    CHECK_EQ(REQ_LIM("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &l), GW_HTTP_ERROR);
    CHECK_EQ(R.status, 431);
    CHECK_EQ(REQ_LIM("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC", &l), GW_HTTP_ERROR);
    CHECK_EQ(R.status, 431);
    CHECK_EQ(REQ_LIM("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n", &l), GW_HTTP_AGAIN);
    CHECK_EQ(REQ_LIM("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r", &l), GW_HTTP_AGAIN);
    /* the caller's array is a limit too */
    Rhdrs = 2;
    CHECK_EQ(REQ("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n"), GW_HTTP_ERROR);
    CHECK_EQ(R.status, 431);
    CHECK_EQ(REQ("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\r\n"), 33);
    Rhdrs = 0;
    CHECK_EQ(REQ("GET / HTTP/1.0\r\n\r\n"), 18);
    CHECK_EQ(REQ("GET / HTTP/1.0\r\nA: 1\r\n\r\n"), GW_HTTP_ERROR);
    CHECK_EQ(R.status, 431);
    Rhdrs = NH;

    /* head size: exactly max is fine, one more byte is 431, also while incomplete */
    l = (gw_http_limits){ 100, 39, 10 };
    CHECK_EQ(REQ_LIM("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", &l), 39);
    l.max_header_size = 38;
    CHECK_EQ(REQ_LIM("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", &l), GW_HTTP_ERROR);
    CHECK_EQ(R.status, 431);
    CHECK_EQ(REQ_LIM("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2222222222222222222222", &l), GW_HTTP_ERROR);
    CHECK_EQ(R.status, 431);
    CHECK_EQ(REQ_LIM("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2", &l), GW_HTTP_AGAIN);
    /* stray empty lines count towards the head */
    CHECK_EQ(REQ_LIM("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n", &l),
             GW_HTTP_ERROR);
    CHECK_EQ(R.status, 431);
    /* a request line longer than the head limit is a 431 (the head cannot fit) */
    l = (gw_http_limits){ 100, 16, 10 };
    CHECK_EQ(REQ_LIM("GET /0123456789abcdef HTTP/1.1\r\n", &l), GW_HTTP_ERROR);
    CHECK_EQ(R.status, 431);

    /* defaults (lim NULL / zero fields): 8192-byte request line */
    memcpy(big, "GET /", 5);
    memset(big + 5, 'a', sizeof big - 5);
    {
        static char line[8300];
        gw_http_limits z = { 0, 0, 0 };
        int n;
        memset(line, 'a', sizeof line);
        memcpy(line, "GET /", 5);
        n = 8192 - 9;                         /* "GET /aaa...a HTTP/1.0" = 8192 bytes */
        memcpy(line + n, " HTTP/1.0\r\n\r\n", 13);
        CHECK_EQ(gw_http_parse_request(line, (size_t)n + 13, &R, H, NH, NULL), n + 13);
        CHECK_EQ(gw_http_parse_request(line, (size_t)n + 13, &R, H, NH, &z), n + 13);
        memset(line, 'a', sizeof line);
        memcpy(line, "GET /", 5);
        n = 8193 - 9;
        memcpy(line + n, " HTTP/1.0\r\n\r\n", 13);
        CHECK_EQ(gw_http_parse_request(line, (size_t)n + 13, &R, H, NH, NULL), GW_HTTP_ERROR);
        CHECK_EQ(R.status, 414);
    }
    CHECK_EQ(preq(big, sizeof big, &(gw_http_limits){ 1000, 4096, 10 }, __LINE__), GW_HTTP_ERROR);
    CHECK_EQ(R.status, 414);
}

static void test_pipelining(void)
{
    static const char in[] =
        "GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
        "POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        "GET /three?x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        "GET /fo";
    size_t off = 0, n = sizeof in - 1;
    int rc;

    rc = gw_http_parse_request(in + off, n - off, &R, H, NH, NULL);
    CHECK(rc > 0);
    CHECK_STR(R.path, "/one");
    off += (size_t)rc;
    rc = gw_http_parse_request(in + off, n - off, &R, H, NH, NULL);
    CHECK(rc > 0);
    CHECK_STR(R.path, "/two");
    CHECK_EQ(R.content_length, 5);
    CHECK(memcmp(in + off + rc, "hello", 5) == 0);
    off += (size_t)rc + 5;
    rc = gw_http_parse_request(in + off, n - off, &R, H, NH, NULL);
    CHECK(rc > 0);
    CHECK_STR(R.path, "/three");
    CHECK_STR(R.query, "x");
    CHECK_EQ(R.keepalive, 0);
    off += (size_t)rc;
    rc = gw_http_parse_request(in + off, n - off, &R, H, NH, NULL);
    CHECK_EQ(rc, GW_HTTP_AGAIN);
    CHECK_EQ(n - off, 7);

    /* each pipelined request through the prefix-by-prefix harness too */
    rc = preq(in, n, NULL, __LINE__);
    CHECK_EQ(rc, 30);
}

static void test_incremental_explicit(void)
{
    static const char in[] = "PUT /up?a=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                             "Expect: 100-continue\r\n\r\n";
    size_t n = sizeof in - 1;
    for (size_t k = 0; k < n; k++) {
        char *p = dup_exact(in, k);
        int rc = gw_http_parse_request(p, k, &R, H, NH, NULL);
        if (rc != GW_HTTP_AGAIN) {
            failed++;
            printf("FAIL %s:%d: prefix %zu gave %d\n", __FILE__, __LINE__, k, rc);
        }
        free(p);
    }
    passed++;
    CHECK_EQ(gw_http_parse_request(in, n, &R, H, NH, NULL), (int)n);
    CHECK_EQ(R.chunked, 1);
    CHECK_EQ(R.expect_continue, 1);
    CHECK_STR(R.query, "a=1");
}

static void test_helpers(void)
{
    gw_header h[4] = {
        { gw_str_c("Host"), gw_str_c("a") },
        { gw_str_c("X-Dup"), gw_str_c("1") },
        { gw_str_c("x-dup"), gw_str_c("2") },
        { gw_str_c("X-DUPS"), gw_str_c("3") },
    };
    CHECK(gw_str_ieq(gw_str_c("Content-Length"), "content-length"));
    CHECK(gw_str_ieq(gw_str_c(""), ""));
    CHECK(!gw_str_ieq(gw_str_c("Content-Lengt"), "content-length"));
    CHECK(!gw_str_ieq(gw_str_c("Content-Lengthh"), "content-length"));
    CHECK(!gw_str_ieq(gw_str_c("["), "{"));    /* '[' | 0x20 == '{': only letters fold */
    CHECK(gw_http_has_token(gw_str_c("a, b ,C;q=1"), "c"));
    CHECK(gw_http_has_token(gw_str_c(",,close,"), "close"));
    CHECK(gw_http_has_token(gw_str_c("keep-alive"), "Keep-Alive"));
    CHECK(!gw_http_has_token(gw_str_c("closed, xclose"), "close"));
    CHECK(!gw_http_has_token(gw_str_c(""), "close"));
    CHECK(!gw_http_has_token((gw_str){ NULL, 0 }, "close"));
    CHECK_EQ(gw_http_header_index(h, 4, 0, "x-dup"), 1);
    CHECK_EQ(gw_http_header_index(h, 4, 2, "x-dup"), 2);
    CHECK_EQ(gw_http_header_index(h, 4, 3, "x-dup"), -1);
    CHECK_EQ(gw_http_header_index(h, 4, 0, "x-dups"), 3);
    CHECK_EQ(gw_http_header_index(h, 4, 0, "nope"), -1);
    CHECK_STR(gw_http_header_get(h, 4, "host"), "a");
    CHECK(gw_http_header_get(h, 4, "missing").p == NULL);
    CHECK(gw_http_valid_field_name(gw_str_c("X-Ok")));
    CHECK(!gw_http_valid_field_name(gw_str_c("")));
    CHECK(!gw_http_valid_field_name(gw_str_c("X Bad")));
    CHECK(!gw_http_valid_field_name(gw_str_c("X:Bad")));
    CHECK(gw_http_valid_field_value(gw_str_c("a b\tc \xc3\xa9")));
    CHECK(gw_http_valid_field_value(gw_str_c("")));
    CHECK(!gw_http_valid_field_value(gw_str_c("a\r\nX-Injected: 1")));
    CHECK(!gw_http_valid_field_value(gw_str_c("a\nb")));
    CHECK(!gw_http_valid_field_value((gw_str){ "a\0b", 3 }));
    CHECK(!gw_http_valid_field_value(gw_str_c("0123456789abcdef0123\x01")));
}

/* ---- responses ---------------------------------------------------------------------------- */

static gw_http_response P;
static char *Pbuf;
static const gw_str GET = { "GET", 3 }, HEAD = { "HEAD", 4 }, CONNECT = { "CONNECT", 7 };

static int presp_max(const char *s, size_t n, size_t max_head, int line)
{
    gw_http_response p2;
    gw_header h2[NH];
    int rc;
    free(Pbuf);
    Pbuf = dup_exact(s, n);
    rc = gw_http_parse_response(Pbuf, n, &P, H, NH, max_head);
    for (size_t k = 0; k <= n; k++) {
        char *b = dup_exact(s, k);
        int rc2 = gw_http_parse_response(b, k, &p2, h2, NH, max_head);
        free(b);
        if (rc2 != GW_HTTP_AGAIN) {
            if (rc2 == rc && p2.status == P.status && p2.content_length == P.content_length
                && p2.chunked == P.chunked && p2.keepalive == P.keepalive) passed++;
            else {
                failed++;
                printf("FAIL %s:%d: incremental response parse differs at %zu (rc %d/%d)\n",
                       __FILE__, line, k, rc2, rc);
            }
            return rc;
        }
    }
    CHECK_EQ(rc, GW_HTTP_AGAIN);
    return rc;
}
#define RESP(s) presp_max((s), sizeof(s) - 1, 65536, __LINE__)
#define OK_RESP(s) CHECK_EQ(RESP(s), (int)(sizeof(s) - 1))
#define BAD_RESP(s) do { CHECK_EQ(RESP(s), GW_HTTP_ERROR); CHECK(P.error != NULL); } while (0)

static void test_responses(void)
{
    OK_RESP("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\n");
    CHECK_EQ(P.status, 200);
    CHECK_EQ(P.version, 11);
    CHECK_STR(P.reason, "OK");
    CHECK_EQ(P.content_length, 5);
    CHECK_EQ(P.keepalive, 1);
    CHECK_EQ(P.nheaders, 2);
    CHECK_EQ(gw_http_response_body(&P, GET), GW_BODY_LENGTH);
    CHECK_EQ(gw_http_response_body(&P, HEAD), GW_BODY_NONE);

    OK_RESP("HTTP/1.1 404 Not  Found here\r\n\r\n");
    CHECK_STR(P.reason, "Not  Found here");
    CHECK_EQ(gw_http_response_body(&P, GET), GW_BODY_CLOSE);
    OK_RESP("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n");
    CHECK_STR(P.reason, "");
    CHECK_EQ(gw_http_response_body(&P, GET), GW_BODY_NONE);
    OK_RESP("HTTP/1.1 200 \r\n\r\n");
    CHECK_STR(P.reason, "");

    OK_RESP("HTTP/1.1 204 No Content\r\n\r\n");
    CHECK_EQ(gw_http_response_body(&P, GET), GW_BODY_NONE);
    OK_RESP("HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n");
    CHECK_EQ(P.content_length, 100);
    CHECK_EQ(gw_http_response_body(&P, GET), GW_BODY_NONE);
    OK_RESP("HTTP/1.1 100 Continue\r\n\r\n");
    CHECK_EQ(gw_http_response_body(&P, GET), GW_BODY_NONE);
    OK_RESP("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    CHECK_EQ(P.upgrade, 1);
    CHECK_EQ(gw_http_response_body(&P, GET), GW_BODY_NONE);
    OK_RESP("HTTP/1.1 200 Connection established\r\n\r\n");
    CHECK_EQ(gw_http_response_body(&P, CONNECT), GW_BODY_NONE);
    CHECK_EQ(gw_http_response_body(&P, GET), GW_BODY_CLOSE);

    OK_RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    CHECK_EQ(P.chunked, 1);
    CHECK_EQ(gw_http_response_body(&P, GET), GW_BODY_CHUNKED);
    CHECK_EQ(gw_http_response_body(&P, HEAD), GW_BODY_NONE);
    OK_RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked \r\n\r\n");
    CHECK_EQ(gw_http_response_body(&P, GET), GW_BODY_CHUNKED);
    /* gw strips the transfer coding it forwards: any other coding (or one it does not know, an
     * obfuscated "chunked") cannot be passed on, so the response is refused (502) */
    BAD_RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    BAD_RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
    BAD_RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n");
    BAD_RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;x=1\r\n\r\n");
    BAD_RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n");
    BAD_RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n");
    BAD_RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n");
    /* status codes outside 100..599 are invalid (RFC 9110 15) */
    BAD_RESP("HTTP/1.1 600 Odd\r\n\r\n");
    BAD_RESP("HTTP/1.1 999 Odd\r\n\r\n");
    OK_RESP("HTTP/1.1 599 Edge\r\nContent-Length: 0\r\n\r\n");
    CHECK_EQ(P.status, 599);
    OK_RESP("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\n");
    CHECK_EQ(P.keepalive, 0);

    OK_RESP("HTTP/1.0 200 OK\r\n\r\n");
    CHECK_EQ(P.version, 10);
    CHECK_EQ(P.keepalive, 0);
    CHECK_EQ(gw_http_response_body(&P, GET), GW_BODY_CLOSE);
    OK_RESP("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n");
    CHECK_EQ(P.keepalive, 1);

    BAD_RESP("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
    BAD_RESP("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
    BAD_RESP("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n");
    BAD_RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
    BAD_RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n");
    BAD_RESP("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    BAD_RESP("HTTP/1.1 2000 OK\r\n\r\n");
    BAD_RESP("HTTP/1.1 20 OK\r\n\r\n");
    BAD_RESP("HTTP/1.1 099 Low\r\n\r\n");
    BAD_RESP("HTTP/2 200 OK\r\n\r\n");
    BAD_RESP("HTTP/2.0 200 OK\r\n\r\n");
    BAD_RESP("HTTP/1.1  200 OK\r\n\r\n");
    BAD_RESP("HTTP/1.1 200 OK\n\r\n");
    BAD_RESP("HTTP/1.1 200 O\x01K\r\n\r\n");
    BAD_RESP("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n");
    BAD_RESP("HTTP/1.1 200 OK\r\nX : a\r\n\r\n");
    BAD_RESP("HTTP/1.1 200 OK\r\nX: a\r\n\n");
    BAD_RESP("ICY 200 OK\r\n\r\n");
    CHECK_EQ(RESP("HTTP/1.1 200 OK\r\nX: a\r\n"), GW_HTTP_AGAIN);

    /* max_head: exactly fits / one byte over / incomplete and over */
    CHECK_EQ(presp_max("HTTP/1.1 200 OK\r\n\r\n", 19, 19, __LINE__), 19);
    CHECK_EQ(presp_max("HTTP/1.1 200 OK\r\n\r\n", 19, 18, __LINE__), GW_HTTP_ERROR);
    CHECK_EQ(presp_max("HTTP/1.1 200 OK\r\nX-Long: aaaaaaaaaaaaaaaaaaaa", 45, 30, __LINE__),
             GW_HTTP_ERROR);
    /* too many headers for the array */
    CHECK_EQ(gw_http_parse_response("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n", 31, &P, H, 1, 0),
             GW_HTTP_ERROR);
    CHECK_EQ(gw_http_parse_response("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n", 31, &P, H, 2, 0), 31);

    /* a response followed by its body: the head length points at the body */
    {
        static const char in[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        int rc = gw_http_parse_response(in, sizeof in - 1, &P, H, NH, 4096);
        CHECK_EQ(rc, (int)sizeof in - 3);
        CHECK(memcmp(in + rc, "hi", 2) == 0);
    }
}

/* ---- chunked ------------------------------------------------------------------------------ */

/* Decodes `in` feeding `feed` bytes at a time (0 = everything at once), keeping unconsumed bytes
 * like a real caller would. Each step sees an exact-size copy of the pending bytes. Returns
 * DONE / ERROR / AGAIN (input ended first); *used = bytes consumed through the end of the body. */
static int dechunk(const char *in, size_t n, size_t feed, char *out, size_t *outn, size_t *used)
{
    gw_chunked c;
    char *pend = malloc(n + 1);
    size_t pn = 0, fed = 0, total = 0;
    int result = GW_CHUNK_AGAIN;

    gw_chunked_init(&c);
    *outn = 0;
    *used = 0;
    for (;;) {
        size_t add = feed ? feed : n, off = 0;
        if (add > n - fed) add = n - fed;
        memcpy(pend + pn, in + fed, add);
        pn += add;
        fed += add;
        for (;;) {
            size_t cons = 99, dlen = 99;
            char *win = dup_exact(pend + off, pn - off);
            int rc = gw_chunked_step(&c, win, pn - off, &cons, &dlen);
            if (rc == GW_CHUNK_DATA) {
                if (dlen == 0 || cons != dlen || dlen > pn - off) { failed++; printf("FAIL bad DATA\n"); }
                memcpy(out + *outn, win, dlen);
                *outn += dlen;
            }
            free(win);
            if (rc == GW_CHUNK_DATA || rc == GW_CHUNK_MORE) {
                if (cons == 0) { failed++; printf("FAIL chunked: no progress\n"); result = GW_CHUNK_ERROR; goto out; }
                off += cons;
                continue;
            }
            if (rc == GW_CHUNK_DONE) {
                size_t c2, d2;
                *used = total + off + cons;
                result = GW_CHUNK_DONE;
                /* DONE is sticky and consumes nothing more */
                if (gw_chunked_step(&c, "x", 1, &c2, &d2) != GW_CHUNK_DONE || c2 != 0) {
                    failed++;
                    printf("FAIL chunked: DONE not sticky\n");
                }
                goto out;
            }
            if (rc == GW_CHUNK_ERROR) {
                size_t c2, d2;
                result = GW_CHUNK_ERROR;
                if (!c.error) { failed++; printf("FAIL chunked: error without reason\n"); }
                if (gw_chunked_step(&c, "0\r\n\r\n", 5, &c2, &d2) != GW_CHUNK_ERROR) {
                    failed++;
                    printf("FAIL chunked: ERROR not sticky\n");
                }
                goto out;
            }
            if (cons != 0) { failed++; printf("FAIL chunked: AGAIN consumed %zu\n", cons); }
            break;
        }
        memmove(pend, pend + off, pn - off);
        pn -= off;
        total += off;
        if (fed == n) break;
    }
out:
    free(pend);
    return result;
}

/* Decodes in one shot, 1 byte, 2 bytes, 3 bytes and 7 bytes at a time; all must agree. */
static int chunk_check(const char *in, size_t n, const char *body, int line)
{
    char *ref = malloc(n + 1), *out = malloc(n + 1);
    size_t refn, refused, outn, used;
    static const size_t feeds[] = { 1, 2, 3, 7 };
    int rc = dechunk(in, n, 0, ref, &refn, &refused);
    for (size_t i = 0; i < sizeof feeds / sizeof feeds[0]; i++) {
        int rc2 = dechunk(in, n, feeds[i], out, &outn, &used);
        if (rc2 != rc || (rc == GW_CHUNK_DONE && (used != refused || outn != refn
                                                  || memcmp(out, ref, outn) != 0))) {
            failed++;
            printf("FAIL %s:%d: chunked feed %zu differs (rc %d/%d)\n", __FILE__, line, feeds[i], rc2, rc);
        } else passed++;
    }
    if (body) {
        if (rc == GW_CHUNK_DONE && refn == strlen(body) && memcmp(ref, body, refn) == 0) passed++;
        else {
            failed++;
            printf("FAIL %s:%d: chunked rc %d body \"%.*s\" want \"%s\"\n", __FILE__, line, rc,
                   (int)refn, ref, body);
        }
    }
    free(ref);
    free(out);
    return rc;
}
#define CHUNK_OK(s, body) chunk_check((s), sizeof(s) - 1, (body), __LINE__)
#define CHUNK_RC(s) chunk_check((s), sizeof(s) - 1, NULL, __LINE__)
#define CHUNK_BAD(s) CHECK_EQ(CHUNK_RC(s), GW_CHUNK_ERROR)

static void test_chunked(void)
{
    CHUNK_OK("5\r\nhello\r\n0\r\n\r\n", "hello");
    CHUNK_OK("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world");
    CHUNK_OK("0\r\n\r\n", "");
    CHUNK_OK("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", "0123456789abcdefghij");
    CHUNK_OK("0005\r\nhello\r\n000\r\n\r\n", "hello");
    CHUNK_OK("5;name=value\r\nhello\r\n0;x\r\n\r\n", "hello");
    CHUNK_OK("5 ; a=\"b c\"\r\nhello\r\n0\r\n\r\n", "hello");
    CHUNK_OK("5\t;a\r\nhello\r\n0\r\n\r\n", "hello");
    CHUNK_OK("5\r\nhello\r\n0\r\nX-Trailer: 1\r\nY: two words\r\n\r\n", "hello");
    CHUNK_OK("3\r\n\r\n\r\r\n0\r\n\r\n", "\r\n\r");

    /* bytes after the terminating CRLF belong to the next message */
    {
        static const char in[] = "3\r\nabc\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1\r\n";
        char out[64];
        size_t outn, used;
        CHECK_EQ(dechunk(in, sizeof in - 1, 0, out, &outn, &used), GW_CHUNK_DONE);
        CHECK_EQ(used, sizeof in - 1 - 16);
        CHECK_EQ(dechunk(in, sizeof in - 1, 1, out, &outn, &used), GW_CHUNK_DONE);
        CHECK_EQ(used, sizeof in - 1 - 16);
        CHECK_EQ(outn, 3);
    }
    /* incomplete input is AGAIN, not an error, at every cut */
    CHECK_EQ(CHUNK_RC("5\r\nhel"), GW_CHUNK_AGAIN);
    CHECK_EQ(CHUNK_RC("5\r\nhello\r\n0\r\n"), GW_CHUNK_AGAIN);
    CHECK_EQ(CHUNK_RC("5\r\nhello\r\n0\r\nX: 1\r\n"), GW_CHUNK_AGAIN);
    CHECK_EQ(CHUNK_RC("5\r\nhello\r"), GW_CHUNK_AGAIN);

    /* step-level contract: a data step returns data at buf start; AGAIN consumes nothing */
    {
        gw_chunked c;
        size_t cons, dl;
        gw_chunked_init(&c);
        CHECK_EQ(gw_chunked_step(&c, "1", 1, &cons, &dl), GW_CHUNK_AGAIN);
        CHECK_EQ(cons, 0);
        CHECK_EQ(gw_chunked_step(&c, "10\r\n", 4, &cons, &dl), GW_CHUNK_MORE);
        CHECK_EQ(cons, 4);
        CHECK_EQ(c.remaining, 16);
        CHECK_EQ(gw_chunked_step(&c, "0123456789", 10, &cons, &dl), GW_CHUNK_DATA);
        CHECK_EQ(dl, 10);
        CHECK_EQ(cons, 10);
        CHECK_EQ(c.remaining, 6);
        CHECK_EQ(gw_chunked_step(&c, "abcdef\r\n0\r\n\r\nrest", 17, &cons, &dl), GW_CHUNK_DATA);
        CHECK_EQ(dl, 6);
        CHECK_EQ(gw_chunked_step(&c, "\r\n0\r\n\r\nrest", 11, &cons, &dl), GW_CHUNK_DONE);
        CHECK_EQ(cons, 7);
        CHECK_EQ(gw_chunked_step(&c, "rest", 4, &cons, &dl), GW_CHUNK_DONE);
        CHECK_EQ(cons, 0);
        /* the largest size accepted */
        gw_chunked_init(&c);
        CHECK_EQ(gw_chunked_step(&c, "7fffffffffffffff\r\nx", 19, &cons, &dl), GW_CHUNK_MORE);
        CHECK(c.remaining == 0x7fffffffffffffffULL);
        CHECK_EQ(gw_chunked_step(&c, "x", 1, &cons, &dl), GW_CHUNK_DATA);
        CHECK_EQ(gw_chunked_step(&c, "", 0, &cons, &dl), GW_CHUNK_AGAIN);
    }

    /* invalid sizes */
    CHUNK_BAD("0x5\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("+5\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("-1\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD(" 5\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5 \r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5 x\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("g\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5g\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("8000000000000000\r\n");
    CHUNK_BAD("10000000000000000\r\n");
    CHUNK_BAD("ffffffffffffffffffff\r\n");
    CHUNK_BAD("5\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5\rhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a\x01\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a\nhello\r\n0\r\n\r\n");
    /* missing / wrong CRLF after data */
    CHUNK_BAD("5\r\nhelloX\r\n0\r\n\r\n");
    CHUNK_BAD("5\r\nhello\n0\r\n\r\n");
    CHUNK_BAD("5\r\nhello\rX0\r\n\r\n");
    CHUNK_BAD("5\r\nhello0\r\n\r\n");
    CHUNK_BAD("5\r\nhello world\r\n0\r\n\r\n");
    /* trailers */
    CHUNK_BAD("0\r\nX: a\r\n b\r\n\r\n");
    CHUNK_BAD("0\r\n X: a\r\n\r\n");
    CHUNK_BAD("0\r\nX : a\r\n\r\n");
    CHUNK_BAD("0\r\nX: a\n\r\n");
    CHUNK_BAD("0\r\nX: a\r\n\n");
    CHUNK_BAD("0\r\n\n");
    CHUNK_BAD("0\r\nbad\r\n\r\n");
    CHUNK_BAD("0\r\nX: a\x00\r\n\r\n");

    /* framing-line limits, enforced before the line ends */
    {
        static char in[6000];
        size_t n;
        int rc;
        /* 1024-byte size line (incl. CRLF) is the maximum */
        memcpy(in, "1;", 2);
        memset(in + 2, 'e', 1020);
        memcpy(in + 1022, "\r\nx\r\n0\r\n\r\n", 10);
        rc = chunk_check(in, 1032, "x", __LINE__);
        CHECK_EQ(rc, GW_CHUNK_DONE);
        memcpy(in, "1;", 2);
        memset(in + 2, 'e', 1021);
        memcpy(in + 1023, "\r\nx\r\n0\r\n\r\n", 10);
        CHECK_EQ(chunk_check(in, 1033, NULL, __LINE__), GW_CHUNK_ERROR);
        /* ...and an endless one fails without the CRLF ever arriving */
        memset(in + 2, 'e', 2000);
        CHECK_EQ(chunk_check(in, 2002, NULL, __LINE__), GW_CHUNK_ERROR);
        /* an endless run of zeros is not a way around it */
        memset(in, '0', 2000);
        CHECK_EQ(chunk_check(in, 2000, NULL, __LINE__), GW_CHUNK_ERROR);

        /* trailer section: 4096 bytes including the final CRLF is the maximum */
        memcpy(in, "0\r\n", 3);
        n = 3;
        for (int i = 0; i < 4; i++) {                 /* 4 lines of 1000 bytes */
            memcpy(in + n, "X-T: ", 5);
            memset(in + n + 5, 'v', 993);
            memcpy(in + n + 998, "\r\n", 2);
            n += 1000;
        }
        memcpy(in + n, "X: ", 3);                     /* + 94 = 4094 */
        memset(in + n + 3, 'w', 89);
        memcpy(in + n + 92, "\r\n\r\n", 4);
        CHECK_EQ(chunk_check(in, n + 96, "", __LINE__), GW_CHUNK_DONE);
        memcpy(in + n, "X: ", 3);                     /* + 95 = 4095: the final CRLF won't fit */
        memset(in + n + 3, 'w', 90);
        memcpy(in + n + 93, "\r\n\r\n", 4);
        CHECK_EQ(chunk_check(in, n + 97, NULL, __LINE__), GW_CHUNK_ERROR);
        /* endless trailer line */
        memset(in + n, 'w', 1500);
        CHECK_EQ(chunk_check(in, n + 1500, NULL, __LINE__), GW_CHUNK_ERROR);
    }

    /* a larger body through every feed size, with varied chunk sizes */
    {
        static char in[20000], body[10000];
        size_t n = 0, bn = 0;
        for (int i = 1; i < 120; i += 7) {
            n += (size_t)snprintf(in + n, sizeof in - n, "%x%s\r\n", i, i % 3 ? "" : ";ext=1");
            for (int j = 0; j < i; j++) {
                in[n++] = (char)('a' + (i + j) % 26);
                body[bn++] = (char)('a' + (i + j) % 26);
            }
            memcpy(in + n, "\r\n", 2);
            n += 2;
        }
        memcpy(in + n, "0\r\n\r\n", 5);
        n += 5;
        body[bn] = 0;
        CHECK_EQ(chunk_check(in, n, body, __LINE__), GW_CHUNK_DONE);
    }
}

/* The word-at-a-time scans (8 bytes per step in values and targets, 4 in names and methods) and
 * the 8/4-byte name compares: a byte that ends or breaks a field at every position mod 8, bytes
 * >= 0x80, HTAB, NUL and DEL inside words, and names in every case. */
static void test_word_boundaries(void)
{
    static const unsigned char bad[] = { 0x00, 0x01, 0x0a, 0x0d, 0x1f, 0x7f };
    char buf[256];
    for (int k = 0; k < 20; k++) {
        char val[32];
        int n;
        memset(val, 'a', (size_t)k);
        val[k] = '\0';
        /* clean value of every length: accepted, value exact */
        n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX-V: %sz\r\n\r\n", val);
        CHECK_EQ(preq(buf, (size_t)n, NULL, __LINE__), n);
        CHECK_EQ(R.headers[1].value.n, k + 1);
        /* obs-text and HTAB at offset k: accepted, kept in the value */
        for (int t = 0; t < 2; t++) {
            n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX-V: z%s%cz\r\n\r\n", val,
                         t ? '\t' : (char)0xe9);
            CHECK_EQ(preq(buf, (size_t)n, NULL, __LINE__), n);
            CHECK_EQ(R.headers[1].value.n, k + 3);
        }
        /* control bytes, bare CR/LF and DEL at offset k of a value: 400 */
        for (size_t b = 0; b < sizeof bad; b++) {
            n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX-V: z%sZz\r\n\r\n", val);
            buf[26 + 1 + k] = (char)bad[b];
            CHECK_EQ(preq(buf, (size_t)n, NULL, __LINE__), GW_HTTP_ERROR);
            CHECK_EQ(R.status, 400);
        }
        /* the same in a request target: 400 */
        for (size_t b = 0; b < sizeof bad; b++) {
            n = snprintf(buf, sizeof buf, "GET /%sZz HTTP/1.1\r\nHost: h\r\n\r\n", val);
            buf[5 + k] = (char)bad[b];
            CHECK_EQ(preq(buf, (size_t)n, NULL, __LINE__), GW_HTTP_ERROR);
            CHECK_EQ(R.status, 400);
        }
        /* a non-tchar at offset k of a header name and of a method: 400 */
        n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX%sZz: 1\r\n\r\n", val);
        buf[26 + 1 + k] = '"';
        CHECK_EQ(preq(buf, (size_t)n, NULL, __LINE__), GW_HTTP_ERROR);
        CHECK_EQ(R.status, 400);
        n = snprintf(buf, sizeof buf, "G%sZT / HTTP/1.1\r\nHost: h\r\n\r\n", val);
        buf[1 + k] = (char)0xe9;
        CHECK_EQ(preq(buf, (size_t)n, NULL, __LINE__), GW_HTTP_ERROR);
        CHECK_EQ(R.status, 400);
    }
    /* framing names in any case; near misses are other headers */
    CHECK(REQ(GET11("CONTENT-LENGTH: 5\r\n")) > 0);
    CHECK_EQ(R.content_length, 5);
    CHECK(REQ(GET11("cOnTeNt-LeNgTh: 7\r\n")) > 0);
    CHECK_EQ(R.content_length, 7);
    CHECK(REQ(GET11("Content-Lengti: 5\r\n")) > 0);
    CHECK_EQ(R.content_length, -1);
    CHECK(REQ(GET11("Content~Length: 5\r\n")) > 0);
    CHECK_EQ(R.content_length, -1);
    CHECK(REQ(GET11("TRANSFER-ENCODING: CHUNKED\r\n")) > 0);
    CHECK_EQ(R.chunked, 1);
    CHECK(REQ(GET11("Transfer-Encoding: chunkeD\r\n")) > 0);
    CHECK_EQ(R.chunked, 1);
    BAD_REQ(GET11("Transfer-Encoding: chunke\r\n"), 501);
    CHECK(REQ(GET11("EXPECT: 100-CONTINUE\r\n")) > 0);
    CHECK_EQ(R.expect_continue, 1);
    CHECK(REQ(GET11("Expect: 100-continuE\r\n")) > 0);
    CHECK_EQ(R.expect_continue, 1);
    CHECK(REQ(GET11("Expect: 100-continue \t\r\n")) > 0);
    CHECK_EQ(R.expect_continue, 1);
    CHECK(REQ(GET11("Expect: 100-continu\r\n")) > 0);
    CHECK_EQ(R.expect_continue, 0);
    CHECK(REQ(GET11("Connection: CLOSE\r\n")) > 0);
    CHECK_EQ(R.keepalive, 0);
    CHECK(REQ(GET11("Connection: clos\r\n")) > 0);
    CHECK_EQ(R.keepalive, 1);
    CHECK(REQ("GET / HTTP/1.0\r\nCONNECTION: Keep-Alive\r\n\r\n") > 0);
    CHECK_EQ(R.keepalive, 1);
    CHECK(REQ(GET11("Connection: UpGrade\r\nUPGRADE: x\r\n")) > 0);
    CHECK_EQ(R.upgrade, 1);
    BAD_REQ("GET / HTTP/1.1\r\nhOST: a\r\nHost: b\r\n\r\n", 400);
    /* the version is checked as one word too: every byte of it matters */
    BAD_REQ("GET / HTTP/1.x\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET / HTTP/x.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET / HTTP-1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET / http/1.1\r\nHost: h\r\n\r\n", 400);
    BAD_REQ("GET / HTTP/1:1\r\nHost: h\r\n\r\n", 400);
}

int main(void)
{
    test_basic();
    test_http10_keepalive();
    test_content_length();
    test_transfer_encoding();
    test_header_syntax();
    test_request_line();
    test_targets();
    test_host();
    test_underscores();
    test_limits();
    test_pipelining();
    test_incremental_explicit();
    test_helpers();
    test_word_boundaries();
    test_responses();
    test_chunked();
    free(Rbuf);
    free(Pbuf);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
