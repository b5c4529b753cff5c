/* conn.c — downstream connections: read and parse request heads, route, run the request phases,
 * write local responses (errors, gw.response.exit, the echo service), keep-alive and pipelining.
 * The upstream half lives in proxy.c; the Lua half of each phase in lua/api.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include "gw.h"
#include "conn.h"
#include "metrics.h"
#include "worker.h"
#include "api.h"
#include "accesslog.h"
#include "tls.h"

/* A request is over (answered, or given up by its client): metrics and the access log. */
static void record(gw_req *r)
{
    gw_metrics_request(r);
    gw_accesslog_request(r);
}

gw_req *gw_cur;

#define HIGH_WATER (256 * 1024)
/* Lingering close (nginx's lingering_timeout / lingering_time): how long to keep reading and
 * dropping what a client still sends after its connection was answered and half-closed. */
#define LINGER_TIMEOUT_MS 2000
#define LINGER_TIME_MS 10000

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void req_start(gw_conn *c);
static void req_finish(gw_req *r);
static void set_read_timeout(gw_conn *c, int64_t ms);
static void head_timeout(gw_conn *c);

/* ---- arena ---------------------------------------------------------------------------- */

void *gw_req_alloc(gw_req *r, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    if (r->arena_used + n <= GW_ARENA_SIZE) {
        void *p = r->c->arena + r->arena_used;
        r->arena_used += n;
        return p;
    }
    arena_block *b = malloc(sizeof(arena_block) + n);
    if (!b) return NULL;
    b->next = r->blocks;
    r->blocks = b;
    return b->data;
}

char *gw_req_strdup(gw_req *r, const char *s, size_t n)
{
    char *p = gw_req_alloc(r, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static int name_eq(gw_str a, const char *b, size_t bl)
{
    return a.n == bl && strncasecmp(a.p, b, bl) == 0;
}

int gw_req_clear_header(gw_header *arr, int *n, const char *name, size_t nl)
{
    int j = 0, removed = 0;
    for (int i = 0; i < *n; i++) {
        if (name_eq(arr[i].name, name, nl)) { removed++; continue; }
        arr[j++] = arr[i];
    }
    *n = j;
    return removed;
}

int gw_req_set_header(gw_req *r, gw_header *arr, int *n, const char *name, size_t nl,
                      const char *val, size_t vl, int add)
{
    char *v = gw_req_strdup(r, val, vl);
    if (!v) return -1;
    if (!add) {
        for (int i = 0; i < *n; i++) {
            if (!name_eq(arr[i].name, name, nl)) continue;
            arr[i].value.p = v;
            arr[i].value.n = vl;
            /* drop later duplicates: set means exactly one value */
            int j = i + 1;
            for (int k = i + 1; k < *n; k++)
                if (!name_eq(arr[k].name, name, nl)) arr[j++] = arr[k];
            *n = j;
            return 0;
        }
    }
    if (*n >= r->c->hdr_cap) return -1;
    char *nm = gw_req_strdup(r, name, nl);
    if (!nm) return -1;
    arr[*n].name.p = nm;
    arr[*n].name.n = nl;
    arr[*n].value.p = v;
    arr[*n].value.n = vl;
    (*n)++;
    return 0;
}

/* ---- connection lifecycle ------------------------------------------------------------- */

static void handshake_timeout_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    gw_conn_close(arg);
}

void gw_conn_accept(gw_worker *w, int fd, struct sockaddr *sa, int salen, int local_port, int tls)
{
    (void)salen;
    gw_conn *c = w->free_conns;
    if (c) w->free_conns = c->next_free;
    else {
        c = calloc(1, sizeof *c);
        if (!c) { close(fd); return; }
    }
    gw_gen *g = w->gen;
    size_t need = g->limits.max_header_size + g->limits.max_request_line;
    if (c->hcap < need) {
        free(c->hbuf);
        free(c->rbuf);
        c->hbuf = malloc(need);
        c->rbuf = malloc(need);
        c->hcap = need;
    }
    int cap = g->limits.max_headers + 64;
    if (c->hdr_cap < cap) {
        free(c->req.hdrs);
        free(c->req.rhdrs);
        c->req.hdrs = malloc(sizeof(gw_header) * cap);
        c->req.rhdrs = malloc(sizeof(gw_header) * cap);
        c->hdr_cap = cap;
    }
    if (!c->hbuf || !c->rbuf || !c->req.hdrs || !c->req.rhdrs) {
        gw_err("out of memory accepting a connection");
        close(fd);
        c->next_free = w->free_conns;
        w->free_conns = c;
        return;
    }
    c->w = w;
    c->fd = fd;
    c->nreq = 0;
    c->closing = 0;
    c->draining = 0;
    c->paused = 0;
    c->local_port = local_port;
    c->peer_port = 0;
    c->peer_ip[0] = 0;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, c->peer_ip, sizeof c->peer_ip);
        c->peer_port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, c->peer_ip, sizeof c->peer_ip);
        c->peer_port = ntohs(in6->sin6_port);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->ssl = NULL;
    /* the first request head, TLS handshake included, is due client_header ms after accept */
    c->head_deadline = gw_now_ms() + (uint64_t)g->client_header_timeout;
    if (tls) {
        SSL *ssl = gw_tls_accept(g, c);
        c->bev = ssl ? bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                      BEV_OPT_CLOSE_ON_FREE) : NULL;
        if (c->bev) {
            c->ssl = ssl;
            /* a client that closes without close_notify still ends the stream cleanly */
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
        } else if (ssl) {
            SSL_free(ssl);
        }
    } else {
        c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!c->bev) { close(fd); c->next_free = w->free_conns; w->free_conns = c; return; }
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    if (c->ssl) {
        /* the handshake's reads do not reach conn_read_cb, and each of them would restart a read
         * timeout: a timer bounds it instead (stopped when the handshake is done) */
        if (!c->hs_ev) c->hs_ev = evtimer_new(w->base, handshake_timeout_cb, c);
        struct timeval hv = { g->client_header_timeout / 1000, (g->client_header_timeout % 1000) * 1000 };
        if (c->hs_ev) evtimer_add(c->hs_ev, &hv);
    }
    c->prev_live = NULL;
    c->next_live = w->live;
    if (w->live) w->live->prev_live = c;
    w->live = c;
    w->nconns++;
    if (w->stats) { w->stats->connections++; w->stats->accepted++; }
    memset(&c->req.h, 0, sizeof c->req.h);
    c->req.c = c;
    c->req.state = GW_RS_IDLE;
    req_start(c);
}

void gw_conn_close(gw_conn *c)
{
    gw_worker *w = c->w;
    gw_req *r = &c->req;
    if (r->state != GW_RS_IDLE && r->state != GW_RS_LINGER) {
        if (r->up) gw_proxy_abort(r);
        if (!c->test && !c->log_pending && r->gen && r->state != GW_RS_LOG) {
            /* metrics and the log phase see every request, those the client gave up on too
             * (499 when no response was produced, as nginx logs them) */
            if (!r->head_sent && !r->local) r->status = 499;
            record(r);
        }
        if (!c->test && !c->log_pending && r->gen && r->state != GW_RS_LOG && gw_api_wants(r, GW_PHASE_LOG)) {
            if (c->bev) { bufferevent_free(c->bev); c->bev = NULL; c->ssl = NULL; }
            c->log_pending = 1;
            if (gw_api_run_log_aborted(r)) return;   /* finishes in gw_req_complete */
            c->log_pending = 0;
        }
        gw_api_req_cleanup(r);
        req_finish(r);
    }
    r->state = GW_RS_IDLE;
    if (c->hs_ev) evtimer_del(c->hs_ev);
    if (c->bev) { bufferevent_free(c->bev); c->bev = NULL; }
    c->ssl = NULL;
    if (c->prev_live) c->prev_live->next_live = c->next_live;
    else w->live = c->next_live;
    if (c->next_live) c->next_live->prev_live = c->prev_live;
    w->nconns--;
    if (w->stats) w->stats->connections--;
    c->next_free = w->free_conns;
    w->free_conns = c;
    gw_worker_maybe_exit();
}

/* An upstream failure after the response head went out: the client must see a broken response,
 * never a clean end, so the connection is reset. */
void gw_conn_abort(gw_conn *c)
{
    struct linger lg = { 1, 0 };
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    gw_conn_close(c);
}

/* The last response is fully handed to the kernel and the connection is to close. Closing a
 * socket that has unread input makes the kernel send a reset at once, dropping whatever of the
 * response is still unsent — exactly when a client is still uploading a body gw refused or did
 * not need. So when input is pending or may still come, only the sending side is shut (the FIN
 * follows the queued response) and what arrives is read and dropped until the client closes or
 * the linger timeouts pass. */
static void conn_close_when_sent(gw_conn *c)
{
    int pending = 0;
    if (ioctl(c->fd, FIONREAD, &pending) != 0) pending = 0;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    /* TLS: close_notify first, so the client knows the response was not cut */
    gw_tls_close_notify(c);
    if (c->req.body_done && pending == 0 && evbuffer_get_length(in) == 0) { gw_conn_close(c); return; }
    if (shutdown(c->fd, SHUT_WR) != 0) { gw_conn_close(c); return; }
    evbuffer_drain(in, evbuffer_get_length(in));
    c->req.state = GW_RS_LINGER;
    c->linger_until = gw_now_ms() + LINGER_TIME_MS;
    struct timeval tv = { LINGER_TIMEOUT_MS / 1000, (LINGER_TIMEOUT_MS % 1000) * 1000 };
    bufferevent_set_timeouts(c->bev, &tv, NULL);
    bufferevent_disable(c->bev, EV_WRITE);
    bufferevent_enable(c->bev, EV_READ);
}

void gw_conn_drain_all(gw_worker *w)
{
    /* Idle keep-alive connections are not closed here: each gets its next request answered with
     * "Connection: close" (no race with a client that is sending right now); the drain timer
     * closes the ones that stay silent. */
    for (gw_conn *c = w->live; c; c = c->next_live) c->draining = 1;
}

/* ---- reading a request ---------------------------------------------------------------- */

static void req_reset(gw_req *r)
{
    gw_conn *c = r->c;
    gw_header *h = r->hdrs, *rh = r->rhdrs;
    arena_block *b = r->blocks;
    while (b) { arena_block *n = b->next; free(b); b = n; }
    struct evbuffer *body = r->body, *lbody = r->lbody;
    memset(r, 0, sizeof *r);
    r->c = c;
    r->hdrs = h;
    r->rhdrs = rh;
    r->body = body;
    r->lbody = lbody;
    if (body) evbuffer_drain(body, evbuffer_get_length(body));
    if (lbody) evbuffer_drain(lbody, evbuffer_get_length(lbody));
    r->co_ref = r->ctx_ref = r->wait_ref = -2; /* LUA_NOREF */
}

static void req_start(gw_conn *c)
{
    gw_req *r = &c->req;
    req_reset(r);
    r->state = GW_RS_IDLE;
    gw_gen *g = c->w->gen;
    int pipelined = evbuffer_get_length(bufferevent_get_input(c->bev)) > 0;
    int64_t ms;
    if (c->nreq == 0) {
        ms = (int64_t)c->head_deadline - (int64_t)gw_now_ms();   /* the first head: due since accept */
        if (ms < 1) ms = 1;
    } else if (pipelined) {
        /* the next head has begun: it has client_header ms, counted from now */
        c->head_deadline = gw_now_ms() + (uint64_t)g->client_header_timeout;
        ms = g->client_header_timeout;
    } else {
        c->head_deadline = 0;                   /* idle: keepalive, then a deadline from the first byte */
        ms = g->keepalive_timeout;
    }
    set_read_timeout(c, ms);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    /* A pipelined request already buffered is taken up from the event loop, not from here:
     * answering it may complete synchronously and land here again, and thousands of pipelined
     * requests must not become thousands of nested calls. */
    if (pipelined) bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
}

static void req_finish(gw_req *r)
{
    if (r->gen) { gw_gen_release(r->gen); r->gen = NULL; }
    arena_block *b = r->blocks;
    while (b) { arena_block *n = b->next; free(b); b = n; }
    r->blocks = NULL;
    r->state = GW_RS_IDLE;
}

static const char *status_text(int s)
{
    switch (s) {
    case 100: return "Continue";
    case 200: return "OK"; case 201: return "Created"; case 202: return "Accepted"; case 204: return "No Content";
    case 301: return "Moved Permanently"; case 302: return "Found"; case 304: return "Not Modified";
    case 307: return "Temporary Redirect"; case 308: return "Permanent Redirect";
    case 400: return "Bad Request"; case 401: return "Unauthorized"; case 403: return "Forbidden";
    case 404: return "Not Found"; case 405: return "Method Not Allowed"; case 408: return "Request Timeout";
    case 409: return "Conflict"; case 411: return "Length Required"; case 413: return "Content Too Large";
    case 414: return "URI Too Long"; case 415: return "Unsupported Media Type"; case 429: return "Too Many Requests";
    case 421: return "Misdirected Request"; case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error"; case 501: return "Not Implemented"; case 502: return "Bad Gateway";
    case 503: return "Service Unavailable"; case 504: return "Gateway Timeout"; case 505: return "HTTP Version Not Supported";
    default: return s < 300 ? "OK" : s < 400 ? "Redirect" : s < 500 ? "Client Error" : "Server Error";
    }
}
const char *gw_status_text(int s) { return status_text(s); }

static void bad_request(gw_conn *c, int status, const char *msg)
{
    /* The head could not be parsed: answer and close, nothing of this connection is trusted. */
    char body[256];
    int bl = snprintf(body, sizeof body, "{\"message\":\"%s\"}", msg ? msg : status_text(status));
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                        "Connection: close\r\nServer: gw\r\n\r\n%s", status, status_text(status), bl, body);
    c->closing = 1;
    c->req.state = GW_RS_FLUSH;
    bufferevent_disable(c->bev, EV_READ);
}

/* Client timeouts while a request is in progress. Reading times out (client_body) only while
 * body bytes are owed: once the body is in, the client may rightly stay silent for as long as the
 * upstream takes or the response lasts; sending is bounded by send_timeout. */
void gw_req_client_timeouts(gw_req *r)
{
    gw_gen *g = r->c->w->gen;
    r->rd_tmo = 0;
    set_read_timeout(r->c, r->body_done ? 0 : g->client_body_timeout);
}

/* Sets the client read timeout (ms; 0: none) and the send timeout. */
static void set_read_timeout(gw_conn *c, int64_t ms)
{
    gw_gen *g = c->w->gen;
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };
    struct timeval wt = { g->send_timeout / 1000, (g->send_timeout % 1000) * 1000 };
    bufferevent_set_timeouts(c->bev, ms > 0 ? &tv : NULL, &wt);
}

/* Body bytes were read (gw_req_pull_body). Besides client_body (the longest silence between
 * reads), a body must keep up client_body_min_rate: after n bytes it is due client_body +
 * n / rate seconds after it began, so a body trickled a few bytes at a time is cut off about
 * client_body after it fell behind, whatever its size, while an upload at the rate or faster is
 * never cut. Time gw itself holds the client back (held: the upstream is not taking the body
 * fast enough) does not count: the window starts again when reading resumes. Cheap when the
 * body keeps up: no timer is touched until it is within client_body of its due time. */
void gw_req_body_progress(gw_req *r, int held)
{
    gw_conn *c = r->c;
    if (!c->bev) return;
    if (r->body_done) { gw_req_client_timeouts(r); return; }
    gw_gen *g = c->w->gen;
    int rate = g->client_body_min_rate;
    if (rate <= 0) return;
    uint64_t now = gw_now_ms();
    if (!r->rate_t0) r->rate_t0 = r->start_ms;
    if (r->body_held) { r->rate_t0 = now; r->rate_b0 = r->body_read; }
    r->body_held = held;
    int64_t ms = g->client_body_timeout;
    if (!held) {
        int64_t due = (int64_t)r->rate_t0 + g->client_body_timeout + (r->body_read - r->rate_b0) * 1000 / rate;
        int64_t left = due - (int64_t)now;
        if (left < ms) ms = left < 1 ? 1 : left;
    }
    if (ms == (r->rd_tmo ? r->rd_tmo : g->client_body_timeout)) return;
    r->rd_tmo = (int)ms;
    set_read_timeout(c, ms);
}

/* Returns 1 when the head is not complete yet (nothing answered), else 0. */
static int process_head(gw_conn *c, size_t avail)
{
    gw_req *r = &c->req;
    gw_worker *w = c->w;
    gw_gen *g = w->gen;
    size_t cap = c->hcap;
    size_t n = avail < cap ? avail : cap;
    evbuffer_copyout(bufferevent_get_input(c->bev), c->hbuf, n);
    int rc = gw_http_parse_request(c->hbuf, n, &r->h, r->hdrs, g->limits.max_headers, &g->limits);
    if (rc == GW_HTTP_AGAIN) {
        if (n < cap) return 1;
        bad_request(c, 431, "Request header fields too large");
        return 0;
    }
    if (rc < 0) {
        bad_request(c, r->h.status ? r->h.status : 400, r->h.error);
        return 0;
    }
    evbuffer_drain(bufferevent_get_input(c->bev), rc);
    r->head_len = rc;
    c->nreq++;
    r->start_ms = gw_now_ms();
    r->start_us = gw_now_us();
    r->id = ++w->next_req_id;
    snprintf(r->id_str, sizeof r->id_str, "%x-%llx", (unsigned)getpid(), (unsigned long long)r->id);
    if (w->stats) w->stats->requests++;
    /* before routing and plugins: as if never sent (gw.underscores_in_headers) */
    if (!g->underscores_in_headers && gw_http_drop_underscores(&r->h))
        gw_info("request %s: header names with '_' dropped (gw.underscores_in_headers)", r->id_str);
    r->gen = g;
    g->refs++;
    r->up_method = r->h.method;
    r->up_query = r->h.query;
    r->body_left = r->h.chunked ? -1 : r->h.content_length > 0 ? r->h.content_length : 0;
    r->body_done = r->body_left == 0;
    if (r->h.chunked) gw_chunked_init(&r->chunk);
    if (!r->h.keepalive || c->draining || w->draining) r->resp_close = 1;
    /* the body bound is checked when the body is first read or streamed (gw_req_pull_body),
     * after the plugins, which may change it (gw.request.set_body_limit) */
    r->body_limit = g->max_body_size;
    gw_req_client_timeouts(r);

    size_t strip = 0;
    r->route = gw_router_match(g->router, &r->h, &strip, &r->route_re);
    if (!r->route) {
        r->route = g->fallback;
        if (c->ssl && gw_tls_misdirected(r)) return 0;
        gw_api_run_request(r, 1);
        return 0;
    }
    r->svc = r->route->service;
    r->ups = r->svc ? r->svc->upstream : NULL;
    if (r->route->strip_path) r->strip_len = strip;
    /* TLS: a Host that another certificate entry serves (421); protocols: [https] on a plain
     * connection, require_client_cert without a verified certificate */
    if (c->ssl && gw_tls_misdirected(r)) return 0;
    if ((r->route->https_only || r->route->require_client_cert) && gw_tls_route_gate(r)) return 0;
    gw_api_run_request(r, 0);
    return 0;
}

/* Builds the path sent upstream: service path + the request path after strip_path. */
void gw_req_build_path(gw_req *r)
{
    if (r->path_set) return;
    const char *rest = r->h.path.p + r->strip_len;
    size_t rn = r->h.path.n - r->strip_len;
    const gw_service *s = r->svc;
    if (s && s->path_len) {
        size_t pl = s->path_len;
        int drop = pl && s->path[pl - 1] == '/' && rn && rest[0] == '/';
        int add = rn && rest[0] != '/' && s->path[pl - 1] != '/';
        char *p = gw_req_alloc(r, pl + rn + 2);
        memcpy(p, s->path, pl);
        size_t k = pl;
        if (add) p[k++] = '/';
        memcpy(p + k, rest + drop, rn - drop);
        k += rn - drop;
        r->up_path.p = p;
        r->up_path.n = k;
    } else if (rn == 0) {
        r->up_path.p = "/";
        r->up_path.n = 1;
    } else if (rest[0] != '/') {
        char *p = gw_req_alloc(r, rn + 1);
        p[0] = '/';
        memcpy(p + 1, rest, rn);
        r->up_path.p = p;
        r->up_path.n = rn + 1;
    } else {
        r->up_path.p = rest;
        r->up_path.n = rn;
    }
    r->path_set = 1;
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    gw_conn *c = arg;
    gw_req *r = &c->req;
    struct evbuffer *in = bufferevent_get_input(bev);
    switch (r->state) {
    case GW_RS_IDLE: {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0) return;
        if (evbuffer_get_length(bufferevent_get_output(bev)) > HIGH_WATER) {
            /* the client pipelines without reading the answers: take no new request until
             * they drain, or gw would hold every response in memory (conn_write_cb resumes) */
            c->paused = 1;
            bufferevent_disable(bev, EV_READ);
            return;
        }
        /* a stray CRLF between pipelined requests is allowed (RFC 9112 2.2) */
        while (avail >= 2) {
            unsigned char two[2];
            evbuffer_copyout(in, two, 2);
            if (two[0] != '\r' || two[1] != '\n') break;
            evbuffer_drain(in, 2);
            avail -= 2;
        }
        if (avail && !process_head(c, avail)) return;
        /* Incomplete: the wait is what is left until the deadline, not a fresh client_header
         * per read, so a head trickled a byte at a time (slowloris) still ends there (408). */
        uint64_t now = gw_now_ms();
        /* the head's deadline runs from its first byte, that is from this read when none is set
         * (on a new connection it runs from accept); a head complete in one read needs no clock */
        if (!c->head_deadline) c->head_deadline = now + (uint64_t)c->w->gen->client_header_timeout;
        if (now >= c->head_deadline) head_timeout(c);
        else set_read_timeout(c, (int64_t)(c->head_deadline - now));
        return;
    }
    case GW_RS_UPSTREAM:
        gw_proxy_client_readable(r);
        return;
    case GW_RS_BODY:
        gw_api_body_readable(r);
        return;
    case GW_RS_LINGER:
        evbuffer_drain(in, evbuffer_get_length(in));
        if (gw_now_ms() >= c->linger_until) gw_conn_close(c);
        return;
    default:
        /* Lua running or flushing: leave pipelined bytes in the buffer, but do not buffer
         * without bound. */
        if (evbuffer_get_length(in) > HIGH_WATER) bufferevent_disable(bev, EV_READ);
        return;
    }
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    gw_conn *c = arg;
    gw_req *r = &c->req;
    (void)bev;
    if (r->state == GW_RS_UPSTREAM) { gw_proxy_client_drained(r); return; }
    if (r->state == GW_RS_IDLE && c->paused) {
        c->paused = 0;
        bufferevent_enable(c->bev, EV_READ);
        conn_read_cb(c->bev, c);
        return;
    }
    if (r->state == GW_RS_FLUSH) {
        if (c->closing) { conn_close_when_sent(c); return; }
    }
}

/* The head was not complete by its deadline (or an idle connection timed out): 408 and close
 * when a head had begun, else just close. */
static void head_timeout(gw_conn *c)
{
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) && !c->closing) {
        bad_request(c, 408, "Request timeout");
        return;
    }
    gw_conn_close(c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    gw_conn *c = arg;
    gw_req *r = &c->req;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {          /* TLS: the handshake is done */
        if (c->hs_ev) evtimer_del(c->hs_ev);
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && r->state == GW_RS_IDLE) {
        head_timeout(c);
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && !r->body_done && !r->head_sent &&
        (r->state == GW_RS_UPSTREAM || r->state == GW_RS_BODY)) {
        /* the request body stopped coming, or fell behind client_body_min_rate */
        gw_proxy_abort(r);
        r->body_done = 1;
        gw_req_client_timeouts(r);
        gw_api_body_failed(r, 408, "Request body timeout");
        return;
    }
    if ((what & BEV_EVENT_EOF) && r->state == GW_RS_FLUSH && !c->closing) {
        /* client half-closed after sending its request: still deliver the response */
        return;
    }
    if ((what & BEV_EVENT_ERROR) && c->ssl && c->nreq == 0) gw_tls_handshake_failed(c);
    gw_conn_close(c);
}

/* ---- responses ------------------------------------------------------------------------ */

static int hop_by_hop(gw_str n)
{
    static const char *hop[] = { "connection", "keep-alive", "proxy-connection", "transfer-encoding",
                                 "te", "trailer", "upgrade", "content-length", NULL };
    for (int i = 0; hop[i]; i++)
        if (name_eq(n, hop[i], strlen(hop[i]))) return 1;
    return 0;
}

/* Is `n` named by a Connection header of the response (so hop-by-hop, RFC 9110 7.6.1)? */
static int connection_listed(gw_req *r, gw_str n)
{
    for (int i = 0; i < r->nrhdrs; i++) {
        if (!name_eq(r->rhdrs[i].name, "connection", 10)) continue;
        char tok[128];
        if (n.n >= sizeof tok) continue;
        memcpy(tok, n.p, n.n);
        tok[n.n] = 0;
        if (gw_http_has_token(r->rhdrs[i].value, tok)) return 1;
    }
    return 0;
}

/* Writes the response head to the client: status line, response headers (plugins may have changed
 * them), then the framing headers gw owns. body_len >= 0: Content-Length; -1: chunked to an
 * HTTP/1.1 client, or close-delimited for HTTP/1.0. */
void gw_req_write_head(gw_req *r, int64_t body_len, int no_body)
{
    gw_conn *c = r->c;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->w->draining || c->draining) r->resp_close = 1;
    if (body_len < 0 && !no_body) {
        if (r->h.version >= 11) r->resp_chunked_out = 1;
        else r->resp_close = 1;
    }
    size_t head_start = evbuffer_get_length(out);
    char line[64];
    int ln = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", r->status, status_text(r->status));
    evbuffer_add(out, line, ln);
    for (int i = 0; i < r->nrhdrs; i++) {
        gw_header *h = &r->rhdrs[i];
        if (hop_by_hop(h->name) || connection_listed(r, h->name)) continue;
        evbuffer_add(out, h->name.p, h->name.n);
        evbuffer_add(out, ": ", 2);
        evbuffer_add(out, h->value.p, h->value.n);
        evbuffer_add(out, "\r\n", 2);
    }
    if (body_len >= 0) {
        if (r->status != 204 && r->status != 304 && r->status >= 200) {
            ln = snprintf(line, sizeof line, "Content-Length: %lld\r\n", (long long)body_len);
            evbuffer_add(out, line, ln);
        }
    } else if (r->resp_chunked_out) {
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    }
    /* 426 to a plain request on an https-only route (RFC 9110 15.5.22) */
    if (r->tls_upgrade) evbuffer_add(out, "Upgrade: TLS/1.2, HTTP/1.1\r\nConnection: Upgrade\r\n", 49);
    if (r->resp_close) evbuffer_add(out, "Connection: close\r\n\r\n", 21);
    else if (r->h.version < 11) evbuffer_add(out, "Connection: keep-alive\r\n\r\n", 26);
    else evbuffer_add(out, "\r\n", 2);
    r->head_bytes = evbuffer_get_length(out) - head_start;
    r->head_sent = 1;
}

/* A response produced by gw itself (exit, errors, echo). Runs header_filter when the route has
 * it; the body goes out with Content-Length. */
void gw_req_respond_local(gw_req *r, int status, const char *ctype, const char *body, size_t len)
{
    r->local = 1;
    r->status = status;
    if (!r->lbody) r->lbody = evbuffer_new();
    if (body && len) evbuffer_add(r->lbody, body, len);
    if (ctype) {
        int have = 0;
        for (int i = 0; i < r->nrhdrs; i++)
            if (name_eq(r->rhdrs[i].name, "content-type", 12)) have = 1;
        if (!have) gw_req_set_header(r, r->rhdrs, &r->nrhdrs, "Content-Type", 12, ctype, strlen(ctype), 1);
    }
    /* an unread request body makes the connection unusable for the next request */
    if (!r->body_done) r->resp_close = 1;
    gw_api_response_ready(r);
}

void gw_req_error(gw_req *r, int status, const char *msg)
{
    char body[512];
    int n = snprintf(body, sizeof body, "{\"message\":\"%s\"}", msg);
    r->nrhdrs = 0;
    if (r->lbody) evbuffer_drain(r->lbody, evbuffer_get_length(r->lbody));
    gw_req_respond_local(r, status, "application/json", body, (size_t)n);
}

/* Called by api.c once header_filter (if any) has run on a local response. */
void gw_req_send_local(gw_req *r)
{
    if (!r->bf_done && gw_api_wants_body_filter(r)) { gw_api_run_body_filter(r); return; }
    int no_body = (r->h.method.n == 4 && memcmp(r->h.method.p, "HEAD", 4) == 0) || r->status == 204 || r->status == 304;
    size_t len = r->lbody ? evbuffer_get_length(r->lbody) : 0;
    gw_req_write_head(r, (int64_t)len, no_body);
    struct evbuffer *out = bufferevent_get_output(r->c->bev);
    if (!no_body && len) evbuffer_add_buffer(out, r->lbody);
    else if (len) evbuffer_drain(r->lbody, len);
    r->bytes_sent = len;
    gw_req_response_done(r);
}

/* The response is complete in the client's output buffer: log phase, then the next request. */
void gw_req_response_done(gw_req *r)
{
    /* TLS: the OpenSSL bufferevent writes one record (and one write()) per buffer chain; a small
     * response (head and body are separate chains) goes out as one when made contiguous */
    if (r->c->ssl && r->c->bev) {
        struct evbuffer *out = bufferevent_get_output(r->c->bev);
        size_t n = evbuffer_get_length(out);
        if (n > 0 && n <= 16384) evbuffer_pullup(out, -1);
    }
    record(r);
    gw_api_run_log(r);
}

/* After the log phase: recycle the request, keep the connection or close it. */
void gw_req_complete(gw_req *r)
{
    gw_conn *c = r->c;
    if (c->log_pending) {
        /* the log phase of a request whose client had gone: now the connection can go too */
        c->log_pending = 0;
        gw_api_req_cleanup(r);
        req_finish(r);
        r->state = GW_RS_IDLE;
        gw_conn_close(c);
        return;
    }
    gw_api_req_cleanup(r);
    int close_after = r->resp_close || !r->body_done;
    req_finish(r);
    if (close_after) {
        c->closing = 1;
        r->state = GW_RS_FLUSH;
        bufferevent_disable(c->bev, EV_READ);
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) conn_close_when_sent(c);
        return;
    }
    req_start(c);
}
