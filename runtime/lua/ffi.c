/* ffi.c — the hot gw.* calls, exported for LuaJIT FFI (lua/gw/init.lua declares them with
 * ffi.cdef). They act on gw_cur, the request whose Lua code is running; strings come back as
 * (pointer, length) slices that stay valid until the request ends. Return codes: 0 ok, -1 not
 * found, -2 no request / wrong state, -3 no memory. */
#include <math.h>
#include <string.h>
#include "gw.h"
#include "conn.h"
#include "worker.h"
#include "api.h"
#include "metrics.h"

enum { S_METHOD = 0, S_PATH, S_RAW_QUERY, S_HOST, S_SCHEME, S_CLIENT_IP, S_ROUTE, S_SERVICE,
       S_REQUEST_ID, S_UP_PATH, S_UP_QUERY, S_UP_METHOD, S_TARGET, S_VERSION, S_URI };

int gw_ffi_phase(void) { return gw_cur ? gw_cur->phase : -1; }

static void set(const char **p, size_t *n, const char *s, size_t len) { *p = s; *n = len; }

int gw_ffi_req_str(int which, const char **p, size_t *n)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    switch (which) {
    case S_METHOD: set(p, n, r->h.method.p, r->h.method.n); return 0;
    case S_PATH: set(p, n, r->h.path.p, r->h.path.n); return 0;
    case S_URI: set(p, n, r->h.target.p, r->h.target.n); return 0;
    case S_RAW_QUERY: set(p, n, r->h.query.p, r->h.query.n); return 0;
    case S_HOST: {
        size_t k = 0;
        while (k < r->h.host.n && r->h.host.p[k] != ':') k++;
        set(p, n, r->h.host.p, k);
        return 0;
    }
    case S_SCHEME: set(p, n, r->c->ssl ? "https" : "http", r->c->ssl ? 5 : 4); return 0;
    case S_CLIENT_IP: set(p, n, r->c->peer_ip, strlen(r->c->peer_ip)); return 0;
    case S_ROUTE:
        if (!r->route || !r->route->name) return -1;
        set(p, n, r->route->name, strlen(r->route->name)); return 0;
    case S_SERVICE:
        if (!r->svc) return -1;
        set(p, n, r->svc->name, strlen(r->svc->name)); return 0;
    case S_REQUEST_ID: set(p, n, r->id_str, strlen(r->id_str)); return 0;
    case S_UP_PATH: gw_req_build_path(r); set(p, n, r->up_path.p, r->up_path.n); return 0;
    case S_UP_QUERY: set(p, n, r->up_query.p, r->up_query.n); return 0;
    case S_UP_METHOD: set(p, n, r->up_method.p, r->up_method.n); return 0;
    case S_VERSION: set(p, n, r->h.version == 10 ? "1.0" : "1.1", 3); return 0;
    default: return -1;
    }
}

/* gw.request.set_body_limit(n): bounds this request's body (0: no bound). 1 when the body can
 * still fit, 0 when its Content-Length or what was read already is over n. */
int gw_ffi_set_body_limit(int64_t n)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    r->body_limit = n;
    if (n > 0 && (r->h.content_length > n || r->body_read > n)) return 0;
    return 1;
}

/* gw.client.authenticate: the consumer's name for the access log (copied into the arena). */
int gw_ffi_set_consumer(const char *s, size_t n)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    char *c = gw_req_strdup(r, s, n);
    if (!c) return -3;
    r->consumer = c;
    return 0;
}

/* gw.request.set_id(id): the request's id from now on (error log lines, access log, X-Request-Id
 * of a correlation plugin): at most 63 bytes, printable ASCII. */
int gw_ffi_set_request_id(const char *s, size_t n)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    if (n == 0 || n >= sizeof r->id_str) return -1;
    for (size_t i = 0; i < n; i++) if (s[i] <= 0x20 || s[i] >= 0x7f) return -1;
    memcpy(r->id_str, s, n);
    r->id_str[n] = 0;
    return 0;
}

/* gw.request.get_timings: the request's moments in unix seconds (0: did not happen). */
int gw_ffi_timings(double *out)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    uint64_t mono = gw_clock_us();
    double unix_now = gw_now();
#define UNIX(t) ((t) ? unix_now - (double)(mono - (t)) / 1e6 : 0)
    out[0] = UNIX(r->start_us);
    out[1] = UNIX(r->up_start_us);
    out[2] = UNIX(r->up_end_us);
#undef UNIX
    return 0;
}

/* gw.now(): wall-clock seconds (ms precision) */
double gw_ffi_now(void) { return gw_now(); }

/* monotonic microseconds, for phase timings */
uint64_t gw_ffi_now_us(void) { return gw_clock_us(); }

/* gw.response.skip_body_filter: one more instance does not want this response's body. */
int gw_ffi_skip_body_filter(void)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    r->bf_skipped++;
    return 0;
}

int gw_ffi_req_port(int peer)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    return peer ? r->c->peer_port : r->c->local_port;
}

static gw_header *harr(gw_req *r, int resp, int **n)
{
    static int dummy;
    if (resp) { *n = &r->nrhdrs; return r->rhdrs; }
    *n = &r->h.nheaders;
    (void)dummy;
    return r->hdrs;
}

int gw_ffi_header_count(int resp)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    int *n;
    harr(r, resp, &n);
    return *n;
}

int gw_ffi_header_at(int resp, int i, const char **np, size_t *nn, const char **vp, size_t *vn)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    int *n;
    gw_header *a = harr(r, resp, &n);
    if (i < 0 || i >= *n) return -1;
    set(np, nn, a[i].name.p, a[i].name.n);
    set(vp, vn, a[i].value.p, a[i].value.n);
    return 0;
}

/* Header names compare case-insensitively, and '_' matches '-' (as Kong and ngx_lua do): both
 * sides folded through one table; the length check is inline, so most headers cost nothing. */
#define FOLD(c) ((c) >= 'A' && (c) <= 'Z' ? (c) + 32 : (c) == '_' ? '-' : (c))
#define F1(c) [c] = (unsigned char)FOLD(c)   /* cast: clang checks the branch not taken too */
#define F4(c) F1(c), F1(c + 1), F1(c + 2), F1(c + 3)
#define F16(c) F4(c), F4(c + 4), F4(c + 8), F4(c + 12)
#define F64(c) F16(c), F16(c + 16), F16(c + 32), F16(c + 48)
static const unsigned char hfold[256] = { F64(0), F64(64), F64(128), F64(192) };

static int hname_same(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (hfold[(unsigned char)a[i]] != hfold[(unsigned char)b[i]]) return 0;
    return 1;
}

static inline int hname_eq(gw_str a, const char *b, size_t bl)
{
    return a.n == bl && hname_same(a.p, b, bl);
}

/* How many headers are named `name` (one call: no loop on the Lua side). */
int gw_ffi_header_count_name(int resp, const char *name, size_t nl)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    int *n, k = 0;
    gw_header *a = harr(r, resp, &n);
    for (int i = 0; i < *n; i++) k += hname_eq(a[i].name, name, nl);
    return k;
}

/* Returns the index of the first header named `name` at or after `from`, -1 when none. */
int gw_ffi_get_header(int resp, const char *name, size_t nl, int from, const char **vp, size_t *vn)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    int *n;
    gw_header *a = harr(r, resp, &n);
    for (int i = from; i < *n; i++) {
        if (hname_eq(a[i].name, name, nl)) {
            set(vp, vn, a[i].value.p, a[i].value.n);
            return i;
        }
    }
    return -1;
}

/* A header name is an RFC 9110 token; a value holds no CR, LF or NUL. Checked here, so the Lua
 * side runs no pattern per call: -4 bad name, -5 bad value (gw.* then raises its error). */
#define TOKEN_PUNCT(c) ((c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || (c) == '&' || \
    (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' || (c) == '^' || (c) == '_' || \
    (c) == '`' || (c) == '|' || (c) == '~')
#define TOKEN_CHAR(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z') || \
    ((c) >= '0' && (c) <= '9') || TOKEN_PUNCT(c))
#define T1(c) [c] = TOKEN_CHAR(c)
#define T4(c) T1(c), T1(c + 1), T1(c + 2), T1(c + 3)
#define T16(c) T4(c), T4(c + 4), T4(c + 8), T4(c + 12)
static const unsigned char token_chars[256] = { T16(32), T16(48), T16(64), T16(80), T16(96), T16(112) };

static int bad_name(const char *name, size_t nl)
{
    if (nl == 0) return 1;
    /* four bytes a step, no branch per byte (token_chars is 0 or 1) */
    const unsigned char *p = (const unsigned char *)name;
    unsigned ok = 1;
    size_t i = 0;
    for (; i + 4 <= nl; i += 4)
        ok &= token_chars[p[i]] & token_chars[p[i + 1]] & token_chars[p[i + 2]] & token_chars[p[i + 3]];
    for (; i < nl; i++) ok &= token_chars[p[i]];
    return !ok;
}

/* a byte of w is zero (exact: no false positive as a whole) */
#define HAS_ZERO(w) (((w) - 0x0101010101010101ULL) & ~(w) & 0x8080808080808080ULL)
static int bad_value(const char *v, size_t vl)
{
    /* eight bytes a step: a NUL, CR or LF anywhere in the word */
    size_t i = 0;
    for (; i + 8 <= vl; i += 8) {
        uint64_t w;
        memcpy(&w, v + i, 8);
        if (HAS_ZERO(w) | HAS_ZERO(w ^ 0x0d0d0d0d0d0d0d0dULL) | HAS_ZERO(w ^ 0x0a0a0a0a0a0a0a0aULL)) return 1;
    }
    for (; i < vl; i++) if (v[i] == '\r' || v[i] == '\n' || v[i] == 0) return 1;
    return 0;
}

/* flags: GW_HDR_ADD keeps the other values of the name (add_header); GW_HDR_KNOWN says the name
 * passed this check before and the Lua side keeps the string referenced for the VM's life (its
 * cache of set names, lua/gw/init.lua), so it is neither checked again nor copied. */
#define GW_HDR_ADD 1
#define GW_HDR_KNOWN 2

static int put_header(gw_req *r, int resp, const char *name, size_t nl, const char *v, size_t vl, int flags)
{
    int *n;
    gw_header *a = harr(r, resp, &n);
    if (!(flags & GW_HDR_ADD)) {
        /* normalize '_' spellings: remove every variant, then add once */
        for (int i = 0; i < *n; i++)
            if (hname_eq(a[i].name, name, nl)) { a[i] = a[*n - 1]; (*n)--; i--; }
    }
    if (!resp && nl == 4 && strncasecmp(name, "host", 4) == 0) {
        /* the Host sent upstream; the client's Host (gw.request.get_host, X-Forwarded-Host)
         * stays what the client sent */
        char *h = gw_req_strdup(r, v, vl);
        if (!h) return -3;
        r->up_host.p = h;
        r->up_host.n = vl;
    }
    if (!(flags & GW_HDR_KNOWN)) {
        name = gw_req_strdup(r, name, nl);
        if (!name) return -3;
    }
    return gw_req_append_header(r, a, n, name, nl, v, vl) == 0 ? 0 : -3;
}

int gw_ffi_set_header(int resp, const char *name, size_t nl, const char *v, size_t vl, int flags)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    if (!(flags & GW_HDR_KNOWN) && bad_name(name, nl)) return -4;
    if (bad_value(v, vl)) return -5;
    return put_header(r, resp, name, nl, v, vl, flags);
}

/* A number as the header value, written here as Lua's tostring would (no string made in Lua):
 * integers of up to 14 digits; -6 for any other number (the caller formats it). */
int gw_ffi_set_header_num(int resp, const char *name, size_t nl, double v, int flags)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    if (!(v > -1e14 && v < 1e14) || v != (double)(int64_t)v || (v == 0 && signbit(v))) return -6;
    if (!(flags & GW_HDR_KNOWN) && bad_name(name, nl)) return -4;
    char buf[24], *e = buf + sizeof buf, *p = e;
    int64_t i = (int64_t)v;
    uint64_t u = i < 0 ? (uint64_t)-i : (uint64_t)i;
    do { *--p = (char)('0' + u % 10); u /= 10; } while (u);
    if (i < 0) *--p = '-';
    return put_header(r, resp, name, nl, p, (size_t)(e - p), flags);
}

int gw_ffi_clear_header(int resp, const char *name, size_t nl, int flags)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    if (!(flags & GW_HDR_KNOWN) && bad_name(name, nl)) return -4;
    int *n;
    gw_header *a = harr(r, resp, &n);
    int j = 0;
    for (int i = 0; i < *n; i++)
        if (!hname_eq(a[i].name, name, nl)) a[j++] = a[i];
    *n = j;
    return 0;
}

int gw_ffi_set_str(int which, const char *s, size_t n)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    char *p = gw_req_strdup(r, s, n);
    if (!p) return -3;
    switch (which) {
    case S_UP_METHOD: r->up_method.p = p; r->up_method.n = n; return 0;
    case S_UP_PATH: r->up_path.p = p; r->up_path.n = n; r->path_set = 1; return 0;
    case S_UP_QUERY: r->up_query.p = p; r->up_query.n = n; r->query_set = 1; return 0;
    default: return -1;
    }
}

/* gw.ctx.shared's registry reference: >= 0 the table, -1 not made yet, -3 no request. */
int gw_ffi_ctx_ref(void)
{
    gw_req *r = gw_cur;
    if (!r) return -3;
    return r->ctx_ref >= 0 ? r->ctx_ref : -1;
}

/* The running plugin of the request (an id of lua/gw/init.lua's; 0 none): -1 no request. */
int gw_ffi_plugin(void) { return gw_cur ? gw_cur->plugin_id : -1; }

/* Outside a request (init_worker, timers) the id is kept here too, for the watchdog; the runner
 * then tracks the plugin per coroutine itself (-1). */
int gw_main_plugin_id;

/* The runner enters a handler: its plugin and its position in the phase's list (where the phase
 * goes on when the handler ends itself with gw._END_HANDLER: api.c co_resume). */
int gw_ffi_enter_plugin(int id, int at)
{
    gw_req *r = gw_cur;
    if (!r) return -1;
    r->plugin_id = id;
    r->plugin_at = at;
    return 0;
}

int gw_ffi_set_plugin(int id)
{
    if (!gw_cur) { gw_main_plugin_id = id; return -1; }
    gw_cur->plugin_id = id;
    return 0;
}

/* Plugin names by the runner's ids, registered once per name: the watchdog's signal handler
 * (worker.c) reads a name from here without touching Lua. */
#define GW_PLUGIN_NAMES 1024
static char *plugin_names[GW_PLUGIN_NAMES];

void gw_ffi_name_plugin(int id, const char *name)
{
    if (id > 0 && id < GW_PLUGIN_NAMES && !plugin_names[id]) plugin_names[id] = strdup(name);
}

const char *gw_plugin_name(int id)
{
    return id > 0 && id < GW_PLUGIN_NAMES ? plugin_names[id] : NULL;
}

int gw_ffi_get_status(void) { return gw_cur ? gw_cur->status : -2; }

int gw_ffi_set_status(int status)
{
    if (!gw_cur) return -2;
    gw_cur->status = status;
    return 0;
}

/* gw.response.exit: records the local response; the Lua side then ends the phase. */
int gw_ffi_exit(int status, const char *body, size_t len)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    r->status = status;
    r->exited = 1;
    r->local = 1;
    if (!r->lbody) r->lbody = evbuffer_new();
    evbuffer_drain(r->lbody, evbuffer_get_length(r->lbody));
    if (body && len) evbuffer_add(r->lbody, body, len);
    if (!r->body_done) r->resp_close = 1;
    return 0;
}

int gw_ffi_set_upstream(const char *name, size_t nl)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    gw_gen *g = r->gen;
    for (int i = 0; i < g->nupstreams; i++) {
        if (strlen(g->upstreams[i].name) == nl && memcmp(g->upstreams[i].name, name, nl) == 0) {
            r->ups = &g->upstreams[i];
            r->has_override = 0;
            return 0;
        }
    }
    /* a service name also works: its balancer */
    for (int i = 0; i < g->nservices; i++) {
        if (strlen(g->services[i].name) == nl && memcmp(g->services[i].name, name, nl) == 0) {
            /* a service name switches the whole service: its protocol, path and balancer */
            r->svc = &g->services[i];
            r->ups = r->svc->upstream;
            r->has_override = 0;
            return 0;
        }
    }
    return -1;
}

int gw_ffi_set_target(const char *host, size_t hl, int port)
{
    gw_req *r = gw_cur;
    if (!r) return -2;
    char h[256];
    if (hl >= sizeof h) return -1;
    memcpy(h, host, hl);
    h[hl] = 0;
    memset(&r->override, 0, sizeof r->override);
    if (gw_resolve(h, port, &r->override.addr, &r->override.addrlen) != 0) return -1;
    r->override.host = gw_req_strdup(r, h, hl);
    r->override.port = port;
    r->override.weight = 1;
    r->has_override = 1;
    return 0;
}

int gw_ffi_set_timeouts(int connect_ms, int write_ms, int read_ms)
{
    gw_req *r = gw_cur;
    if (!r || !r->svc) return -2;
    /* per-request copy of the service so other requests keep the configured values */
    gw_service *s = gw_req_alloc(r, sizeof *s);
    if (!s) return -3;
    *s = *r->svc;
    if (connect_ms > 0) s->connect_timeout = connect_ms;
    if (write_ms > 0) s->write_timeout = write_ms;
    if (read_ms > 0) s->read_timeout = read_ms;
    if (r->ups == &r->svc->single) r->ups = &s->single;
    r->svc = s;
    return 0;
}
