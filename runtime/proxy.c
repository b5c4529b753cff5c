/* proxy.c — the upstream half of a request: balancer, keep-alive pool, connect with retries,
 * request head and body up, response head and body down, both directions streamed with
 * backpressure (a side whose peer's output passes HIGH_WATER stops reading until it drains). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include "gw.h"
#include "conn.h"
#include "metrics.h"
#include "worker.h"
#include "api.h"
#include "tls.h"

#define HIGH_WATER (256 * 1024)

struct gw_upconn {
    gw_io *io;
    gw_req *r;                  /* NULL while idle in the pool */
    gw_target *target;
    struct sockaddr_storage addr;
    socklen_t alen;
    int requests;
    int connected;
    int got_bytes;              /* response bytes seen for the current request */
    int64_t resp_cl;            /* upstream Content-Length (HEAD answers keep it) */
    int no_body, until_close, keepalive;
    int tls;                    /* https service: the stream is over an OpenSSL bufferevent */
    SSL_CTX *ctx;               /* its client context: verification, CAs, client certificate */
    char name[256];             /* the upstream host (SNI unless an IP address; the name verified) */
    gw_upconn *next, *prev;     /* idle list */
};

struct gw_pool { gw_upconn *idle; int nidle; };
static struct gw_pool pool;

static void up_read_cb(gw_io *io, void *arg);
static void up_write_cb(gw_io *io, void *arg);
static void up_event_cb(gw_io *io, short what, void *arg);
static void idle_event_cb(gw_io *io, short what, void *arg);
static void idle_read_cb(gw_io *io, void *arg);
static void pump_response(gw_req *r);
static void try_connect(gw_req *r);

/* ---- chunked bodies in evbuffers --------------------------------------------------------- */

/* gw_chunked_step over the first bytes of `in`; a framing line split across buffer chains is
 * made contiguous first (bounded: framing lines are at most a few KiB). Nothing is drained. */
int gw_chunked_step_ev(gw_chunked *c, struct evbuffer *in, size_t *consumed, size_t *dlen)
{
    size_t avail = evbuffer_get_length(in);
    if (avail == 0) return GW_CHUNK_AGAIN;
    struct evbuffer_iovec v;
    evbuffer_peek(in, -1, NULL, &v, 1);
    int rc = gw_chunked_step(c, v.iov_base, v.iov_len, consumed, dlen);
    if (rc == GW_CHUNK_AGAIN && v.iov_len < avail) {
        size_t want = avail < 8192 ? avail : 8192;
        rc = gw_chunked_step(c, (char *)evbuffer_pullup(in, (ssize_t)want), want, consumed, dlen);
    }
    return rc;
}

/* Moves n bytes from in to out, as one chunk when `chunked` (zero-copy: chains move). */
void gw_move_data(struct evbuffer *in, struct evbuffer *out, size_t n, int chunked)
{
    if (chunked) evbuffer_add_printf(out, "%zx\r\n", n);
    evbuffer_remove_buffer(in, out, n);
    if (chunked) evbuffer_add(out, "\r\n", 2);
}

/* ---- request body framing, shared with api.c (buffering) ------------------------------ */

/* Moves request body bytes from `in` to `dst`. rechunk: write chunked framing around the data.
 * Returns 0 (progress, maybe done: see r->body_done), -400 malformed, -413 over the limit. */
static int pull_body(gw_req *r, struct evbuffer *in, struct evbuffer *dst, int rechunk);

int gw_req_pull_body(gw_req *r, struct evbuffer *in, struct evbuffer *dst, int rechunk)
{
    int was_done = r->body_done;
    int rc = pull_body(r, in, dst, rechunk);
    /* held: the upstream has not taken what came before (pump_request stops reading) */
    if (rc == 0 && !was_done) gw_req_body_progress(r, dst != r->body && evbuffer_get_length(dst) > HIGH_WATER);
    return rc;
}

static int pull_body(gw_req *r, struct evbuffer *in, struct evbuffer *dst, int rechunk)
{
    int64_t max = r->body_limit;
    if (r->body_left > 0 && max > 0 && r->body_read + r->body_left > max) return -413;  /* declared too large */
    if (r->body_left > 0) {
        size_t n = evbuffer_get_length(in);
        if ((int64_t)n > r->body_left) n = (size_t)r->body_left;
        if (n) {
            evbuffer_remove_buffer(in, dst, n);
            r->body_left -= (int64_t)n;
            r->body_read += (int64_t)n;
        }
        if (r->body_left == 0) r->body_done = 1;
        return 0;
    }
    if (r->body_left != -1) { r->body_done = 1; return 0; }
    for (;;) {
        size_t consumed = 0, dlen = 0;
        int rc = gw_chunked_step_ev(&r->chunk, in, &consumed, &dlen);
        switch (rc) {
        case GW_CHUNK_DATA:
            if (max > 0 && r->body_read + (int64_t)dlen > max) return -413;
            gw_move_data(in, dst, dlen, rechunk);
            r->body_read += (int64_t)dlen;
            break;
        case GW_CHUNK_MORE:
            evbuffer_drain(in, consumed);
            break;
        case GW_CHUNK_DONE:
            evbuffer_drain(in, consumed);
            if (rechunk) evbuffer_add(dst, "0\r\n\r\n", 5);
            r->body_done = 1;
            r->body_left = 0;
            return 0;
        case GW_CHUNK_AGAIN:
            return 0;
        default:
            return -400;
        }
    }
}

/* ---- balancer ------------------------------------------------------------------------- */

static gw_target *balance(gw_req *r)
{
    if (r->has_override) return &r->override;
    gw_upstream *u = r->ups;
    if (!u || u->ntargets == 0) return NULL;
    if (u->ntargets == 1) {
        gw_target *t = &u->targets[0];
        /* a lone target is tried even when marked down: there is nothing better */
        return t;
    }
    uint64_t now = gw_now_ms();
    gw_target *best = NULL;
    int total = 0;
    for (int pass = 0; pass < 2 && !best; pass++) {
        total = 0;
        for (int i = 0; i < u->ntargets; i++) {
            gw_target *t = &u->targets[i];
            if (t->weight <= 0) continue;
            if (pass == 0 && t->down_until_ms > now) continue;
            t->current_weight += t->weight;
            total += t->weight;
            if (!best || t->current_weight > best->current_weight) best = t;
        }
        if (pass == 0 && !best) break; /* every target cooling down */
    }
    if (best) best->current_weight -= total;
    return best;
}

static void target_result(gw_req *r, gw_target *t, int ok)
{
    if (!t || t == &r->override) return;
    gw_upstream *u = r->ups;
    if (ok) { t->fails = 0; return; }
    t->fails++;
    if (u && u->passive_failures > 0 && t->fails >= u->passive_failures) {
        t->down_until_ms = gw_now_ms() + (uint64_t)u->cooldown_ms;
        t->fails = 0;
        gw_warn("upstream target %s:%d marked down for %d ms after %d failures",
                t->host, t->port, u->cooldown_ms, u->passive_failures);
    }
}

/* ---- pool ----------------------------------------------------------------------------- */

static void up_free(gw_upconn *u)
{
    if (u->io && u->tls) gw_tls_upstream_close(gw_io_bev(u->io));
    if (u->io) gw_io_free(u->io);
    free(u);
}

static void pool_remove(gw_upconn *u)
{
    if (u->prev) u->prev->next = u->next; else pool.idle = u->next;
    if (u->next) u->next->prev = u->prev;
    u->next = u->prev = NULL;
    pool.nidle--;
}

/* An idle connection to the same address, and for TLS with the same server name and TLS settings:
 * a connection made (and verified) for one virtual host is not handed to another, nor one made
 * with another service's client certificate or CA bundle. */
static gw_upconn *pool_get(const struct sockaddr_storage *a, socklen_t al, int tls, SSL_CTX *ctx, const char *name)
{
    for (gw_upconn *u = pool.idle; u; u = u->next) {
        if (u->alen == al && memcmp(&u->addr, a, al) == 0 && u->tls == tls &&
            (!tls || (u->ctx == ctx && strcmp(u->name, name) == 0))) {
            pool_remove(u);
            return u;
        }
    }
    return NULL;
}

static void pool_put(gw_req *r, gw_upconn *u)
{
    gw_gen *g = r->gen;
    int same = 0;
    for (gw_upconn *x = pool.idle; x; x = x->next)
        if (x->alen == u->alen && memcmp(&x->addr, &u->addr, u->alen) == 0 && x->tls == u->tls) same++;
    if (gw_W->draining || same >= g->ka_max_idle || u->requests >= g->ka_max_requests) { up_free(u); return; }
    u->r = NULL;
    gw_io_read_into(u->io, NULL, 0);
    gw_io_setcb(u->io, idle_read_cb, NULL, idle_event_cb, u);
    gw_io_set_timeouts(u->io, g->ka_idle_timeout, 0);
    /* (enabling re-adds the read event: skipped when it is on, as it is after a response) */
    if (!(gw_io_get_enabled(u->io) & EV_READ)) gw_io_enable(u->io, EV_READ);
    u->prev = NULL;
    u->next = pool.idle;
    if (pool.idle) pool.idle->prev = u;
    pool.idle = u;
    pool.nidle++;
}

static void idle_event_cb(gw_io *io, short what, void *arg)
{
    (void)io; (void)what;
    gw_upconn *u = arg;
    pool_remove(u);
    up_free(u);
}

static void idle_read_cb(gw_io *io, void *arg)
{
    /* an idle upstream connection must not talk: whatever it sent makes it unusable */
    (void)io;
    gw_upconn *u = arg;
    pool_remove(u);
    up_free(u);
}

void gw_pool_close_all(gw_worker *w)
{
    (void)w;
    while (pool.idle) {
        gw_upconn *u = pool.idle;
        pool_remove(u);
        up_free(u);
    }
}

/* ---- sending the request -------------------------------------------------------------- */

static int gw_str_ieq_n(gw_str a, gw_str b)
{
    return a.n == b.n && strncasecmp(a.p, b.p, a.n) == 0;
}

static int name_is_n(gw_str n, const char *s, size_t l)
{
    return n.n == l && strncasecmp(n.p, s, l) == 0;
}
/* (with a string literal: its length is known at compile time, the case-blind compare runs only
 * on names of that length) */
#define name_is(n, lit) name_is_n((n), (lit), sizeof(lit) - 1)

/* Is header `n` named in the client's Connection header (so hop-by-hop)? */
static int in_connection(gw_req *r, gw_str n)
{
    for (int i = 0; i < r->h.nheaders; i++) {
        if (!name_is(r->hdrs[i].name, "connection")) continue;
        const char *p = r->hdrs[i].value.p, *e = p + r->hdrs[i].value.n;
        while (p < e) {
            while (p < e && (*p == ' ' || *p == ',' || *p == '\t')) p++;
            const char *s = p;
            while (p < e && *p != ',' && *p != ' ' && *p != '\t') p++;
            if ((size_t)(p - s) == n.n && n.n && strncasecmp(s, n.p, n.n) == 0) return 1;
        }
    }
    return 0;
}

/* Headers never copied upstream: hop-by-hop ones, the framing gw sets itself, and the
 * X-Forwarded-* / X-Real-IP set that gw writes from what it saw. */
static int not_forwarded(gw_str n)
{
#define NF(s) { s, sizeof(s) - 1 }
    static const struct { const char *s; size_t n; } names[] = { NF("te"), NF("host"), NF("expect"),
        NF("upgrade"), NF("trailer"), NF("connection"), NF("keep-alive"), NF("content-length"),
        NF("x-forwarded-host"), NF("x-forwarded-port"), NF("x-forwarded-proto"), NF("proxy-connection"),
        NF("transfer-encoding"), NF("x-real-ip") };
#undef NF
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (name_is_n(n, names[i].s, names[i].n)) return 1;
    return 0;
}

/* The Host header sent upstream (Kong's rules), in r's memory or buf. */
static gw_str upstream_host(gw_req *r, char *buf, size_t n)
{
    gw_service *s = r->svc;
    gw_target *t = r->target;
    if (r->route->preserve_host && r->h.host.n) return r->h.host;
    const char *name;
    int port;
    if (r->has_override) {
        /* gw.service.set_target: the host and port the request really goes to */
        name = t->host;
        port = t->port;
    } else if (r->ups && r->ups != &s->single) {
        /* a named upstream: the upstream name with the service's port, not the target's —
         * every target of the balancer must see the same virtual host */
        name = r->ups != s->upstream && r->ups->name ? r->ups->name : s->host;
        port = s->port;
    } else {
        name = s->host;
        port = s->port;
    }
    int dflt = (s->protocol == GW_PROTO_HTTPS) ? port == 443 : port == 80;
    /* "name" or "name:port", without snprintf (once per proxied request) */
    size_t k = strlen(name);
    if (k > n - 8) k = n - 8;
    memcpy(buf, name, k);
    if (!dflt && port > 0 && port < 65536) {
        char t[8];
        int d = 0;
        do { t[d++] = (char)('0' + port % 10); port /= 10; } while (port);
        buf[k++] = ':';
        while (d) buf[k++] = t[--d];
    }
    gw_str v = { buf, k };
    return v;
}

/* The upstream's TLS name for r: the upstream Host without its port, an IPv6 address without its
 * brackets. It is sent as SNI unless it is an IP address, and it is what tls_verify checks. */
static void upstream_name(gw_req *r, char *name, size_t n)
{
    char hbuf[320];
    gw_str h = upstream_host(r, hbuf, sizeof hbuf);
    size_t k = 0, i = 0;
    if (h.n && h.p[0] == '[') {
        for (i = 1; i < h.n && h.p[i] != ']' && k + 1 < n; i++) name[k++] = h.p[i];
    } else {
        while (i < h.n && h.p[i] != ':' && k + 1 < n) name[k++] = h.p[i++];
    }
    name[k] = 0;
}

static void write_request_head(gw_req *r, struct evbuffer *out)
{
    gw_hb hb;
    hb.out = out;
    hb.n = 0;
    gw_hb_add(&hb, r->up_method.p, r->up_method.n);
    gw_hb_add(&hb, " ", 1);
    gw_hb_add(&hb, r->up_path.p, r->up_path.n);
    if (r->up_query.n) {
        gw_hb_add(&hb, "?", 1);
        gw_hb_add(&hb, r->up_query.p, r->up_query.n);
    }
    gw_hb_add(&hb, " HTTP/1.1\r\nHost: ", 17);
    char hbuf[320];
    gw_str host = r->up_host.n ? r->up_host : upstream_host(r, hbuf, sizeof hbuf);
    gw_hb_add(&hb, host.p, host.n);
    gw_hb_add(&hb, "\r\n", 2);
    int nxff = 0, has_conn = 0;
    for (int i = 0; i < r->h.nheaders; i++)
        if (name_is(r->hdrs[i].name, "connection")) has_conn = 1;
    for (int i = 0; i < r->h.nheaders; i++) {
        gw_header *h = &r->hdrs[i];
        gw_str n = h->name;
        if (name_is(n, "x-forwarded-for")) { nxff++; continue; }
        if (not_forwarded(n)) continue;
        if (has_conn && in_connection(r, n)) continue;
        gw_hb_add(&hb, n.p, n.n);
        gw_hb_add(&hb, ": ", 2);
        gw_hb_add(&hb, h->value.p, h->value.n);
        gw_hb_add(&hb, "\r\n", 2);
    }
    gw_conn *c = r->c;
    /* every X-Forwarded-For line the client sent, in order (a repeated header is one list,
     * RFC 9110 5.3), then this hop */
    gw_hb_add(&hb, "X-Forwarded-For: ", 17);
    for (int i = 0; nxff && i < r->h.nheaders; i++) {
        gw_header *h = &r->hdrs[i];
        if (!name_is(h->name, "x-forwarded-for") || !h->value.n) continue;
        gw_hb_add(&hb, h->value.p, h->value.n);
        gw_hb_add(&hb, ", ", 2);
    }
    gw_hb_str(&hb, c->peer_ip);
    gw_hb_add(&hb, "\r\nX-Real-IP: ", 13);
    gw_hb_str(&hb, c->peer_ip);
    if (c->ssl) gw_hb_add(&hb, "\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: ", 46);
    else gw_hb_add(&hb, "\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ", 45);
    size_t hn = 0;
    while (hn < r->h.host.n && r->h.host.p[hn] != ':') hn++;
    gw_hb_add(&hb, r->h.host.p, hn);
    gw_hb_add(&hb, "\r\nX-Forwarded-Port: ", 20);
    gw_hb_num(&hb, c->local_port);
    gw_hb_add(&hb, "\r\n", 2);
    if (r->body_buffered) {
        gw_hb_add(&hb, "Content-Length: ", 16);
        gw_hb_num(&hb, (long long)evbuffer_get_length(r->body));
        gw_hb_add(&hb, "\r\n\r\n", 4);
    } else if (r->h.chunked) {
        /* gw undoes and redoes only the chunked framing: any other coding the client applied
         * (validated by the parser, "gzip, chunked") is still on the body and stays declared.
         * The value is rewritten, not copied: the codings as tokens, then "chunked" once and last,
         * whatever the header list holds by now (a plugin may have set it) */
        gw_hb_add(&hb, "Transfer-Encoding: ", 19);
        for (int i = 0; i < r->h.nheaders; i++) {
            if (!name_is(r->hdrs[i].name, "transfer-encoding")) continue;
            size_t pos = 0;
            gw_str el;
            while (gw_http_list_next(r->hdrs[i].value, &pos, &el)) {
                if (gw_str_ieq(el, "chunked") || !gw_http_valid_field_name(el)) continue;
                gw_hb_add(&hb, el.p, el.n);
                gw_hb_add(&hb, ", ", 2);
            }
        }
        gw_hb_add(&hb, "chunked\r\n\r\n", 11);
    } else if (r->h.content_length >= 0 && (r->h.content_length > 0 || !name_is(r->up_method, "GET"))) {
        gw_hb_add(&hb, "Content-Length: ", 16);
        gw_hb_num(&hb, (long long)r->h.content_length);
        gw_hb_add(&hb, "\r\n\r\n", 4);
    } else {
        gw_hb_add(&hb, "\r\n", 2);
    }
    gw_hb_flush(&hb);
    if (r->body_buffered) {
        /* keep a copy: a retry on a fresh connection sends it again */
        size_t n = evbuffer_get_length(r->body);
        evbuffer_add(out, evbuffer_pullup(r->body, n), n);
    }
}

/* Timeouts of a connected upstream. read_timeout is how long the upstream may take to answer,
 * so it runs once the request is fully sent: while a slow client is still uploading, the wait is
 * the client's (client_body timeout), not the upstream's. */
static void set_up_timeouts(gw_req *r, gw_upconn *u)
{
    gw_service *s = r->svc;
    gw_io_set_timeouts(u->io, r->body_done || r->body_buffered ? s->read_timeout : 0, s->write_timeout);
}

/* Pumps client body bytes upstream; called when the client has data or the upstream drained. */
static void pump_request(gw_req *r)
{
    gw_upconn *u = r->up;
    struct evbuffer *in = gw_io_input(r->c->io);
    if (r->body_done || r->body_buffered) return;
    if (!u || !u->connected) {
        /* still connecting (or between retries): hold the client back rather than buffer its
         * body; the connect event pumps and re-enables reading */
        if (evbuffer_get_length(in) > HIGH_WATER) gw_io_disable(r->c->io, EV_READ);
        return;
    }
    struct evbuffer *out = gw_io_output(u->io);
    if (evbuffer_get_length(in)) r->up_body_started = 1;
    int rc = gw_req_pull_body(r, in, out, r->h.chunked);
    if (rc < 0) {
        /* the client sent a broken body: the upstream request cannot be completed */
        gw_proxy_abort(r);
        r->resp_close = 1;
        r->body_done = 1;
        if (!r->head_sent) gw_req_error(r, rc == -413 ? 413 : 400, rc == -413 ? "Request body too large" : "Invalid chunked body");
        else gw_conn_abort(r->c);
        return;
    }
    if (r->body_done) { set_up_timeouts(r, u); return; }
    if (evbuffer_get_length(out) > HIGH_WATER) gw_io_disable(r->c->io, EV_READ);
    else gw_io_enable(r->c->io, EV_READ);
}

void gw_proxy_client_readable(gw_req *r)
{
    if (!r->body_done && !r->body_buffered) { pump_request(r); return; }
    /* body complete: pipelined bytes wait until this response is done */
    if (evbuffer_get_length(gw_io_input(r->c->io)) > HIGH_WATER)
        gw_io_disable(r->c->io, EV_READ);
}

static void fail(gw_req *r, int status, const char *msg)
{
    r->up_end_us = gw_now_us();
    gw_proxy_abort(r);
    if (r->head_sent) { gw_conn_abort(r->c); return; }
    if (!r->body_done) r->resp_close = 1;
    gw_req_error(r, status, msg);
}

static void attach(gw_req *r, gw_upconn *u)
{
    u->r = r;
    u->got_bytes = 0;
    r->up = u;
    gw_service *s = r->svc;
    gw_io_setcb(u->io, up_read_cb, up_write_cb, up_event_cb, r);
    gw_io_set_write_lowat(u->io, 0);
    if (u->connected) set_up_timeouts(r, u);
    else gw_io_set_timeouts(u->io, s->connect_timeout, s->connect_timeout);
    /* the response head is read straight into rbuf when nothing else is buffered */
    gw_io_read_into(u->io, r->c->rbuf, r->c->hcap);
    /* the head goes out once this loop pass's callbacks are done (a plain stream writes it in one
     * writev then, a pooled connection's read event stays on from its last response); a write
     * error on a pooled connection the upstream had closed comes back as an event: replayed */
    write_request_head(r, gw_io_output(u->io));
    if ((gw_io_get_enabled(u->io) & (EV_READ | EV_WRITE)) != (EV_READ | EV_WRITE)) gw_io_enable(u->io, EV_READ | EV_WRITE);
    if (u->connected) pump_request(r);
}

static void try_connect(gw_req *r)
{
    r->tries++;
    gw_target *t = balance(r);
    if (!t) { fail(r, 503, "failure to get a peer from the ring-balancer"); return; }
    r->target = t;
    int tls = r->svc->protocol == GW_PROTO_HTTPS;
    char name[256] = "";
    if (tls) upstream_name(r, name, sizeof name);
    gw_upconn *u = pool_get(&t->addr, t->addrlen, tls, r->svc->tls_ctx, name);
    if (u) {
        u->target = t;
        u->requests++;
        r->up_reused = 1;
        attach(r, u);
        return;
    }
    r->up_reused = 0;
    u = calloc(1, sizeof *u);
    if (!u) { fail(r, 502, "out of memory"); return; }
    u->target = t;
    u->addr = t->addr;
    u->alen = t->addrlen;
    u->requests = 1;
    u->tls = tls;
    u->ctx = r->svc->tls_ctx;
    memcpy(u->name, name, sizeof u->name);
    if (tls) {
        /* SNI and the name verified (tls_verify): the upstream host */
        /* a session of this target is resumed (not for a per-request gw.service.set_target) */
        SSL *ssl = gw_tls_upstream_ssl(r->svc, name, t == &r->override ? NULL : t);
        /* CONNECTED is reported once the handshake is done, so connect_timeout covers it */
        struct bufferevent *bev = ssl ? bufferevent_openssl_socket_new(gw_W->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                                        BEV_OPT_CLOSE_ON_FREE) : NULL;
        if (!bev && ssl) SSL_free(ssl);
        /* many servers close without close_notify: the TCP close still ends the stream */
        if (bev) bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
        u->io = bev ? gw_io_tls(bev) : NULL;
        if (bev && !u->io) bufferevent_free(bev);
    } else {
        u->io = gw_io_socket(gw_W->base, -1);
    }
    if (!u->io) { free(u); fail(r, 502, "cannot create socket"); return; }
    attach(r, u);
    if (gw_io_connect(u->io, (struct sockaddr *)&t->addr, (int)t->addrlen) != 0) {
        /* immediate failure: the event callback is not called, handle it here */
        r->up = NULL;
        up_free(u);
        target_result(r, t, 0);
        if (r->tries <= r->svc->retries) { try_connect(r); return; }
        fail(r, 502, "An invalid response was received from the upstream server");
    }
}

void gw_proxy_start(gw_req *r)
{
    if (!r->body_done && !r->body_buffered && r->body_limit > 0 && r->h.content_length > r->body_limit) {
        /* declared too large: answered before any of it is read (no 100 Continue) */
        r->resp_close = 1;
        gw_req_error(r, 413, "Request body too large");
        return;
    }
    r->state = GW_RS_UPSTREAM;
    r->up_start_us = gw_now_us();
    if (r->h.expect_continue && !r->body_done && !r->body_buffered &&
        evbuffer_get_length(gw_io_input(r->c->io)) == 0)
        evbuffer_add(gw_io_output(r->c->io), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    try_connect(r);
}

void gw_proxy_abort(gw_req *r)
{
    if (!r->up) return;
    gw_upconn *u = r->up;
    r->up = NULL;
    up_free(u);
}

/* ---- upstream events ------------------------------------------------------------------ */

static void up_write_cb(gw_io *io, void *arg)
{
    (void)io;
    gw_req *r = arg;
    if (!r->body_done) {
        gw_io_enable(r->c->io, EV_READ);
        pump_request(r);
    }
}

/* The response head has been read and its body is flowing: to the client, or into lbody for
 * body_filter. */
static int in_body(gw_req *r)
{
    return r->head_sent || r->resp_buffering;
}

static int can_replay(gw_req *r)
{
    return !r->up_body_started && !r->head_sent;
}

static void up_event_cb(gw_io *io, short what, void *arg)
{
    (void)io;
    gw_req *r = arg;
    gw_upconn *u = r->up;
    if (what & BEV_EVENT_CONNECTED) {
        u->connected = 1;
        int one = 1;
        setsockopt(gw_io_fd(u->io), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        set_up_timeouts(r, u);
        pump_request(r);
        return;
    }
    if (!u->connected) {
        /* connect failed or timed out: nothing was sent, any method may go to the next target */
        int timeout = (what & BEV_EVENT_TIMEOUT) != 0;
        gw_target *t = r->target;
        char why[320] = "";
        if (u->tls && !timeout) {
            /* a refused certificate (tls_verify) or another handshake failure: say which */
            memcpy(why, ": TLS handshake failed: ", 24);
            gw_tls_upstream_error(gw_io_bev(u->io), why + 24, sizeof why - 24);
        }
        gw_warn("upstream %s:%d connect %s%s (try %d), request %s", t->host, t->port,
                timeout ? "timed out" : "failed", why, r->tries, r->id_str);
        gw_proxy_abort(r);
        target_result(r, t, 0);
        if (r->tries <= r->svc->retries) { try_connect(r); return; }
        if (timeout) fail(r, 504, "The upstream server is timing out");
        else fail(r, 502, "An invalid response was received from the upstream server");
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        gw_warn("upstream %s:%d timed out, request %s", r->target->host, r->target->port, r->id_str);
        target_result(r, r->target, 0);
        fail(r, 504, "The upstream server is timing out");
        return;
    }
    /* EOF or error */
    if ((what & BEV_EVENT_EOF) && in_body(r) && r->resp_left == -2) {
        /* close-delimited body: EOF is its end */
        u->keepalive = 0;
        pump_response(r);
        r->resp_left = 0;
        pump_response(r);
        return;
    }
    if (!u->got_bytes && r->up_reused && can_replay(r)) {
        /* a pooled connection the upstream had closed: replay on a fresh one */
        gw_proxy_abort(r);
        r->tries--;
        try_connect(r);
        return;
    }
    if (!r->head_sent) gw_warn("upstream %s:%d closed the connection before a response, request %s",
                              r->target->host, r->target->port, r->id_str);
    else gw_warn("upstream %s:%d closed the connection in the response body, request %s: the client "
                 "connection is reset", r->target->host, r->target->port, r->id_str);
    target_result(r, r->target, 0);
    fail(r, 502, "An invalid response was received from the upstream server");
}

static void up_read_cb(gw_io *io, void *arg)
{
    gw_req *r = arg;
    gw_upconn *u = r->up;
    /* a response head read straight into rbuf (attach): parsed where it was read */
    size_t direct = gw_io_direct_len(io);
    if (direct || evbuffer_get_length(gw_io_input(io))) u->got_bytes = 1;
    if (in_body(r) || r->state != GW_RS_UPSTREAM) {
        if (in_body(r)) pump_response(r);
        else gw_io_disable(io, EV_READ); /* header_filter running: wait */
        return;
    }
    gw_conn *c = r->c;
    gw_gen *g = r->gen;
    for (;;) {
        size_t n = direct;
        struct evbuffer *in = NULL;
        if (!n) {
            in = gw_io_input(io);
            size_t avail = evbuffer_get_length(in);
            n = avail < c->hcap ? avail : c->hcap;
            if (n == 0) return;
            evbuffer_copyout(in, c->rbuf, n);
        }
        gw_http_response resp;
        /* headers a plugin set during rewrite/access are already in rhdrs: the upstream's go after
         * them, and an upstream header of the same name gives way */
        int pend = r->nrhdrs;
        int rc = gw_http_parse_response(c->rbuf, n, &resp, r->rhdrs + pend, c->hdr_cap - pend, g->limits.max_header_size);
        if (rc == GW_HTTP_AGAIN) {
            if (n >= c->hcap) { target_result(r, r->target, 0); fail(r, 502, "upstream response head too large"); }
            /* the rest of the head comes to the input, after what is here */
            else if (direct) gw_io_read_into(io, NULL, 0);
            return;
        }
        if (rc < 0) {
            gw_warn("upstream %s:%d sent an invalid response head (%s), request %s", r->target->host,
                    r->target->port, resp.error ? resp.error : "?", r->id_str);
            target_result(r, r->target, 0);
            fail(r, 502, "An invalid response was received from the upstream server");
            return;
        }
        /* rbuf holds this head until the response is done: the body goes to the input */
        if (direct) { gw_io_direct_take(io, (size_t)rc); gw_io_read_into(io, NULL, 0); direct = 0; }
        else evbuffer_drain(in, rc);
        if (resp.status == 101) {
            /* gw never forwards Upgrade, so a switch was never asked for */
            gw_warn("upstream %s:%d switched protocols unasked (101), request %s", r->target->host,
                    r->target->port, r->id_str);
            target_result(r, r->target, 0);
            fail(r, 502, "An invalid response was received from the upstream server");
            return;
        }
        if (resp.status >= 100 && resp.status < 200) continue; /* interim */
        target_result(r, r->target, 1);
        r->status = resp.status;
        r->nrhdrs = pend + resp.nheaders;
        for (int i = 0; i < pend; i++) {
            int j = pend;
            for (int k = pend; k < r->nrhdrs; k++)
                if (!gw_str_ieq_n(r->rhdrs[k].name, r->rhdrs[i].name)) r->rhdrs[j++] = r->rhdrs[k];
            r->nrhdrs = j;
        }
        int head = r->h.method.n == 4 && memcmp(r->h.method.p, "HEAD", 4) == 0;
        u->no_body = head || resp.status == 204 || resp.status == 304 || resp.status < 200;
        u->resp_cl = resp.content_length;
        u->keepalive = resp.keepalive;
        /* framing on a response that has no body (RFC 9112 6.3): whatever follows is not to be
         * read as the next response, so the connection is not reused */
        if ((resp.status == 204 && (resp.chunked || resp.content_length > 0)) ||
            (resp.status == 304 && resp.chunked))
            u->keepalive = 0;
        if (u->no_body) r->resp_left = 0;
        else if (resp.chunked) { r->resp_left = -1; gw_chunked_init(&r->rchunk); }
        else if (resp.content_length >= 0) r->resp_left = resp.content_length;
        else { r->resp_left = -2; u->keepalive = 0; }
        /* the response head is copied: the rbuf slices stay valid, the next read will not reuse
         * rbuf until this response is done. Reading stays enabled: a header_filter that
         * suspends leaves the state off GW_RS_UPSTREAM, so body bytes arriving meanwhile only
         * disable reading (above); disabling it here would cost two epoll_ctl per response. */
        gw_api_response_ready(r);
        return;
    }
}

void gw_proxy_head_filtered(gw_req *r)
{
    gw_upconn *u = r->up;
    r->state = GW_RS_UPSTREAM;
    int64_t len;
    /* a HEAD answer keeps the GET's Content-Length when the upstream gave one; a chunked or
     * close-delimited resource gets no framing header rather than a made-up "0" */
    if (u->no_body) len = u->resp_cl;
    else len = r->resp_left >= 0 ? r->resp_left : -1;
    if (!u->no_body && gw_api_wants_body_filter(r)) {
        /* a body_filter plugin sees the whole body: gather it, the head goes out after */
        r->resp_buffering = 1;
        if (!r->lbody) r->lbody = evbuffer_new();
        gw_io_enable(u->io, EV_READ);
        pump_response(r);
        return;
    }
    /* an answer before the whole request body (an early 401/413, with or without Expect): the
     * rest of the body is not read as a request, the connection closes after, and says so */
    if (!r->body_done) r->resp_close = 1;
    gw_req_write_head(r, len, u->no_body);
    gw_io_set_write_lowat(r->c->io, HIGH_WATER / 2);
    gw_io_enable(u->io, EV_READ);
    pump_response(r);
}

static void response_finished(gw_req *r)
{
    r->up_end_us = gw_now_us();
    gw_upconn *u = r->up;
    r->up = NULL;
    struct evbuffer *in = gw_io_input(u->io);
    if (u->keepalive && r->body_done && evbuffer_get_length(in) == 0 &&
        evbuffer_get_length(gw_io_output(u->io)) == 0)
        pool_put(r, u);
    else
        up_free(u);
    if (!r->body_done) r->resp_close = 1;
    gw_io_set_write_lowat(r->c->io, 0);
    if (r->resp_buffering) { gw_api_run_body_filter(r); return; }
    gw_req_response_done(r);
}

static void pump_response(gw_req *r)
{
    gw_upconn *u = r->up;
    if (!u) return;
    struct evbuffer *in = gw_io_input(u->io);
    struct evbuffer *out = r->resp_buffering ? r->lbody : gw_io_output(r->c->io);
    int chunk_out = r->resp_buffering ? 0 : r->resp_chunked_out;
    if (r->resp_left > 0) {
        size_t n = evbuffer_get_length(in);
        if ((int64_t)n > r->resp_left) n = (size_t)r->resp_left;
        if (n) { evbuffer_remove_buffer(in, out, n); r->resp_left -= (int64_t)n; r->bytes_sent += (int64_t)n; }
    } else if (r->resp_left == -2) {
        size_t n = evbuffer_get_length(in);
        if (n) {
            gw_move_data(in, out, n, chunk_out);
            r->bytes_sent += (int64_t)n;
        }
    } else if (r->resp_left == -1) {
        for (;;) {
            size_t consumed = 0, dlen = 0;
            int rc = gw_chunked_step_ev(&r->rchunk, in, &consumed, &dlen);
            if (rc == GW_CHUNK_AGAIN) break;
            if (rc == GW_CHUNK_DATA) {
                gw_move_data(in, out, dlen, chunk_out);
                r->bytes_sent += (int64_t)dlen;
            } else if (rc == GW_CHUNK_MORE) {
                evbuffer_drain(in, consumed);
            } else if (rc == GW_CHUNK_DONE) {
                evbuffer_drain(in, consumed);
                r->resp_left = 0;
                break;
            } else {
                gw_warn("upstream sent an invalid chunked body (%s), request %s",
                        r->rchunk.error ? r->rchunk.error : "?", r->id_str);
                /* the head may not be out yet (body_filter gathers first): then a 502 */
                if (r->resp_buffering) {
                    r->resp_buffering = 0;
                    evbuffer_drain(r->lbody, evbuffer_get_length(r->lbody));
                }
                fail(r, 502, "An invalid response was received from the upstream server");
                return;
            }
        }
    }
    if (r->resp_buffering) {
        /* gathered for body_filter: bounded like a request body */
        int64_t max = r->gen->max_body_size;
        if (max > 0 && (int64_t)evbuffer_get_length(out) > max) {
            gw_warn("response body over %lld bytes cannot go through body_filter, request %s", (long long)max, r->id_str);
            r->resp_buffering = 0;
            evbuffer_drain(r->lbody, evbuffer_get_length(r->lbody));
            fail(r, 502, "upstream response too large for body_filter");
            return;
        }
    }
    if (r->resp_left == 0) {
        if (chunk_out) evbuffer_add(out, "0\r\n\r\n", 5);
        response_finished(r);
        return;
    }
    if (r->resp_buffering) return;
    if (evbuffer_get_length(out) > HIGH_WATER) gw_io_disable(u->io, EV_READ);
}

void gw_proxy_client_drained(gw_req *r)
{
    if (r->up && r->head_sent) {
        gw_io_enable(r->up->io, EV_READ);
        pump_response(r);
    }
}
