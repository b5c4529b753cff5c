/* http_parser.c — HTTP/1.1 message framing (RFC 9112): request/response heads, the chunked body
 * decoder and a few header helpers. Strict on purpose: a gateway that is lenient where the upstream
 * is strict (or the other way round) is how request smuggling happens, so anything ambiguous about
 * where a message ends is an error here. No allocation, no copying; see http_parser.h. */
#include "http_parser.h"

#include <limits.h>
#include <string.h>

/* Character classes, one table lookup per byte. */
enum {
    C_TOKEN  = 1,   /* tchar (RFC 9110 5.6.2) */
    C_VALUE  = 2,   /* field-vchar / obs-text / SP / HTAB: allowed inside a field value */
    C_TARGET = 4,   /* VCHAR / obs-text: allowed in a request-target */
    C_HOST   = 8,   /* unreserved / sub-delims / ":" "[" "]" "%": allowed in Host */
    C_WS     = 16,  /* SP / HTAB */
    C_HEX    = 32
};
static const unsigned char cls[256] = {
     0,  0,  0,  0,  0,  0,  0,  0,  0, 18,  0,  0,  0,  0,  0,  0,  /* 00 */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 10 */
    18, 15,  6,  7, 15, 15, 15, 15, 14, 14, 15, 15, 14, 15, 15,  6,  /* 20 */
    47, 47, 47, 47, 47, 47, 47, 47, 47, 47, 14, 14,  6, 14,  6,  6,  /* 30 */
     6, 47, 47, 47, 47, 47, 47, 15, 15, 15, 15, 15, 15, 15, 15, 15,  /* 40 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14,  6, 14,  7, 15,  /* 50 */
     7, 47, 47, 47, 47, 47, 47, 15, 15, 15, 15, 15, 15, 15, 15, 15,  /* 60 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,  6,  7,  6, 15,  0,  /* 70 */
     6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 80 */
     6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 90 */
     6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* a0 */
     6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* b0 */
     6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* c0 */
     6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* d0 */
     6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* e0 */
     6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* f0 */
};
#define IS(c, f) (cls[(unsigned char)(c)] & (f))

static const char empty_str[] = "";
static const char slash_str[] = "/";
#define EMPTY ((gw_str){ empty_str, 0 })

static inline unsigned char lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? c | 0x20 : c; }

static inline int hexval(unsigned char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

/* Results of the line parsers below. */
enum { L_END = 0, L_FIELD = 1, L_AGAIN = -1, L_BAD = -2, L_FULL = -3 };

/* Word-at-a-time skip: 8 bytes are passed over when none of them is < lo or DEL; bytes that need a
 * closer look (HTAB in values, anything odd) fall through to the per-byte table loop. On a
 * little-endian machine the skip also goes up to the first such byte inside the last word: the
 * lowest flagged byte of the mask is exact (a borrow can only flag bytes above a true one), and
 * every byte before it is >= lo and != DEL, i.e. one the table loop would pass as well. */
#define ONES 0x0101010101010101ULL
#define HIGH 0x8080808080808080ULL
static inline size_t skip_words(const char *b, size_t i, size_t w, uint64_t lo)
{
    while (i + 8 <= w) {
        uint64_t x, y;
        memcpy(&x, b + i, 8);
        y = x ^ (0x7fULL * ONES);
        uint64_t m = ((x - lo * ONES) & ~x & HIGH) | ((y - ONES) & ~y & HIGH);
        if (m) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            i += (size_t)__builtin_ctzll(m) >> 3;
#endif
            break;
        }
        i += 8;
    }
    return i;
}

/* End of a field value starting at i (first byte not allowed in a value), or w. */
static inline size_t scan_value(const char *b, size_t i, size_t w)
{
    i = skip_words(b, i, w, 0x20);
    while (i < w && IS(b[i], C_VALUE)) i++;
    return i;
}

static inline size_t scan_target(const char *b, size_t i, size_t w)
{
    i = skip_words(b, i, w, 0x21);
    while (i < w && IS(b[i], C_TARGET)) i++;
    return i;
}

/* One field line at b[*pos..w). L_FIELD: *h filled (when h), *pos past the CRLF. L_END: the blank
 * line ending the section, *pos past it. L_FULL: a field line starts but room == 0. L_AGAIN: the
 * line does not end before w. L_BAD: *err set. Only bytes before w are ever looked at, and they are
 * judged left to right, so feeding a head in pieces gives the same verdict as feeding it whole. */
/* First byte at or after i not in class f, or w. Unrolled four bytes per step while four
 * remain, so the bound is checked once per four bytes. */
static inline size_t scan_class(const char *b, size_t i, size_t w, unsigned f)
{
    const unsigned char *u = (const unsigned char *)b;
    for (; i + 4 <= w; i += 4) {
        if (!(cls[u[i]] & f)) return i;
        if (!(cls[u[i + 1]] & f)) return i + 1;
        if (!(cls[u[i + 2]] & f)) return i + 2;
        if (!(cls[u[i + 3]] & f)) return i + 3;
    }
    while (i < w && (cls[u[i]] & f)) i++;
    return i;
}
#define scan_token(b, i, w) scan_class((b), (i), (w), C_TOKEN)

static int field_line(const char *b, size_t w, size_t *pos, gw_header *h, int room, const char **err)
{
    size_t p = *pos, q, v, e;

    if (p >= w) return L_AGAIN;
    if (b[p] == '\r') {
        if (p + 1 >= w) return L_AGAIN;
        if (b[p + 1] != '\n') { *err = "bare CR in header section"; return L_BAD; }
        *pos = p + 2;
        return L_END;
    }
    if (b[p] == '\n') { *err = "bare LF as line terminator"; return L_BAD; }
    if (IS(b[p], C_WS)) { *err = "obsolete line folding"; return L_BAD; }
    if (!room) return L_FULL;

    q = scan_token(b, p, w);
    if (q == w) return L_AGAIN;
    if (b[q] != ':') {
        if (IS(b[q], C_WS)) *err = "whitespace before colon in header";
        else if (b[q] == '\r' || b[q] == '\n') *err = "header line without colon";
        else *err = "invalid character in header name";
        return L_BAD;
    }
    if (q == p) { *err = "empty header name"; return L_BAD; }

    v = q + 1;
    if (v < w && b[v] == ' ') v++;      /* the usual single SP, then any further OWS */
    while (v < w && IS(b[v], C_WS)) v++;
    e = scan_value(b, v, w);
    if (e == w) return L_AGAIN;
    if (b[e] != '\r') {
        *err = b[e] == '\n' ? "bare LF as line terminator" : "invalid character in header value";
        return L_BAD;
    }
    if (e + 1 >= w) return L_AGAIN;
    if (b[e + 1] != '\n') { *err = "bare CR in header value"; return L_BAD; }
    *pos = e + 2;
    while (e > v && IS(b[e - 1], C_WS)) e--;
    if (h) {
        h->name = (gw_str){ b + p, q - p };
        h->value = (gw_str){ b + v, e - v };
    }
    return L_FIELD;
}

/* "HTTP/d.d" then CRLF at b[k..w). L_FIELD with *version (major*10+minor, may be unsupported) and
 * *end past the CRLF; L_AGAIN; L_BAD. `tail_ok` allows a status line to continue after the
 * version (response side); then *end is just past the version. */
static int http_version(const char *b, size_t k, size_t w, int *version, size_t *end, int tail_ok)
{
    static const char pat[] = "HTTP/0.0";
    if (k + 8 <= w) {
        /* all 8 bytes present: one compare of the fixed part, then the two digits */
        uint64_t x, fixed, want;
        memcpy(&x, b + k, 8);
        memcpy(&want, pat, 8);
        memcpy(&fixed, "\xff\xff\xff\xff\xff\0\xff\0", 8);
        if ((x & fixed) != (want & fixed) || (unsigned char)(b[k + 5] - '0') > 9
            || (unsigned char)(b[k + 7] - '0') > 9)
            return L_BAD;
    } else for (size_t n = 0; n < 8; n++) {
        unsigned char c;
        if (k + n >= w) return L_AGAIN;
        c = (unsigned char)b[k + n];
        if (n == 5 || n == 7) { if (c < '0' || c > '9') return L_BAD; }
        else if (c != (unsigned char)pat[n]) return L_BAD;
    }
    *version = (b[k + 5] - '0') * 10 + (b[k + 7] - '0');
    if (tail_ok) { *end = k + 8; return L_FIELD; }
    if (k + 8 >= w) return L_AGAIN;
    if (b[k + 8] != '\r') return L_BAD;
    if (k + 9 >= w) return L_AGAIN;
    if (b[k + 9] != '\n') return L_BAD;
    *end = k + 10;
    return L_FIELD;
}

static int req_fail(gw_http_request *r, int status, const char *why)
{
    r->status = status;
    r->error = why;
    return GW_HTTP_ERROR;
}

static int line_fail(gw_http_request *r, int status, const char *why)
{
    req_fail(r, status, why);
    return L_BAD;
}

/* method SP request-target SP HTTP-version CRLF, at b[start..w). */
static int request_line(const char *b, size_t start, size_t w, gw_http_request *r, size_t *end)
{
    size_t i, t, j;
    int rc;

    i = scan_token(b, start, w);
    if (i == w) return L_AGAIN;
    if (b[i] != ' ' || i == start) return line_fail(r, 400, "invalid method");
    r->method = (gw_str){ b + start, i - start };

    t = i + 1;
    j = scan_target(b, t, w);
    if (j == w) return L_AGAIN;
    if (b[j] != ' ' || j == t) {
        if ((b[j] == '\r' || b[j] == '\n') && j > t)
            return line_fail(r, 400, "missing HTTP version");
        return line_fail(r, 400, "invalid request target");
    }
    r->target = (gw_str){ b + t, j - t };

    rc = http_version(b, j + 1, w, &r->version, end, 0);
    if (rc == L_BAD) return line_fail(r, 400, "malformed HTTP version");
    if (rc == L_FIELD && r->version != 10 && r->version != 11)
        return line_fail(r, 505, "HTTP version not supported");
    return rc;
}

/* Splits the target into path/query (and host for absolute-form). 0 ok, or GW_HTTP_ERROR. */
static int request_target(gw_http_request *r)
{
    const char *p = r->target.p;
    size_t n = r->target.n, i;
    const char *q;

    if (p[0] == '/') {
        q = memchr(p, '?', n);
        r->path = (gw_str){ p, q ? (size_t)(q - p) : n };
        if (q) r->query = (gw_str){ q + 1, n - (size_t)(q - p) - 1 };
        return 0;
    }
    if (n == 1 && p[0] == '*') {
        if (!(r->method.n == 7 && memcmp(r->method.p, "OPTIONS", 7) == 0))
            return req_fail(r, 400, "asterisk-form target only with OPTIONS");
        r->path = r->target;
        return 0;
    }
    if (n > 7 && gw_str_ieq((gw_str){ p, 7 }, "http://")) i = 7;
    else if (n > 8 && gw_str_ieq((gw_str){ p, 8 }, "https://")) i = 8;
    else return req_fail(r, 400, "invalid request target");

    /* absolute-form: the authority ends at '/', '?' or the end; userinfo ('@') is not a host
     * character and so rejected, which keeps "http://evil@good/" from confusing anyone. */
    size_t a = i;
    while (i < n && p[i] != '/' && p[i] != '?') {
        if (!IS(p[i], C_HOST)) return req_fail(r, 400, "invalid authority in request target");
        i++;
    }
    if (i == a) return req_fail(r, 400, "empty authority in request target");
    r->host = (gw_str){ p + a, i - a };
    r->absolute_form = 1;
    if (i == n || p[i] == '?') {
        r->path = (gw_str){ slash_str, 1 };
        if (i < n) r->query = (gw_str){ p + i + 1, n - i - 1 };
        return 0;
    }
    q = memchr(p + i, '?', n - i);
    r->path = (gw_str){ p + i, q ? (size_t)(q - (p + i)) : n - i };
    if (q) r->query = (gw_str){ q + 1, n - (size_t)(q - p) - 1 };
    return 0;
}

/* s equals lit (lower case letters, digits and '-' only, length n) ignoring ASCII case, for s
 * that holds no control characters (a header name, or an element of a header value; both are
 * validated before they get here). Then c | 0x20 is a literal byte only when c is that byte or,
 * for a letter, its upper case: the other byte with the same value after | 0x20 is a control
 * character (0x0d for '-', 0x10..0x19 for digits). Compares 8 (or 4) bytes at a time with
 * overlapping loads, never reading outside s or lit. */
static inline uint64_t ld8(const char *p) { uint64_t x; memcpy(&x, p, 8); return x; }
static inline uint32_t ld4(const char *p) { uint32_t x; memcpy(&x, p, 4); return x; }
static inline int ieq_lit(gw_str s, const char *lit, size_t n)
{
    if (s.n != n) return 0;
    if (n >= 8) {
        size_t i;
        for (i = 0; i + 8 <= n; i += 8)
            if ((ld8(s.p + i) | 0x2020202020202020ULL) != ld8(lit + i)) return 0;
        return i == n || (ld8(s.p + n - 8) | 0x2020202020202020ULL) == ld8(lit + n - 8);
    }
    if (n >= 4)
        return (ld4(s.p) | 0x20202020U) == ld4(lit)
            && (ld4(s.p + n - 4) | 0x20202020U) == ld4(lit + n - 4);
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s.p[i] | 0x20) != (unsigned char)lit[i]) return 0;
    return 1;
}
#define IEQ(s, lit) ieq_lit((s), lit, sizeof lit - 1)

/* Next element of a comma-separated list value, OWS-trimmed, ";params" cut. Empty elements are
 * skipped (RFC 9110 5.6.1). 1 with *el, or 0 at the end. */
int gw_http_list_next(gw_str v, size_t *pos, gw_str *el)
{
    size_t i = *pos, s, e;
    const char *c;

    while (i < v.n && (IS(v.p[i], C_WS) || v.p[i] == ',')) i++;
    if (i >= v.n) { *pos = i; return 0; }
    s = i;
    c = memchr(v.p + s, ',', v.n - s);
    e = c ? (size_t)(c - v.p) : v.n;
    *pos = e;
    c = memchr(v.p + s, ';', e - s);
    if (c) e = (size_t)(c - v.p);
    while (e > s && IS(v.p[e - 1], C_WS)) e--;
    *el = (gw_str){ v.p + s, e - s };
    return 1;
}

static int is_token(gw_str s)
{
    if (s.n == 0) return 0;
    for (size_t i = 0; i < s.n; i++)
        if (!IS(s.p[i], C_TOKEN)) return 0;
    return 1;
}

/* What the framing-relevant headers say, gathered in one pass over the parsed headers. */
typedef struct {
    int64_t cl;                 /* -1 none */
    const char *err;            /* first Content-Length / Host problem */
    int nhost, bad_host, has_te, te_codings, te_chunked, te_last_chunked, te_unknown, te_bad;
    int conn_close, conn_keepalive, conn_upgrade, has_upgrade, expect_continue;
    int host_index;             /* the (first) Host field line, or -1 */
    gw_str host;
} msg_info;

/* Folds one Content-Length value (a single number or a list of equal numbers) into *cl. */
static int content_length(gw_str v, int64_t *cl)
{
    size_t i = 0;
    for (;;) {
        uint64_t x = 0;
        size_t d;
        while (i < v.n && IS(v.p[i], C_WS)) i++;
        for (d = i; i < v.n && v.p[i] >= '0' && v.p[i] <= '9'; i++) {
            unsigned dig = (unsigned)(v.p[i] - '0');
            if (x > ((uint64_t)INT64_MAX - dig) / 10) return -1;
            x = x * 10 + dig;
        }
        if (i == d) return -1;
        if (*cl >= 0 && (uint64_t)*cl != x) return -2;
        *cl = (int64_t)x;
        while (i < v.n && IS(v.p[i], C_WS)) i++;
        if (i == v.n) return 0;
        if (v.p[i] != ',') return -1;
        i++;
    }
}

static void transfer_encoding(gw_str v, msg_info *m)
{
    size_t pos = 0;
    gw_str el;
    m->has_te = 1;
    /* no coding gw accepts has parameters: "chunked;x=1" is not something to guess about */
    if (memchr(v.p, ';', v.n)) m->te_bad = 1;
    while (gw_http_list_next(v, &pos, &el)) {
        if (!is_token(el)) { m->te_bad = 1; continue; }
        m->te_codings++;
        if (IEQ(el, "chunked")) {
            m->te_chunked++;
            m->te_last_chunked = 1;
            continue;
        }
        m->te_last_chunked = 0;
        if (!IEQ(el, "gzip") && !IEQ(el, "deflate") && !IEQ(el, "compress")
            && !IEQ(el, "x-gzip") && !IEQ(el, "x-compress"))
            m->te_unknown = 1;
    }
}

static void connection(gw_str v, msg_info *m)
{
    size_t pos = 0;
    gw_str el;
    while (gw_http_list_next(v, &pos, &el)) {
        if (IEQ(el, "close")) m->conn_close = 1;
        else if (IEQ(el, "keep-alive")) m->conn_keepalive = 1;
        else if (IEQ(el, "upgrade")) m->conn_upgrade = 1;
    }
}

/* Dispatches on name length first: most headers are rejected by one integer compare. */
static void scan_headers(const gw_header *h, int n, msg_info *m)
{
    memset(m, 0, sizeof *m);
    m->cl = -1;
    m->host_index = -1;
    m->host = EMPTY;
    for (int i = 0; i < n; i++) {
        gw_str k = h[i].name, v = h[i].value;
        switch (k.n) {
        case 4:
            if (IEQ(k, "host")) {
                if (m->nhost++ == 0) { m->host = v; m->host_index = i; }
                if (scan_class(v.p, 0, v.n, C_HOST) != v.n) m->bad_host = 1;
            }
            break;
        case 6:
            if (IEQ(k, "expect") && IEQ(v, "100-continue")) m->expect_continue = 1;
            break;
        case 7:
            if (IEQ(k, "upgrade") && v.n) m->has_upgrade = 1;
            break;
        case 10:
            if (IEQ(k, "connection")) connection(v, m);
            break;
        case 14:
            if (IEQ(k, "content-length") && !m->err) {
                int rc = content_length(v, &m->cl);
                if (rc == -1) m->err = "invalid Content-Length";
                else if (rc == -2) m->err = "conflicting Content-Length values";
            }
            break;
        case 17:
            if (IEQ(k, "transfer-encoding")) transfer_encoding(v, m);
            break;
        }
    }
}

static size_t lim_or(size_t v, size_t dflt) { return v ? v : dflt; }

int gw_http_parse_request(const char *buf, size_t len, gw_http_request *r,
                          gw_header *hdrs, int max_hdrs, const gw_http_limits *lim)
{
    size_t max_rl = lim ? lim_or(lim->max_request_line, GW_HTTP_DEFAULT_MAX_REQUEST_LINE)
                        : GW_HTTP_DEFAULT_MAX_REQUEST_LINE;
    size_t max_hs = lim ? lim_or(lim->max_header_size, GW_HTTP_DEFAULT_MAX_HEADER_SIZE)
                        : GW_HTTP_DEFAULT_MAX_HEADER_SIZE;
    int maxh = lim && lim->max_headers > 0 ? lim->max_headers : GW_HTTP_DEFAULT_MAX_HEADERS;
    size_t hw, rw, start = 0, pos;
    msg_info m;
    int rc, n = 0;

    memset(r, 0, sizeof *r);
    r->headers = hdrs;
    r->content_length = -1;
    r->method = r->target = r->path = r->query = r->host = EMPTY;

    /* The head length is returned as an int; a request line longer than the whole head could
     * never be accepted anyway. */
    if (max_hs > (size_t)INT_MAX - 1) max_hs = (size_t)INT_MAX - 1;
    if (max_rl > max_hs) max_rl = max_hs;
    if (!hdrs || max_hdrs < 0) max_hdrs = 0;
    if (maxh > max_hdrs) maxh = max_hdrs;
    if (maxh < 0) maxh = 0;

    /* All scanning stays inside hw (the head cannot be longer than max_hs), so "incomplete" with
     * len >= max_hs means "too large". */
    hw = len < max_hs ? len : max_hs;

    /* RFC 9112 2.2: ignore empty lines before the request line (clients send a stray CRLF after a
     * body); they count towards the head, so they cannot be used to stall us. */
    while (start < hw && buf[start] == '\r') {
        if (start + 1 >= hw) goto again;
        if (buf[start + 1] != '\n') return req_fail(r, 400, "bare CR before request line");
        start += 2;
    }
    /* The request line is judged on its first max_rl bytes; if it has not ended there, the next
     * byte must be its CR or it is too long (414) — known before any CRLF arrives. Each verdict
     * depends only on bytes up to a fixed offset, so it is the same however the bytes arrive. */
    rw = hw - start > max_rl ? start + max_rl : hw;
    rc = request_line(buf, start, rw, r, &pos);
    if (rc == L_AGAIN && rw == start + max_rl && hw > rw) {
        /* (an AGAIN with a CR last means it is the line's CR, waiting for its LF) */
        if (buf[rw] != '\r' && buf[rw - 1] != '\r') return req_fail(r, 414, "request line too long");
        rc = request_line(buf, start, hw - rw > 1 ? rw + 2 : hw, r, &pos);
    }
    if (rc == L_BAD) return GW_HTTP_ERROR;
    if (rc == L_AGAIN) goto again;

    for (;;) {
        const char *err = NULL;
        rc = field_line(buf, hw, &pos, n < maxh ? &hdrs[n] : NULL, n < maxh, &err);
        if (rc == L_FIELD) { n++; continue; }
        r->nheaders = n;
        if (rc == L_END) break;
        if (rc == L_AGAIN) goto again;
        if (rc == L_FULL) return req_fail(r, 431, "too many header fields");
        return req_fail(r, 400, err);
    }

    if (request_target(r) < 0) return GW_HTTP_ERROR;

    scan_headers(hdrs, n, &m);
    if (m.err) return req_fail(r, 400, m.err);
    if (m.nhost > 1) return req_fail(r, 400, "multiple Host headers");
    if (m.nhost == 0 && r->version == 11) return req_fail(r, 400, "missing Host header");
    if (m.bad_host) return req_fail(r, 400, "invalid Host header");
    if (m.has_te) {
        /* RFC 9112 6.1/6.3: the body length must be unambiguous or the request is refused. */
        if (r->version == 10) return req_fail(r, 400, "Transfer-Encoding in HTTP/1.0 request");
        if (m.cl >= 0) return req_fail(r, 400, "both Content-Length and Transfer-Encoding");
        if (m.te_unknown) return req_fail(r, 501, "unsupported transfer coding");
        if (m.te_bad || m.te_codings == 0) return req_fail(r, 400, "invalid Transfer-Encoding");
        if (m.te_chunked != 1 || !m.te_last_chunked)
            return req_fail(r, 400, "chunked is not the final transfer coding");
        r->chunked = 1;
    } else {
        r->content_length = m.cl;
    }
    if (!r->absolute_form) r->host = m.host;
    else if (m.host_index >= 0) hdrs[m.host_index].value = r->host;
    r->keepalive = r->version == 11 ? !m.conn_close : (m.conn_keepalive && !m.conn_close);
    r->expect_continue = r->version == 11 && m.expect_continue;
    r->upgrade = m.conn_upgrade && m.has_upgrade;
    return (int)pos;

again:
    if (len >= max_hs) return req_fail(r, 431, "request header section too large");
    return GW_HTTP_AGAIN;
}

int gw_http_drop_underscores(gw_http_request *r)
{
    int k = 0, n = r->nheaders;
    for (int i = 0; i < n; i++)
        if (!memchr(r->headers[i].name.p, '_', r->headers[i].name.n)) r->headers[k++] = r->headers[i];
    r->nheaders = k;
    return n - k;
}

static int resp_fail(gw_http_response *r, const char *why)
{
    r->error = why;
    return GW_HTTP_ERROR;
}

int gw_http_parse_response(const char *buf, size_t len, gw_http_response *r,
                           gw_header *hdrs, int max_hdrs, size_t max_head)
{
    size_t w, pos, i;
    msg_info m;
    int rc, n = 0;

    memset(r, 0, sizeof *r);
    r->headers = hdrs;
    r->content_length = -1;
    r->reason = EMPTY;
    if (max_head == 0 || max_head > (size_t)INT_MAX - 1) max_head = (size_t)INT_MAX - 1;
    if (!hdrs || max_hdrs < 0) max_hdrs = 0;
    w = len < max_head ? len : max_head;

    /* HTTP-version SP 3DIGIT SP reason-phrase CRLF; "HTTP/1.1 200\r\n" (no SP, no reason) is
     * common enough from real servers to accept. */
    rc = http_version(buf, 0, w, &r->version, &pos, 1);
    if (rc == L_AGAIN) goto again;
    if (rc == L_BAD) return resp_fail(r, "malformed status line");
    if (r->version != 10 && r->version != 11) return resp_fail(r, "unsupported HTTP version");
    for (i = 0; i < 4; i++) {
        if (pos + i >= w) goto again;
        unsigned char c = (unsigned char)buf[pos + i];
        if (i == 0 ? c != ' ' : (c < '0' || c > '9')) return resp_fail(r, "malformed status line");
        if (i) r->status = r->status * 10 + (c - '0');
    }
    if (r->status < 100 || r->status > 599) return resp_fail(r, "invalid status code");
    pos += 4;
    if (pos >= w) goto again;
    if (buf[pos] == ' ') {
        size_t e = scan_value(buf, pos + 1, w);
        if (e == w) goto again;
        r->reason = (gw_str){ buf + pos + 1, e - pos - 1 };
        pos = e;
    }
    if (buf[pos] != '\r') return resp_fail(r, "malformed status line");
    if (pos + 1 >= w) goto again;
    if (buf[pos + 1] != '\n') return resp_fail(r, "malformed status line");
    pos += 2;

    for (;;) {
        const char *err = NULL;
        rc = field_line(buf, w, &pos, n < max_hdrs ? &hdrs[n] : NULL, n < max_hdrs, &err);
        if (rc == L_FIELD) { n++; continue; }
        r->nheaders = n;
        if (rc == L_END) break;
        if (rc == L_AGAIN) goto again;
        if (rc == L_FULL) return resp_fail(r, "too many header fields in response");
        return resp_fail(r, err);
    }

    scan_headers(hdrs, n, &m);
    if (m.err) return resp_fail(r, m.err);
    if (m.has_te) {
        if (r->version == 10) return resp_fail(r, "Transfer-Encoding in HTTP/1.0 response");
        if (m.cl >= 0) return resp_fail(r, "both Content-Length and Transfer-Encoding");
        if (m.te_bad || m.te_codings != 1 || m.te_chunked != 1)
            return resp_fail(r, "unsupported Transfer-Encoding in response");
        r->chunked = 1;
    } else {
        r->content_length = m.cl;
    }
    r->keepalive = r->version == 11 ? !m.conn_close : (m.conn_keepalive && !m.conn_close);
    r->upgrade = m.conn_upgrade && m.has_upgrade;
    return (int)pos;

again:
    if (len >= max_head) return resp_fail(r, "response head too large");
    return GW_HTTP_AGAIN;
}

int gw_http_response_body(const gw_http_response *r, gw_str method)
{
    if (method.n == 4 && memcmp(method.p, "HEAD", 4) == 0) return GW_BODY_NONE;
    if (r->status < 200 || r->status == 204 || r->status == 304) return GW_BODY_NONE;
    if (r->status < 300 && method.n == 7 && memcmp(method.p, "CONNECT", 7) == 0)
        return GW_BODY_NONE;
    if (r->chunked) return GW_BODY_CHUNKED;
    if (r->content_length > 0) return GW_BODY_LENGTH;
    if (r->content_length == 0) return GW_BODY_NONE;
    return GW_BODY_CLOSE;
}

/* ---- chunked ---------------------------------------------------------------------------- */

enum { S_SIZE = 0, S_DATA, S_DATA_CRLF, S_TRAILER, S_DONE, S_ERROR };

/* chunk-size [ chunk-ext ] CRLF at b[0..w). L_FIELD with *used and *size. */
static int size_line(const char *b, size_t w, size_t *used, uint64_t *size, const char **err)
{
    size_t i = 0, j;
    uint64_t x = 0;

    for (; i < w && IS(b[i], C_HEX); i++) {
        if (x > (uint64_t)INT64_MAX >> 4) { *err = "chunk size too large"; return L_BAD; }
        x = (x << 4) | (uint64_t)hexval((unsigned char)b[i]);
    }
    if (i == w) return L_AGAIN;
    if (i == 0) { *err = "invalid chunk size"; return L_BAD; }
    /* chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ): whitespace after the size
     * only before a ';'; the extension itself only has to be free of control characters. */
    for (j = i; j < w && IS(b[j], C_WS); j++) ;
    if (j == w) return L_AGAIN;
    if (b[j] == ';') {
        j = scan_value(b, j + 1, w);
        if (j == w) return L_AGAIN;
    } else if (j != i) {
        *err = "invalid chunk size";
        return L_BAD;
    }
    if (b[j] != '\r') {
        *err = b[j] == '\n' ? "bare LF in chunk framing" : "invalid chunk size line";
        return L_BAD;
    }
    if (j + 1 >= w) return L_AGAIN;
    if (b[j + 1] != '\n') { *err = "bare CR in chunk framing"; return L_BAD; }
    *used = j + 2;
    *size = x;
    return L_FIELD;
}

void gw_chunked_init(gw_chunked *c)
{
    memset(c, 0, sizeof *c);
    c->state = S_SIZE;
}

int gw_chunked_step(gw_chunked *c, const char *buf, size_t len, size_t *consumed, size_t *data_len)
{
    size_t pos = 0;
    const char *err = NULL;

    *consumed = 0;
    *data_len = 0;
    for (;;) {
        switch (c->state) {
        case S_DATA: {
            size_t n = len;
            if (pos) goto more;             /* data is always returned at the start of buf */
            if (len == 0) return GW_CHUNK_AGAIN;
            if ((uint64_t)n > c->remaining) n = (size_t)c->remaining;
            c->remaining -= n;
            if (c->remaining == 0) c->state = S_DATA_CRLF;
            *consumed = *data_len = n;
            return GW_CHUNK_DATA;
        }
        case S_DATA_CRLF:
            if (pos >= len) goto need;
            if (buf[pos] != '\r') { err = "missing CRLF after chunk data"; goto fail; }
            if (pos + 1 >= len) goto need;
            if (buf[pos + 1] != '\n') { err = "missing CRLF after chunk data"; goto fail; }
            pos += 2;
            c->state = S_SIZE;
            break;
        case S_SIZE: {
            size_t w = len - pos, used = 0;
            uint64_t size = 0;
            int rc;
            if (w > GW_CHUNK_MAX_SIZE_LINE) w = GW_CHUNK_MAX_SIZE_LINE;
            rc = size_line(buf + pos, w, &used, &size, &err);
            if (rc == L_BAD) goto fail;
            if (rc == L_AGAIN) {
                if (w == GW_CHUNK_MAX_SIZE_LINE) { err = "chunk size line too long"; goto fail; }
                goto need;
            }
            pos += used;
            if (size == 0) {
                c->state = S_TRAILER;
                c->trailer_bytes = 0;
            } else {
                c->state = S_DATA;
                c->remaining = size;
            }
            break;
        }
        case S_TRAILER: {
            size_t room = GW_CHUNK_MAX_TRAILERS - c->trailer_bytes, w = len - pos, used = 0;
            int rc;
            if (w > room) w = room;
            rc = field_line(buf + pos, w, &used, NULL, 1, &err);
            if (rc == L_BAD) goto fail;
            if (rc == L_AGAIN) {
                if (w == room) { err = "chunked trailer section too large"; goto fail; }
                goto need;
            }
            pos += used;
            c->trailer_bytes += used;
            if (rc == L_END) {
                c->state = S_DONE;
                *consumed = pos;
                return GW_CHUNK_DONE;
            }
            break;
        }
        case S_DONE:
            return GW_CHUNK_DONE;
        default:
            return GW_CHUNK_ERROR;
        }
    }
need:
    if (pos == 0) return GW_CHUNK_AGAIN;
more:
    *consumed = pos;
    return GW_CHUNK_MORE;
fail:
    c->state = S_ERROR;
    c->error = err;
    return GW_CHUNK_ERROR;
}

/* ---- helpers ---------------------------------------------------------------------------- */

int gw_str_ieq(gw_str s, const char *lit)
{
    size_t i;
    for (i = 0; i < s.n; i++)
        if (!lit[i] || lower((unsigned char)s.p[i]) != lower((unsigned char)lit[i])) return 0;
    return lit[i] == '\0';
}

int gw_http_has_token(gw_str value, const char *token)
{
    size_t pos = 0;
    gw_str el;
    if (!value.p) return 0;
    while (gw_http_list_next(value, &pos, &el))
        if (gw_str_ieq(el, token)) return 1;
    return 0;
}

int gw_http_header_index(const gw_header *h, int n, int from, const char *lname)
{
    size_t ln = strlen(lname);
    if (from < 0) from = 0;
    for (int i = from; i < n; i++) {
        const char *p = h[i].name.p;
        size_t j;
        if (h[i].name.n != ln) continue;
        for (j = 0; j < ln && lower((unsigned char)p[j]) == (unsigned char)lname[j]; j++) ;
        if (j == ln) return i;
    }
    return -1;
}

gw_str gw_http_header_get(const gw_header *h, int n, const char *lname)
{
    int i = gw_http_header_index(h, n, 0, lname);
    return i < 0 ? (gw_str){ NULL, 0 } : h[i].value;
}

int gw_http_valid_field_name(gw_str s)
{
    return s.p && is_token(s);
}

int gw_http_valid_field_value(gw_str s)
{
    if (s.n && !s.p) return 0;
    return scan_value(s.p, 0, s.n) == s.n;
}
