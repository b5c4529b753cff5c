/* http.c — gw.http_c: the C half of gw.http, a non-blocking HTTP/1.1 client on the worker's
 * libevent loop (lua/gw/http.lua builds the request bytes and the response table).
 *
 * An "op" is one request in flight: DNS (evdns, or none for an IP address), connect (or an idle
 * connection of this client's own keep-alive pool), TLS through bufferevent_openssl, the request
 * bytes, the response head (runtime/http_parser.c) and body (Content-Length, chunked with
 * gw_chunked, or until close), bounded by max_body. Lua holds each op as a userdata.
 *
 * wait(op, ...) suspends the calling coroutine until every op given is done, the way gw.sleep
 * does (api.c):
 *   - a request's coroutine (gw_cur): r->wait_op points at the waiter; gw_req_lua_resume wakes
 *     it (a gw.test.context request is resumed by testctx.c, which runs the loop while
 *     r->wait_op is set); if the request ends first (client gone), gw_api_req_cleanup calls
 *     the waiter's cancel (http_cancel), which aborts the ops;
 *   - a timer's coroutine: the waiter holds a registry reference to it and resumes it;
 *   - the main thread (gw test, gw lua scripts: no coroutine to suspend): the loop is run here
 *     until the ops are done.
 * The wake-up is deferred to a zero-delay event, so no Lua runs inside a bufferevent callback
 * and an op is never touched after its waiter was woken. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "gw.h"
#include "conn.h"
#include "worker.h"
#include "api.h"
#include "vm.h"

#define MT "gw.http.op"
#define MAX_HEAD (64 * 1024)        /* response head, status line to blank line */
#define MAX_HDRS 200
#define POOL_MAX_TOTAL 1024         /* idle connections over every key */

/* ---- connections and the pool ---------------------------------------------------------- */

typedef struct hconn {
    struct bufferevent *bev;
    struct event_base *base;
    char *key;                      /* "tls|verify|ca|sni|host|port" */
    int requests;
    int max_requests;
    struct hconn *next, *prev;      /* idle list */
} hconn;

static hconn *pool;                 /* idle connections, most recently used first */
static int pool_n;

static void conn_free(hconn *c)
{
    if (!c) return;
    if (c->bev) bufferevent_free(c->bev);
    free(c->key);
    free(c);
}

static void pool_unlink(hconn *c)
{
    if (c->prev) c->prev->next = c->next; else pool = c->next;
    if (c->next) c->next->prev = c->prev;
    c->next = c->prev = NULL;
    pool_n--;
}

static void idle_read_cb(struct bufferevent *bev, void *arg)
{
    /* an idle connection must not talk: whatever it sent makes it unusable */
    (void)bev;
    hconn *c = arg;
    pool_unlink(c);
    conn_free(c);
}

static void idle_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev; (void)what;
    hconn *c = arg;
    pool_unlink(c);
    conn_free(c);
}

static hconn *pool_get(const char *key, struct event_base *base)
{
    for (hconn *c = pool; c; c = c->next) {
        if (c->base == base && strcmp(c->key, key) == 0) {
            pool_unlink(c);
            return c;
        }
    }
    return NULL;
}

static void pool_put(hconn *c, int idle_ms, int per_key)
{
    int same = 0;
    hconn *last = NULL;
    for (hconn *x = pool; x; x = x->next) {
        if (x->base == c->base && strcmp(x->key, c->key) == 0) same++;
        last = x;
    }
    if (same >= per_key || (gw_W && gw_W->draining)) { conn_free(c); return; }
    if (pool_n >= POOL_MAX_TOTAL && last) { pool_unlink(last); conn_free(last); }
    bufferevent_setcb(c->bev, idle_read_cb, NULL, idle_event_cb, c);
    struct timeval tv = { idle_ms / 1000, (idle_ms % 1000) * 1000 };
    bufferevent_set_timeouts(c->bev, &tv, NULL);
    bufferevent_enable(c->bev, EV_READ);
    c->prev = NULL;
    c->next = pool;
    if (pool) pool->prev = c;
    pool = c;
    pool_n++;
}

/* ---- TLS ------------------------------------------------------------------------------- */

typedef struct tls_ctx { SSL_CTX *ctx; int verify; char *ca_file; struct tls_ctx *next; } tls_ctx;
static tls_ctx *tls_ctxs;

/* One client context per (verify, CA file). Verification uses the system store (/etc/ssl/certs)
 * unless a CA file is given. */
static SSL_CTX *get_tls_ctx(int verify, const char *ca_file, const char **err)
{
    for (tls_ctx *t = tls_ctxs; t; t = t->next)
        if (t->verify == verify && ((!t->ca_file && !ca_file) || (t->ca_file && ca_file && strcmp(t->ca_file, ca_file) == 0)))
            return t->ctx;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) { *err = "cannot create a TLS context"; return NULL; }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok;
        if (ca_file) ok = SSL_CTX_load_verify_locations(ctx, ca_file, NULL);
        else {
            ok = SSL_CTX_set_default_verify_paths(ctx);
            SSL_CTX_load_verify_locations(ctx, NULL, "/etc/ssl/certs");
            ERR_clear_error();
        }
        if (!ok) {
            SSL_CTX_free(ctx);
            ERR_clear_error();
            *err = ca_file ? "cannot load ssl_ca_file" : "cannot load the system CA store";
            return NULL;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    tls_ctx *t = calloc(1, sizeof *t);
    if (!t) { SSL_CTX_free(ctx); *err = "no memory"; return NULL; }
    t->ctx = ctx;
    t->verify = verify;
    t->ca_file = ca_file ? strdup(ca_file) : NULL;
    t->next = tls_ctxs;
    tls_ctxs = t;
    return ctx;
}

/* ---- DNS ------------------------------------------------------------------------------- */

static struct event_base *dns_for;
static struct evdns_base *dns_base;

static struct evdns_base *get_dns(struct event_base *base)
{
    if (dns_base && dns_for == base) return dns_base;
    if (dns_base) evdns_base_free(dns_base, 1);
    dns_for = base;
    /* /etc/resolv.conf and /etc/hosts; the UDP socket does not keep the loop alive */
    dns_base = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!dns_base) {
        /* no usable resolv.conf: /etc/hosts only */
        dns_base = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (dns_base) evdns_base_load_hosts(dns_base, NULL);
    }
    return dns_base;
}

/* ---- ops -------------------------------------------------------------------------------- */

enum { S_NEW = 0, S_RESOLVE, S_CONNECT, S_SEND, S_HEAD, S_BODY, S_DONE };

typedef struct waiter waiter;

typedef struct hop {
    /* the request */
    char *host;
    int port;
    int tls, verify;
    char *ca_file, *sni;
    char *key;
    char *req;
    size_t req_len;
    int head_req;                   /* HEAD: the response has no body */
    int connect_ms, send_ms, read_ms, total_ms;
    int64_t max_body;
    int keepalive, ka_idle_ms, ka_pool, ka_requests;
    struct event_base *base;

    /* progress */
    int state;
    hconn *c;
    int reused, retried, got_bytes;
    size_t scanned;                 /* response bytes known to hold no end of head */
    struct evdns_getaddrinfo_request *dns;
    int resolving;
    struct evutil_addrinfo *ai, *ai_next;
    struct event *timer;            /* connect step, or the whole request (total_ms) */

    /* the response */
    int status;
    char *head;                     /* copy of the head; hdrs point into it */
    gw_header *hdrs;
    int nhdrs;
    gw_str reason;
    int mode;
    int64_t left;
    gw_chunked ch;
    struct evbuffer *body;
    int resp_keepalive;

    char err[256];
    int failed;
    int done;
    waiter *w;
} hop;

enum { W_REQ = 1, W_TIMER, W_BLOCK };

struct waiter {
    gw_wait wait;                   /* first: r->wait_op points here */
    int mode;
    gw_req *r;
    lua_State *co;
    int co_ref;
    int pending;
    hop **ops;
    int nops;
    struct event *wake;
    int ready;
};

static void op_connect_next(hop *op);
static void op_send(hop *op);
static void op_read_cb(struct bufferevent *bev, void *arg);
static void op_write_cb(struct bufferevent *bev, void *arg);
static void op_event_cb(struct bufferevent *bev, short what, void *arg);
static void waiter_ready(waiter *w);

static void op_stop_io(hop *op)
{
    if (op->dns) {
        struct evdns_getaddrinfo_request *q = op->dns;
        op->dns = NULL;
        op->resolving = 0;
        evdns_getaddrinfo_cancel(q);
    }
    if (op->timer) { event_free(op->timer); op->timer = NULL; }
    if (op->ai) { evutil_freeaddrinfo(op->ai); op->ai = op->ai_next = NULL; }
}

/* The op is over (ok or not): its connection is pooled or closed, its waiter told. Nothing of
 * the op is touched after this by the C side. */
static void op_finish(hop *op, int pool_it)
{
    op_stop_io(op);
    hconn *c = op->c;
    op->c = NULL;
    if (c) {
        if (pool_it && c->requests < c->max_requests) pool_put(c, op->ka_idle_ms, op->ka_pool);
        else conn_free(c);
    }
    op->state = S_DONE;
    op->done = 1;
    waiter *w = op->w;
    op->w = NULL;
    if (w && --w->pending == 0) waiter_ready(w);
}

static void op_fail(hop *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void op_fail(hop *op, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op->err, sizeof op->err, fmt, ap);
    va_end(ap);
    op->failed = 1;
    op_finish(op, 0);
}

static void set_bev_timeouts(hop *op, int read, int write)
{
    struct timeval rt = { op->read_ms / 1000, (op->read_ms % 1000) * 1000 };
    struct timeval wt = { op->send_ms / 1000, (op->send_ms % 1000) * 1000 };
    bufferevent_set_timeouts(op->c->bev, read && op->read_ms > 0 ? &rt : NULL, write && op->send_ms > 0 ? &wt : NULL);
}

static void timer_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    hop *op = arg;
    if (op->total_ms > 0) op_fail(op, "timeout");
    else op_fail(op, "connect timeout");
}

static void arm_timer(hop *op, int ms)
{
    if (!op->timer) op->timer = evtimer_new(op->base, timer_cb, op);
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(op->timer, &tv);
}

static void attach(hop *op, hconn *c)
{
    op->c = c;
    op->got_bytes = 0;
    op->scanned = 0;
    c->requests++;
    bufferevent_setcb(c->bev, op_read_cb, op_write_cb, op_event_cb, op);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
}

static void resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    if (result == EVUTIL_EAI_CANCEL) { if (res) evutil_freeaddrinfo(res); return; }
    hop *op = arg;
    op->dns = NULL;
    op->resolving = 0;
    if (result != 0 || !res) {
        if (res) evutil_freeaddrinfo(res);
        op_fail(op, "could not resolve %s: %s", op->host, evutil_gai_strerror(result));
        return;
    }
    op->ai = op->ai_next = res;
    op_connect_next(op);
}

/* Starts (or restarts, for a replay) the op: a pooled connection, else resolve and connect. */
static void op_begin(hop *op)
{
    hconn *c = op->keepalive && !op->retried ? pool_get(op->key, op->base) : NULL;
    if (op->total_ms <= 0 && op->connect_ms > 0 && !c) arm_timer(op, op->connect_ms);
    if (c) {
        op->reused = 1;
        attach(op, c);
        op_send(op);
        return;
    }
    op->reused = 0;
    op->state = S_RESOLVE;
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    char port[16];
    snprintf(port, sizeof port, "%d", op->port);
    /* an IP address needs no DNS */
    struct evutil_addrinfo *res = NULL;
    hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
    if (evutil_getaddrinfo(op->host, port, &hints, &res) == 0 && res) {
        op->ai = op->ai_next = res;
        op_connect_next(op);
        return;
    }
    hints.ai_flags = EVUTIL_AI_NUMERICSERV;
    struct evdns_base *dns = get_dns(op->base);
    if (!dns) { op_fail(op, "could not resolve %s: no resolver", op->host); return; }
    op->resolving = 1;
    struct evdns_getaddrinfo_request *q = evdns_getaddrinfo(dns, op->host, port, &hints, resolved, op);
    /* the callback may already have run (hosts file, cache): then q is NULL */
    if (op->resolving) op->dns = q;
}

static void op_connect_next(hop *op)
{
    op->state = S_CONNECT;
    while (op->ai_next) {
        struct evutil_addrinfo *a = op->ai_next;
        op->ai_next = a->ai_next;
        hconn *c = calloc(1, sizeof *c);
        if (!c) { op_fail(op, "no memory"); return; }
        c->base = op->base;
        c->key = strdup(op->key);
        c->max_requests = op->ka_requests;
        if (op->tls) {
            const char *err = "TLS error";
            SSL_CTX *ctx = get_tls_ctx(op->verify, op->ca_file, &err);
            if (!ctx) { conn_free(c); op_fail(op, "%s", err); return; }
            SSL *ssl = SSL_new(ctx);
            if (!ssl) { conn_free(c); op_fail(op, "cannot create a TLS session"); return; }
            const char *name = op->sni;
            struct in6_addr a6;
            int is_ip = inet_pton(AF_INET, name, &a6) == 1 || inet_pton(AF_INET6, name, &a6) == 1;
            if (!is_ip) SSL_set_tlsext_host_name(ssl, name);
            if (op->verify) {
                X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
                if (is_ip) X509_VERIFY_PARAM_set1_ip_asc(vp, name);
                else { X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS); X509_VERIFY_PARAM_set1_host(vp, name, 0); }
            }
            c->bev = bufferevent_openssl_socket_new(op->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
            if (!c->bev) { SSL_free(ssl); conn_free(c); op_fail(op, "cannot create a socket"); return; }
            /* many servers close without close_notify: the TCP close still ends the stream */
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
        } else {
            c->bev = bufferevent_socket_new(op->base, -1, BEV_OPT_CLOSE_ON_FREE);
            if (!c->bev) { conn_free(c); op_fail(op, "cannot create a socket"); return; }
        }
        attach(op, c);
        c->requests = 1;
        if (bufferevent_socket_connect(c->bev, a->ai_addr, (int)a->ai_addrlen) == 0) {
            bufferevent_enable(c->bev, EV_READ | EV_WRITE);
            return;
        }
        /* immediate failure: no event callback comes, try the next address */
        snprintf(op->err, sizeof op->err, "connect failed: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        op->c = NULL;
        conn_free(c);
    }
    op_fail(op, "%s", op->err[0] ? op->err : "connect failed");
}

/* Connected (or reused): the request goes out. */
static void op_send(hop *op)
{
    hconn *c = op->c;
    op->state = S_SEND;
    if (op->total_ms <= 0 && op->timer) event_del(op->timer);
    set_bev_timeouts(op, 0, 1);
    if (op->body) evbuffer_drain(op->body, evbuffer_get_length(op->body));
    evbuffer_add(bufferevent_get_output(c->bev), op->req, op->req_len);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void op_write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    hop *op = arg;
    if (op->state == S_SEND) {
        /* all of the request is out: now the answer has read_ms between bytes */
        op->state = S_HEAD;
        set_bev_timeouts(op, 1, 0);
    }
}

static void tls_error(hop *op, char *buf, size_t n)
{
    unsigned long e = bufferevent_get_openssl_error(op->c->bev);
    buf[0] = 0;
    SSL *ssl = bufferevent_openssl_get_ssl(op->c->bev);
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (op->verify && vr != X509_V_OK) snprintf(buf, n, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
    else if (e) ERR_error_string_n(e, buf, n);
    while (bufferevent_get_openssl_error(op->c->bev)) {}
    ERR_clear_error();
}

static void op_done_ok(hop *op)
{
    struct evbuffer *in = bufferevent_get_input(op->c->bev);
    int reuse = op->keepalive && op->resp_keepalive && op->mode != GW_BODY_CLOSE &&
                evbuffer_get_length(in) == 0 && evbuffer_get_length(bufferevent_get_output(op->c->bev)) == 0;
    op_finish(op, reuse);
}

static void op_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    hop *op = arg;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(op->c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (op->ai) { evutil_freeaddrinfo(op->ai); op->ai = op->ai_next = NULL; }
        op_send(op);
        return;
    }
    if (op->state == S_CONNECT) {
        char buf[200] = "";
        if (op->tls) tls_error(op, buf, sizeof buf);
        if (!buf[0]) snprintf(buf, sizeof buf, "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        hconn *c = op->c;
        op->c = NULL;
        conn_free(c);
        if (op->tls && buf[0] && strstr(buf, "certificate")) { op_fail(op, "TLS handshake failed: %s", buf); return; }
        snprintf(op->err, sizeof op->err, "%s: %s", op->tls ? "connect or TLS handshake failed" : "connect failed", buf);
        if (op->ai_next) { op_connect_next(op); return; }
        op->failed = 1;
        op_finish(op, 0);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        /* a step bound no shorter than the whole call's cannot fire before the whole call's
         * deadline has passed too: both expire in the same loop turn, in no set order, and the
         * one the caller set (a number `timeout`) is the one to name */
        int writing = (what & BEV_EVENT_WRITING) != 0;
        if (op->total_ms > 0 && (writing ? op->send_ms : op->read_ms) >= op->total_ms) op_fail(op, "timeout");
        else op_fail(op, "%s", writing ? "send timeout" : "read timeout");
        return;
    }
    if ((what & BEV_EVENT_EOF) && op->state == S_BODY && op->mode == GW_BODY_CLOSE) {
        /* close-delimited body: EOF is its end */
        op_read_cb(op->c->bev, op);
        if (!op->done) op_finish(op, 0);
        return;
    }
    if (op->reused && !op->got_bytes && !op->retried && op->state <= S_HEAD) {
        /* a pooled connection the server had closed: once more on a fresh one */
        hconn *c = op->c;
        op->c = NULL;
        conn_free(c);
        op->retried = 1;
        op_begin(op);
        return;
    }
    char buf[200] = "";
    if ((what & BEV_EVENT_ERROR) && op->tls) tls_error(op, buf, sizeof buf);
    if (!buf[0] && (what & BEV_EVENT_ERROR)) snprintf(buf, sizeof buf, "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    if (op->state >= S_BODY) op_fail(op, "connection closed before the response body was complete%s%s", buf[0] ? ": " : "", buf);
    else if (op->got_bytes) op_fail(op, "connection closed in the response head%s%s", buf[0] ? ": " : "", buf);
    else op_fail(op, "connection closed before a response%s%s", buf[0] ? ": " : "", buf);
}

/* Has `in` a complete head (a line feed, optionally a CR, then a line feed)? Searches only what
 * arrived since the last call, so a server trickling a head byte by byte costs linear time. */
static int head_complete(hop *op, struct evbuffer *in)
{
    size_t avail = evbuffer_get_length(in);
    size_t from = op->scanned >= 2 ? op->scanned - 2 : 0;
    struct evbuffer_ptr p;
    if (evbuffer_ptr_set(in, &p, from, EVBUFFER_PTR_SET) == 0) {
        struct evbuffer_ptr a = evbuffer_search(in, "\n\n", 2, &p);
        if (a.pos >= 0) return 1;
        struct evbuffer_ptr b = evbuffer_search(in, "\n\r\n", 3, &p);
        if (b.pos >= 0) return 1;
    }
    op->scanned = avail;
    return 0;
}

/* Moves body bytes from in to op->body; returns -1 after failing the op, 1 when the body is
 * complete, 0 for more. */
static int pump_body(hop *op, struct evbuffer *in)
{
    if (op->mode == GW_BODY_LENGTH) {
        size_t n = evbuffer_get_length(in);
        if ((int64_t)n > op->left) n = (size_t)op->left;
        if (n) { evbuffer_remove_buffer(in, op->body, n); op->left -= (int64_t)n; }
        return op->left == 0;
    }
    if (op->mode == GW_BODY_CLOSE) {
        size_t n = evbuffer_get_length(in);
        if (op->max_body >= 0 && (int64_t)(evbuffer_get_length(op->body) + n) > op->max_body) {
            op_fail(op, "response body too large (over %lld bytes)", (long long)op->max_body);
            return -1;
        }
        if (n) evbuffer_remove_buffer(in, op->body, n);
        return 0;
    }
    /* chunked */
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (!avail) return 0;
        struct evbuffer_iovec v;
        evbuffer_peek(in, -1, NULL, &v, 1);
        size_t consumed = 0, dlen = 0;
        int rc = gw_chunked_step(&op->ch, v.iov_base, v.iov_len, &consumed, &dlen);
        if (rc == GW_CHUNK_AGAIN && v.iov_len < avail) {
            size_t want = avail < 8192 ? avail : 8192;
            rc = gw_chunked_step(&op->ch, (char *)evbuffer_pullup(in, (ssize_t)want), want, &consumed, &dlen);
        }
        switch (rc) {
        case GW_CHUNK_AGAIN: return 0;
        case GW_CHUNK_DATA:
            if (op->max_body >= 0 && (int64_t)(evbuffer_get_length(op->body) + dlen) > op->max_body) {
                op_fail(op, "response body too large (over %lld bytes)", (long long)op->max_body);
                return -1;
            }
            evbuffer_remove_buffer(in, op->body, dlen);
            break;
        case GW_CHUNK_MORE: evbuffer_drain(in, consumed); break;
        case GW_CHUNK_DONE: evbuffer_drain(in, consumed); return 1;
        default:
            op_fail(op, "invalid chunked body: %s", op->ch.error ? op->ch.error : "?");
            return -1;
        }
    }
}

static void op_read_cb(struct bufferevent *bev, void *arg)
{
    hop *op = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (op->done) return;
    if (evbuffer_get_length(in)) op->got_bytes = 1;
    if (op->state == S_SEND || op->state == S_HEAD) {
        for (;;) {
            size_t avail = evbuffer_get_length(in);
            if (!avail) return;
            if (avail < MAX_HEAD && !head_complete(op, in)) return;
            size_t n = avail < MAX_HEAD ? avail : MAX_HEAD;
            char *p = (char *)evbuffer_pullup(in, (ssize_t)n);
            gw_http_response resp;
            gw_header tmp[MAX_HDRS];
            int rc = gw_http_parse_response(p, n, &resp, tmp, MAX_HDRS, MAX_HEAD);
            if (rc == GW_HTTP_AGAIN) {
                if (n >= MAX_HEAD) op_fail(op, "invalid response: head too large");
                return;
            }
            if (rc < 0) { op_fail(op, "invalid response: %s", resp.error ? resp.error : "malformed head"); return; }
            if (resp.status >= 100 && resp.status < 200 && resp.status != 101) {
                evbuffer_drain(in, (size_t)rc);   /* interim (100 Continue, 103) */
                op->scanned = 0;
                continue;
            }
            /* keep a copy of the head: the header slices point into it */
            op->head = malloc((size_t)rc);
            op->hdrs = calloc(MAX_HDRS, sizeof(gw_header));
            if (!op->head || !op->hdrs) { op_fail(op, "no memory"); return; }
            memcpy(op->head, p, (size_t)rc);
            evbuffer_drain(in, (size_t)rc);
            gw_http_parse_response(op->head, (size_t)rc, &resp, op->hdrs, MAX_HDRS, MAX_HEAD);
            op->status = resp.status;
            op->reason = resp.reason;
            op->nhdrs = resp.nheaders;
            op->resp_keepalive = resp.keepalive && resp.status != 101;
            gw_str m = { op->head_req ? "HEAD" : "GET", op->head_req ? 4 : 3 };
            op->mode = gw_http_response_body(&resp, m);
            if (resp.status == 101) op->mode = GW_BODY_NONE;
            if (op->mode == GW_BODY_NONE) { op_done_ok(op); return; }
            if (op->mode == GW_BODY_LENGTH) {
                if (op->max_body >= 0 && resp.content_length > op->max_body) {
                    op_fail(op, "response body too large (%lld bytes, over %lld)", (long long)resp.content_length, (long long)op->max_body);
                    return;
                }
                op->left = resp.content_length;
            }
            if (op->mode == GW_BODY_CHUNKED) gw_chunked_init(&op->ch);
            if (op->state == S_SEND) set_bev_timeouts(op, 1, 1);
            op->state = S_BODY;
            break;
        }
    }
    if (op->state != S_BODY) return;
    int rc = pump_body(op, in);
    if (rc == 1) op_done_ok(op);
}

/* ---- waiting ---------------------------------------------------------------------------- */

static void wake_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    waiter *w = arg;
    event_free(w->wake);
    free(w->ops);
    gw_req *r = w->mode == W_REQ ? w->r : NULL;
    lua_State *co = w->co;
    int ref = w->co_ref;
    free(w);
    gw_wait_resume(r, co, ref);
}

static void waiter_ready(waiter *w)
{
    if (w->mode == W_BLOCK) { w->ready = 1; return; }
    /* from the event loop, never from inside the bufferevent callback that finished the op */
    struct timeval zero = { 0, 0 };
    evtimer_add(w->wake, &zero);
}

/* The request r ends while its coroutine waits in gw.http (the client went away): the ops are
 * aborted and nothing will resume the coroutine. */
static void http_cancel(gw_req *r)
{
    waiter *w = r->wait_op;
    if (!w) return;
    r->wait_op = NULL;
    for (int i = 0; i < w->nops; i++) {
        hop *op = w->ops[i];
        if (!op) continue;
        op->w = NULL;
        if (!op->done) {
            snprintf(op->err, sizeof op->err, "cancelled");
            op->failed = 1;
            op_finish(op, 0);
        }
    }
    if (w->wake) event_free(w->wake);
    free(w->ops);
    free(w);
}

static hop *check_op(lua_State *L, int i)
{
    hop **p = luaL_checkudata(L, i, MT);
    if (!*p) luaL_argerror(L, i, "freed op");
    return *p;
}

static int l_gc(lua_State *L)
{
    hop **p = luaL_checkudata(L, 1, MT);
    hop *op = *p;
    if (!op) return 0;
    *p = NULL;
    if (op->w) {
        /* unreachable while waited on, but be safe: forget it in its waiter */
        waiter *w = op->w;
        for (int i = 0; i < w->nops; i++) if (w->ops[i] == op) w->ops[i] = NULL;
        op->w = NULL;
        if (!op->done) w->pending--;
    }
    if (!op->done) op_finish(op, 0);
    if (op->body) evbuffer_free(op->body);
    free(op->head);
    free(op->hdrs);
    free(op->host);
    free(op->ca_file);
    free(op->sni);
    free(op->key);
    free(op->req);
    free(op);
    return 0;
}

static char *opt_str(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    char *s = NULL;
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t n;
        const char *v = lua_tolstring(L, -1, &n);
        s = malloc(n + 1);
        if (s) { memcpy(s, v, n); s[n] = 0; }
    }
    lua_pop(L, 1);
    return s;
}

static lua_Number opt_num(lua_State *L, int t, const char *k, lua_Number d)
{
    lua_getfield(L, t, k);
    lua_Number v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : d;
    lua_pop(L, 1);
    return v;
}

static int opt_bool(lua_State *L, int t, const char *k, int d)
{
    lua_getfield(L, t, k);
    int v = lua_isnil(L, -1) ? d : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static struct event_base *own_base;

static struct event_base *loop_base(void)
{
    if (gw_W && gw_W->base) return gw_W->base;
    if (!own_base) own_base = event_base_new();
    return own_base;
}

/* start{host=, port=, tls=, verify=, ca_file=, server_name=, request=, head=, connect_ms=,
 *       send_ms=, read_ms=, total_ms=, max_body=, keepalive=, keepalive_timeout=,
 *       keepalive_pool=, keepalive_requests=} -> op. Validation is done by http.lua. */
static int l_start(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    struct event_base *base = loop_base();
    if (!base) return luaL_error(L, "gw.http: no event loop");
    hop *op = calloc(1, sizeof *op);
    if (!op) return luaL_error(L, "no memory");
    hop **ud = lua_newuserdata(L, sizeof *ud);
    *ud = op;
    luaL_getmetatable(L, MT);
    lua_setmetatable(L, -2);
    op->base = base;
    op->host = opt_str(L, 1, "host");
    op->port = (int)opt_num(L, 1, "port", 80);
    op->tls = opt_bool(L, 1, "tls", 0);
    op->verify = opt_bool(L, 1, "verify", 1);
    op->ca_file = opt_str(L, 1, "ca_file");
    op->sni = opt_str(L, 1, "server_name");
    op->head_req = opt_bool(L, 1, "head", 0);
    op->connect_ms = (int)opt_num(L, 1, "connect_ms", 60000);
    op->send_ms = (int)opt_num(L, 1, "send_ms", 60000);
    op->read_ms = (int)opt_num(L, 1, "read_ms", 60000);
    op->total_ms = (int)opt_num(L, 1, "total_ms", 0);
    op->max_body = (int64_t)opt_num(L, 1, "max_body", 8 * 1024 * 1024);
    op->keepalive = opt_bool(L, 1, "keepalive", 1);
    op->ka_idle_ms = (int)opt_num(L, 1, "keepalive_timeout", 60000);
    op->ka_pool = (int)opt_num(L, 1, "keepalive_pool", 32);
    op->ka_requests = (int)opt_num(L, 1, "keepalive_requests", 1000);
    lua_getfield(L, 1, "request");
    size_t n = 0;
    const char *req = lua_tolstring(L, -1, &n);
    if (req) { op->req = malloc(n ? n : 1); if (op->req) memcpy(op->req, req, n); op->req_len = n; }
    lua_pop(L, 1);
    if (!op->host || !op->req) return luaL_error(L, "gw.http_c.start: host and request are required");
    if (!op->sni) op->sni = strdup(op->host);
    op->body = evbuffer_new();
    size_t kl = strlen(op->host) + strlen(op->sni) + (op->ca_file ? strlen(op->ca_file) : 0) + 64;
    op->key = malloc(kl);
    if (!op->body || !op->key || !op->sni) return luaL_error(L, "no memory");
    snprintf(op->key, kl, "%d|%d|%s|%s|%s|%d", op->tls, op->tls && op->verify, op->ca_file ? op->ca_file : "",
             op->tls ? op->sni : "", op->host, op->port);
    if (op->total_ms > 0) arm_timer(op, op->total_ms);
    op_begin(op);
    return 1;
}

/* wait(op, ...): suspends until every op is done (returns at once when they are). */
static int l_wait(lua_State *L)
{
    int n = lua_gettop(L);
    int pending = 0;
    for (int i = 1; i <= n; i++) {
        hop *op = check_op(L, i);
        if (op->w) return luaL_error(L, "gw.http: a request is already being waited for");
        if (!op->done) pending++;
    }
    if (!pending) return 0;
    waiter *w = calloc(1, sizeof *w);
    hop **ops = calloc((size_t)n, sizeof *ops);
    if (!w || !ops) { free(w); free(ops); return luaL_error(L, "no memory"); }
    w->ops = ops;
    w->nops = n;
    w->pending = pending;
    w->co_ref = LUA_NOREF;
    w->wait.cancel = http_cancel;
    gw_req *r = gw_cur;
    if (r) {
        if (r->co != L) { free(ops); free(w); return luaL_error(L, "gw.http: cannot suspend a coroutine created by the plugin (call it from the handler itself)"); }
        if (r->wait_op) { free(ops); free(w); return luaL_error(L, "gw.http: the request already waits"); }
        w->mode = W_REQ;
        w->r = r;
    } else if (lua_pushthread(L)) {
        lua_pop(L, 1);
        w->mode = W_BLOCK;
    } else {
        w->mode = W_TIMER;
        w->co = L;
        w->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    struct event_base *base = NULL;
    for (int i = 1; i <= n; i++) {
        hop *op = check_op(L, i);
        base = op->base;
        if (op->done) continue;
        op->w = w;
        ops[i - 1] = op;
    }
    if (w->mode == W_BLOCK) {
        /* nothing to suspend (gw test, gw lua): run the loop here until the ops are done */
        while (!w->ready) {
            if (event_base_loop(base, EVLOOP_ONCE) != 0) break;
        }
        for (int i = 0; i < n; i++) if (ops[i] && ops[i]->w == w) { ops[i]->w = NULL; if (!ops[i]->done) op_fail(ops[i], "event loop stopped"); }
        free(ops);
        free(w);
        return 0;
    }
    w->wake = evtimer_new(base, wake_cb, w);
    if (w->mode == W_REQ) {
        r->wait_op = w;
        r->state = r->phase == GW_PHASE_LOG ? GW_RS_LOG : GW_RS_LUA;
        /* as gw.sleep: in log, a client closing now must not cut the phase short */
        if (r->phase == GW_PHASE_LOG && !r->c->test && r->c->io) gw_io_disable(r->c->io, EV_READ);
    }
    return lua_yield(L, 0);
}

/* result(op) -> status, reason, {name1, value1, ...}, body | nil, err */
static int l_result(lua_State *L)
{
    hop *op = check_op(L, 1);
    if (!op->done) { lua_pushnil(L); lua_pushliteral(L, "not finished"); return 2; }
    if (op->failed) { lua_pushnil(L); lua_pushstring(L, op->err); return 2; }
    lua_pushinteger(L, op->status);
    lua_pushlstring(L, op->reason.p, op->reason.n);
    lua_createtable(L, op->nhdrs * 2, 0);
    for (int i = 0; i < op->nhdrs; i++) {
        lua_pushlstring(L, op->hdrs[i].name.p, op->hdrs[i].name.n);
        lua_rawseti(L, -2, 2 * i + 1);
        lua_pushlstring(L, op->hdrs[i].value.p, op->hdrs[i].value.n);
        lua_rawseti(L, -2, 2 * i + 2);
    }
    size_t bl = evbuffer_get_length(op->body);
    lua_pushlstring(L, bl ? (const char *)evbuffer_pullup(op->body, (ssize_t)bl) : "", bl);
    return 4;
}

/* pool() -> number of idle connections (all keys) */
static int l_pool(lua_State *L)
{
    lua_pushinteger(L, pool_n);
    return 1;
}

int luaopen_gw_http_c(lua_State *L)
{
    luaL_newmetatable(L, MT);
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        { "start", l_start }, { "wait", l_wait }, { "result", l_result }, { "pool", l_pool },
        { NULL, NULL }
    };
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
