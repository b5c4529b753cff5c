/* http_parser.h — the HTTP/1.1 wire parser (RFC 9112): request heads, response heads, and the
 * chunked body decoder. Owns message framing and its strictness rules, nothing else: no sockets,
 * no libevent, no malloc. Everything it returns is a slice of the caller's buffer (zero copy), so
 * a parsed request is valid exactly as long as that buffer is left in place.
 *
 * Incremental use: call gw_http_parse_request() again with the same bytes plus whatever arrived
 * (re-parsing a head from its start is cheaper than keeping state; heads are small). It returns
 * GW_HTTP_AGAIN while the head is incomplete, and reports limit violations as soon as the bytes
 * present prove them, so a caller never needs a buffer larger than max_header_size. */
#ifndef GW_HTTP_PARSER_H
#define GW_HTTP_PARSER_H

#include <stddef.h>
#include <stdint.h>

/* Return codes of the head parsers (a positive value is the head length). */
#define GW_HTTP_AGAIN (-1)   /* head incomplete: call again with more bytes */
#define GW_HTTP_ERROR (-2)   /* malformed: see ->status (requests) and ->error */

/* Defaults used when gw_http_parse_request() gets lim == NULL (same as the config defaults). */
#define GW_HTTP_DEFAULT_MAX_REQUEST_LINE 8192
#define GW_HTTP_DEFAULT_MAX_HEADER_SIZE  32768
#define GW_HTTP_DEFAULT_MAX_HEADERS      100

/* A slice of the caller's buffer. Not NUL-terminated. The parsers never return p == NULL: an
 * empty slice points at a static "" (so memcmp/memcpy on it are safe); only the lookup helpers
 * below use p == NULL to mean "absent". */
typedef struct { const char *p; size_t n; } gw_str;

/* A header field line; value has leading and trailing OWS removed. */
typedef struct { gw_str name, value; } gw_header;

/* max_request_line: bytes of the request line, CRLF excluded (over -> 414).
 * max_header_size:  bytes of the whole head, request line through the blank line (over -> 431).
 * max_headers:      header field lines (over -> 431); also bounded by the caller's array size.
 * A zero field means the default below. */
typedef struct { size_t max_request_line, max_header_size; int max_headers; } gw_http_limits;

typedef struct {
    gw_str method;              /* token, case-sensitive as sent ("GET") */
    gw_str target;              /* request-target exactly as sent */
    gw_str path;                /* origin-form: target up to '?'; "*" for OPTIONS *; absolute-form:
                                   the path part of the URI, "/" (static) when the URI has none */
    gw_str query;               /* after the first '?', without it; empty if none */
    int version;                /* 10 or 11 */
    gw_header *headers;         /* = the hdrs argument */
    int nheaders;
    int64_t content_length;     /* -1 when absent (always -1 when chunked) */
    unsigned chunked:1;         /* body is chunked (Transfer-Encoding ends in chunked) */
    unsigned keepalive:1;       /* 1.1 without "Connection: close"; 1.0 with "keep-alive" */
    unsigned expect_continue:1; /* "Expect: 100-continue" on HTTP/1.1 */
    unsigned upgrade:1;         /* Connection lists "upgrade" and an Upgrade header is present */
    unsigned absolute_form:1;   /* target was http(s)://authority/...; host = that authority */
    gw_str host;                /* Host header value, or the absolute-form authority (which wins,
                                   RFC 9112 3.2.2: the Host field's value in headers is then
                                   replaced by it too); empty when absent. Includes any ":port". */
    int status;                 /* 0, or on GW_HTTP_ERROR: 400/414/431/501/505 */
    const char *error;          /* NULL, or on GW_HTTP_ERROR a short static reason */
} gw_http_request;

/* Parses the request head at buf[0..len). hdrs/max_hdrs: caller-provided header storage; the
 * effective header limit is min(max_hdrs, lim->max_headers). lim may be NULL (defaults).
 * Empty lines (CRLF) before the request line are skipped and counted in the head length.
 * Returns the head length (> 0, through the blank line; the body or the next pipelined request
 * starts there), GW_HTTP_AGAIN, or GW_HTTP_ERROR with r->status and r->error set.
 * r is fully (re)initialised on every call. */
int gw_http_parse_request(const char *buf, size_t len, gw_http_request *r,
                          gw_header *hdrs, int max_hdrs, const gw_http_limits *lim);

/* Removes the header fields whose name contains '_' from a parsed request (gw's
 * underscores_in_headers: false): "X_Foo" and "X-Foo" are one variable to CGI-style upstreams, so
 * such a name is how one header gets past a check made on the other. No framing header has an
 * '_', so the framing the parser found stands. Returns how many were removed. */
int gw_http_drop_underscores(gw_http_request *r);

typedef struct {
    int status;                 /* 100..599 (others are an error) */
    int version;                /* 10 or 11 */
    gw_str reason;              /* may be empty */
    gw_header *headers;
    int nheaders;
    int64_t content_length;     /* -1 when absent (always -1 when chunked) */
    unsigned chunked:1;         /* Transfer-Encoding ends in chunked */
    unsigned keepalive:1;       /* connection reusable after this response (body framing aside) */
    unsigned upgrade:1;         /* Connection lists "upgrade" and an Upgrade header is present */
    const char *error;          /* on GW_HTTP_ERROR: short static reason (the caller answers 502) */
} gw_http_response;

/* Parses a response head (from an upstream). Same rules as requests for header lines; CL + TE,
 * bad or differing Content-Length, a bad status line or a status outside 100..599 are errors, and
 * so is any Transfer-Encoding other than exactly "chunked": gw removes the transfer coding it
 * forwards, so a body still carrying another one (or framed by a coding gw does not know) cannot
 * be passed on correctly. max_head bounds the whole head; a head that cannot fit is an error even
 * while incomplete. Returns as gw_http_parse_request(). */
int gw_http_parse_response(const char *buf, size_t len, gw_http_response *r,
                           gw_header *hdrs, int max_hdrs, size_t max_head);

/* How a response body is delimited (RFC 9112 6.3). */
enum {
    GW_BODY_NONE = 0,           /* no body: HEAD request, 1xx, 204, 304, 2xx to CONNECT, CL 0 */
    GW_BODY_LENGTH,             /* exactly content_length (> 0) bytes */
    GW_BODY_CHUNKED,            /* chunked: use gw_chunked */
    GW_BODY_CLOSE               /* until the upstream closes: the connection is not reusable */
};
/* method: the request's method (req->method). */
int gw_http_response_body(const gw_http_response *r, gw_str method);

/* ---- chunked body decoder ----------------------------------------------------------------
 * Incremental and copy-free. Usage: loop { rc = gw_chunked_step(c, p, n, &used, &dlen); ... }
 *   GW_CHUNK_DATA   the first *data_len bytes of buf are body data; *consumed == *data_len
 *   GW_CHUNK_MORE   *consumed (> 0) framing bytes were consumed; call again on buf + *consumed
 *   GW_CHUNK_AGAIN  need more input; nothing consumed (keep the bytes, append, call again)
 *   GW_CHUNK_DONE   last chunk and trailer section consumed (*consumed bytes); bytes after that
 *                   belong to the next message. Further calls return DONE, consuming nothing.
 *   GW_CHUNK_ERROR  malformed; c->error says why. Sticky.
 * A partial framing line is never consumed, so a caller may have to keep up to
 * GW_CHUNK_MAX_SIZE_LINE (or the rest of GW_CHUNK_MAX_TRAILERS) bytes; longer is an error.
 * Trailer fields are validated and discarded (not exposed). */
enum { GW_CHUNK_DATA = 0, GW_CHUNK_MORE, GW_CHUNK_AGAIN, GW_CHUNK_DONE, GW_CHUNK_ERROR };
#define GW_CHUNK_MAX_SIZE_LINE 1024  /* size line incl. extensions and CRLF */
#define GW_CHUNK_MAX_TRAILERS  4096  /* trailer section incl. its final CRLF */

typedef struct {
    int state;                  /* private */
    uint64_t remaining;         /* data bytes left in the current chunk */
    size_t trailer_bytes;       /* private: trailer bytes consumed so far */
    const char *error;          /* on GW_CHUNK_ERROR */
} gw_chunked;

void gw_chunked_init(gw_chunked *c);
int gw_chunked_step(gw_chunked *c, const char *buf, size_t len, size_t *consumed, size_t *data_len);

/* ---- helpers ------------------------------------------------------------------------------ */
/* 1 when s equals the C string lit, ASCII case-insensitively. */
int gw_str_ieq(gw_str s, const char *lit);
/* Next element of a comma-separated list value (RFC 9110 5.6.1): OWS-trimmed, ";params" cut, empty
 * elements skipped. *pos starts at 0. 1 with *el, or 0 at the end. */
int gw_http_list_next(gw_str value, size_t *pos, gw_str *el);
/* 1 when the comma-separated list value contains token (case-insensitive; OWS around elements
 * and ";params" after them are ignored), e.g. gw_http_has_token(v, "close"). */
int gw_http_has_token(gw_str value, const char *token);
/* Index of the first header at index >= from whose name equals lname (which must be lowercase),
 * or -1. Iterate duplicates with from = previous + 1. */
int gw_http_header_index(const gw_header *h, int n, int from, const char *lname);
/* Value of the first header named lname (lowercase); {NULL, 0} when absent. */
gw_str gw_http_header_get(const gw_header *h, int n, const char *lname);
/* 1 when s is a valid field name (non-empty token) / field value (no CTL except HTAB, no CR/LF/NUL);
 * for code that builds headers from untrusted input (plugins), to prevent header injection. */
int gw_http_valid_field_name(gw_str s);
int gw_http_valid_field_value(gw_str s);

/* Builds a gw_str from a C string / literal. */
static inline gw_str gw_str_c(const char *s)
{
    gw_str r = { s, 0 };
    if (s) while (s[r.n]) r.n++;
    return r;
}

#endif
