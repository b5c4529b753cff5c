/* conn.h — a downstream connection and the request it is serving (one at a time; pipelined
 * requests wait in the input buffer). The request owns everything a plugin can change: the
 * upstream request line and headers, the response headers, the per-request arena. */
#ifndef GW_CONN_H
#define GW_CONN_H
#include <string.h>
#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include "gen.h"
#include "http_parser.h"
#include "io.h"

typedef struct gw_worker gw_worker;
typedef struct gw_conn gw_conn;
struct gw_req;

/* What a request's coroutine waits on besides gw.sleep (a gw.http or gw.redis call). Each kind's
 * waiter starts with this, so a request that ends first cancels it without knowing its kind. */
typedef struct gw_wait { void (*cancel)(struct gw_req *r); } gw_wait;
typedef struct gw_upconn gw_upconn;

/* Request states: what the connection is waiting for. */
enum {
    GW_RS_IDLE = 0,     /* waiting for a request head */
    GW_RS_LUA,          /* a phase coroutine is suspended (gw.sleep, ...) */
    GW_RS_UPSTREAM,     /* proxying: request body up, response down */
    GW_RS_BODY,         /* reading the whole request body (echo, get_raw_body) */
    GW_RS_FLUSH,        /* a local response is written, waiting for the output to drain */
    GW_RS_LOG,          /* log phase suspended */
    GW_RS_LINGER,       /* answered and half-closed: reading and dropping what the client still sends */
};

typedef struct arena_block { struct arena_block *next; char data[]; } arena_block;

typedef struct gw_req {
    gw_conn *c;
    gw_gen *gen;
    gw_route *route;
    gw_service *svc;
    gw_upstream *ups;           /* balancer pool (may be changed by gw.service.set_upstream) */
    gw_target *target;          /* chosen target */
    gw_target override;         /* gw.service.set_target */
    int has_override;
    int state;
    int phase;                  /* current gw_phase, for phase checks */
    uint64_t start_ms;
    uint64_t start_us;          /* monotonic, when the head was complete (metrics, access log) */
    uint64_t up_start_us;       /* first upstream connect attempt; 0: not proxied */
    uint64_t up_end_us;         /* the upstream response complete, or the upstream given up */
    size_t head_bytes;          /* bytes of the response head written */
    const char *consumer;       /* who authenticated (gw.client.authenticate), for the access log */
    uint64_t id;                /* request id, for logs and X-Request-Id */
    char id_str[64];            /* "<pid hex>-<counter hex>", or what gw.request.set_id gave */

    /* the client request; header slices point into c->hbuf or the arena */
    gw_http_request h;
    gw_header *hdrs;            /* h.headers; capacity c->hdr_cap */
    size_t head_len;
    size_t strip_len;           /* bytes of path removed by strip_path */
    const void *route_re;       /* the regex path that matched (pcre2_code *), or NULL */
    gw_str up_method, up_path, up_query;   /* what goes upstream */
    gw_str up_host;             /* Host set by a plugin (gw.service.request.set_header), else empty */
    int path_set, query_set;

    /* request body */
    int64_t body_left;          /* Content-Length bytes still to read; -1 chunked; 0 none/done */
    gw_chunked chunk;
    int body_done;
    int64_t body_read;
    int64_t body_limit;         /* request body bound (bytes; 0 none): limits.max_body_size or set_body_limit */
    struct evbuffer *body;      /* whole body, when buffered (echo, get_raw_body, set_raw_body) */
    int body_buffered;
    int body_replaced;          /* set_raw_body: body holds the new upstream body */
    uint64_t rate_t0;           /* client_body_min_rate: start of the window (ms), its bytes from */
    int64_t rate_b0;            /* body_read at rate_t0 */
    int body_held;              /* the last read left gw holding the client back (upstream full) */
    int rd_tmo;                 /* read timeout set for the body when tighter than client_body (ms) */

    /* response */
    int status;
    gw_header *rhdrs;           /* response headers; capacity c->hdr_cap */
    int nrhdrs;
    int resp_chunked_out;       /* re-encoding the body as chunked to the client */
    int resp_close;             /* close the client connection after this response */
    int head_sent;              /* response head is in the client's output */
    int64_t resp_left;          /* CL bytes still to forward; -1 chunked; -2 until close */
    gw_chunked rchunk;
    int64_t bytes_sent;
    int local;                  /* response produced by gw (exit, error, echo) */
    struct evbuffer *lbody;     /* local response body */

    /* Lua */
    void *co;                   /* lua_State* of the phase coroutine */
    int co_ref;
    int ctx_ref;                /* gw.ctx.shared table, LUA_NOREF until first use */
    int plugin_id;              /* the plugin whose handler runs (lua/gw/init.lua's ids), 0: none */
    int plugin_at;              /* its position in the runner's list for the phase (1, 6, 11, ...) */
    int exited;                 /* gw.response.exit called */
    int wait_ref;               /* pending timer (gw.sleep) */
    struct event *wait_ev;
    void *wait_op;              /* a gw_wait-headed waiter (gw.http, gw.redis), or NULL */

    /* upstream */
    gw_upconn *up;
    int tries;
    int up_reused;
    int up_body_started;
    int up_error;               /* 502 / 504 to answer when the upstream fails */
    int tls_upgrade;            /* a 426 to a plain request: the head carries Upgrade: TLS/1.2 */

    /* body_filter: the response body is gathered in lbody and filtered before it goes out */
    int bf_done;                /* body_filter has run (or is running) for this response */
    int bf_skipped;             /* instances that called gw.response.skip_body_filter() */
    int resp_buffering;         /* proxied body goes to lbody, not to the client */

    /* arena: small allocations live as long as the request */
    size_t arena_used;
    arena_block *blocks;
} gw_req;

#define GW_ARENA_SIZE 8192

struct gw_conn {
    gw_worker *w;
    gw_io *io;                  /* the client stream (io.h); NULL while shrunk or closing */
    int fd;
    char peer_ip[64];
    int peer_port;
    int local_port;
    struct ssl_st *ssl;         /* accepted on an ssl listener: the stream's SSL; else NULL */
    int tls_srv;                /* the certificate entry the handshake chose (tls.c) */
    unsigned nreq;
    int closing;
    int draining;
    int paused;                 /* idle, next request not read: the client is not reading our output */
    uint64_t linger_until;      /* GW_RS_LINGER: close at the latest then (ms) */
    uint64_t head_deadline;     /* the request head must be complete by then (ms); 0: none started */
    struct event *hs_ev;        /* TLS: bounds the handshake by client_header (made once, reused) */
    int test;                   /* a gw.test.context request: no socket, testctx.c drives it */
    int test_wake;              /* testctx: a gw.sleep of this request has fired */
    int log_pending;            /* closed, but the aborted request's log phase still runs */
    uint64_t idle_since;        /* in the idle queue (waiting for a request): since when (ms) */
    struct gw_conn *iq_prev, *iq_next;
    int in_iq;
    size_t map_size;            /* the mapping holding it, its head buffers and header arrays */
    char *hbuf;                 /* copy of the request head (zero-copy parse over it) */
    size_t hcap;
    char *rbuf;                 /* copy of the upstream response head */
    int hdr_cap;
    gw_req req;
    char arena[GW_ARENA_SIZE];
    struct gw_conn *next_free, *prev_live, *next_live;
};

/* A message head built in one piece: appended into a stack buffer and handed to the evbuffer in
 * one evbuffer_add (one chain, one callback) instead of one per field; a head larger than the
 * buffer goes out in several pieces. */
typedef struct gw_hb { struct evbuffer *out; size_t n; char b[4096]; } gw_hb;
static inline void gw_hb_flush(gw_hb *h)
{
    if (h->n) evbuffer_add(h->out, h->b, h->n);
    h->n = 0;
}
static inline void gw_hb_add(gw_hb *h, const void *p, size_t n)
{
    if (h->n + n > sizeof h->b) {
        gw_hb_flush(h);
        if (n > sizeof h->b) { evbuffer_add(h->out, p, n); return; }
    }
    memcpy(h->b + h->n, p, n);
    h->n += n;
}
static inline void gw_hb_str(gw_hb *h, const char *s) { gw_hb_add(h, s, strlen(s)); }
/* "name: value\r\n"; the usual field fits: one bounds check, the pieces copied in place */
static inline void gw_hb_field(gw_hb *h, gw_str name, gw_str value)
{
    size_t need = name.n + value.n + 4;
    if (h->n + need > sizeof h->b) {
        gw_hb_add(h, name.p, name.n);
        gw_hb_add(h, ": ", 2);
        gw_hb_add(h, value.p, value.n);
        gw_hb_add(h, "\r\n", 2);
        return;
    }
    char *o = h->b + h->n;
    memcpy(o, name.p, name.n);
    o += name.n;
    *o++ = ':';
    *o++ = ' ';
    memcpy(o, value.p, value.n);
    o += value.n;
    *o++ = '\r';
    *o = '\n';
    h->n += need;
}
static inline void gw_hb_num(gw_hb *h, long long v)
{
    char t[24];
    int k = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do { t[k++] = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) t[k++] = '-';
    char o[24];
    for (int i = 0; i < k; i++) o[i] = t[k - 1 - i];
    gw_hb_add(h, o, (size_t)k);
}

extern gw_req *gw_cur;          /* the request whose Lua code is running */

void gw_conn_accept(gw_worker *w, int fd, struct sockaddr *sa, int salen, int local_port, int tls);
void gw_conn_close(gw_conn *c);
void gw_conn_drain_all(gw_worker *w);
void gw_conn_close_idle(gw_worker *w);

void *gw_req_alloc(gw_req *r, size_t n);
char *gw_req_strdup(gw_req *r, const char *s, size_t n);
int gw_req_set_header(gw_req *r, gw_header *arr, int *n, const char *name, size_t nl, const char *val, size_t vl, int add);
/* Appends name: value without looking for others: the value is copied into the request's arena,
 * the name is kept as given (it must outlive the request: a constant, an arena copy, or a Lua
 * string gw keeps referenced). -1 when the array is full or the arena cannot grow. */
int gw_req_append_header(gw_req *r, gw_header *arr, int *n, const char *name, size_t nl, const char *val, size_t vl);
int gw_req_clear_header(gw_header *arr, int *n, const char *name, size_t nl);

/* Chunked bodies in evbuffers (proxy.c), for every HTTP path that streams bodies */
int gw_chunked_step_ev(gw_chunked *c, struct evbuffer *in, size_t *consumed, size_t *dlen);
void gw_move_data(struct evbuffer *in, struct evbuffer *out, size_t n, int chunked);

/* Proxy side (proxy.c) */
void gw_proxy_start(gw_req *r);
void gw_proxy_client_readable(gw_req *r);
void gw_proxy_client_drained(gw_req *r);
void gw_proxy_abort(gw_req *r);
void gw_pool_close_all(gw_worker *w);

/* conn.c entry points used by proxy.c / api.c */
void gw_req_respond_local(gw_req *r, int status, const char *ctype, const char *body, size_t len);
void gw_req_error(gw_req *r, int status, const char *msg);
void gw_req_client_timeouts(gw_req *r);
void gw_req_body_progress(gw_req *r, int held);
void gw_req_response_head_ready(gw_req *r);
void gw_req_response_done(gw_req *r);
void gw_req_lua_resume(gw_req *r, int nargs);
void gw_conn_abort(gw_conn *c);
#endif
