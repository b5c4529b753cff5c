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
#include <event2/event_struct.h>
#include <malloc.h>
#include <sys/mman.h>
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

static void conn_read_cb(gw_io *io, void *arg);
static void conn_write_cb(gw_io *io, void *arg);
static void conn_event_cb(gw_io *io, short what, void *arg);
static void req_start(gw_conn *c);
static void req_finish(gw_req *r);
static void iq_push(gw_conn *c);
static gw_conn *conn_open(gw_worker *w, int fd, const struct sockaddr *sa, int local_port, int tls,
                          uint64_t head_deadline);
static void conn_gone(gw_worker *w, int fd);
static void iq_remove(gw_conn *c);
static void idle_record(gw_worker *w, int fd, unsigned nreq, int draining, int ms);
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
    if (!add) {
        for (int i = 0; i < *n; i++) {
            if (!name_eq(arr[i].name, name, nl)) continue;
            char *v = gw_req_strdup(r, val, vl);
            if (!v) return -1;
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
    return gw_req_append_header(r, arr, n, nm, nl, val, vl);
}

int gw_req_append_header(gw_req *r, gw_header *arr, int *n, const char *name, size_t nl,
                         const char *val, size_t vl)
{
    if (*n >= r->c->hdr_cap) return -1;
    char *v = gw_req_strdup(r, val, vl);
    if (!v) return -1;
    arr[*n].name.p = name;
    arr[*n].name.n = nl;
    arr[*n].value.p = v;
    arr[*n].value.n = vl;
    (*n)++;
    return 0;
}

/* ---- connection lifecycle ------------------------------------------------------------- */

static int nspare;               /* gw_conns on w->free_conns */
static int nfreed;               /* gw_conns unmapped since the last malloc_trim (their evbuffers
                                  * went back to malloc) */
#define MAX_SPARE_CONNS 32

/* A gw_conn and its head buffers and header arrays are one anonymous mapping: pages a request
 * never touches cost nothing, and unmapping gives everything back at once — malloc'd, these
 * 100 KB per connection would leave the heap fragmented by the small long-lived allocations made
 * between them (libevent's per-descriptor records, idle records). */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GW_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(GW_ASAN)
#include <sanitizer/lsan_interface.h>
/* LeakSanitizer scans the heap, globals and stacks, not anonymous mappings: the evbuffers a
 * gw_conn points to (its body buffers) would look leaked. Its mapping is a root region. */
#define LSAN_ROOT(m, n) __lsan_register_root_region(m, n)
#define LSAN_UNROOT(m, n) __lsan_unregister_root_region(m, n)
#else
#define LSAN_ROOT(m, n) ((void)0)
#define LSAN_UNROOT(m, n) ((void)0)
#endif

static gw_conn *conn_alloc(size_t need, int cap)
{
    size_t base = (sizeof(gw_conn) + 63) & ~(size_t)63;
    size_t hsz = ((need + 63) & ~(size_t)63);
    size_t size = base + 2 * hsz + 2 * sizeof(gw_header) * (size_t)cap;
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    gw_conn *c = m;   /* zero-filled */
    LSAN_ROOT(m, size);
    c->map_size = size;
    c->hbuf = (char *)m + base;
    c->rbuf = c->hbuf + hsz;
    c->hcap = need;
    c->req.hdrs = (gw_header *)(c->rbuf + hsz);
    c->req.rhdrs = c->req.hdrs + cap;
    c->hdr_cap = cap;
    return c;
}

static void conn_unmap(gw_conn *c)
{
    if (c->req.body) evbuffer_free(c->req.body);
    if (c->req.lbody) evbuffer_free(c->req.lbody);
    if (c->hs_ev) event_free(c->hs_ev);
    LSAN_UNROOT(c, c->map_size);
    munmap(c, c->map_size);
}

/* A gw_conn back to the free list, or (past MAX_SPARE_CONNS: a burst of connections is over)
 * unmapped, so memory follows the number of busy connections. */
static void conn_release(gw_worker *w, gw_conn *c)
{
    if (nspare >= MAX_SPARE_CONNS) {
        conn_unmap(c);
        nfreed++;
        return;
    }
    c->next_free = w->free_conns;
    w->free_conns = c;
    nspare++;
}

static void handshake_timeout_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    gw_conn_close(arg);
}

void gw_conn_accept(gw_worker *w, int fd, struct sockaddr *sa, int salen, int local_port, int tls)
{
    (void)salen;
    if (w->stats) { w->stats->connections++; w->stats->accepted++; }
    w->nconns++;
    if (!tls) {
        /* a plain connection starts as an idle record: its gw_conn is taken when a byte arrives */
        (void)sa; (void)local_port;   /* read back with getpeername/getsockname on waking */
        idle_record(w, fd, 0, 0, w->gen->client_header_timeout);
        return;
    }
    conn_open(w, fd, sa, local_port, tls, 0);
}

/* A gw_conn for an accepted socket (from accept on TLS listeners, from an idle record's first
 * readable byte on plain ones); NULL when out of memory (the socket is closed). */
static gw_conn *conn_open(gw_worker *w, int fd, const struct sockaddr *sa, int local_port, int tls,
                          uint64_t head_deadline)
{
    gw_gen *g = w->gen;
    size_t need = g->limits.max_header_size + g->limits.max_request_line;
    int cap = g->limits.max_headers + 64;
    gw_conn *c = w->free_conns;
    if (c) { w->free_conns = c->next_free; nspare--; }
    if (c && (c->hcap < need || c->hdr_cap < cap)) { conn_unmap(c); c = NULL; }  /* limits grew */
    if (!c) c = conn_alloc(need, cap);
    if (!c) {
        gw_err("out of memory accepting a connection");
        conn_gone(w, fd);
        return NULL;
    }
    c->w = w;
    c->fd = fd;
    c->nreq = 0;
    c->closing = 0;
    c->draining = 0;
    c->paused = 0;
    c->local_port = local_port;
    c->in_iq = 0;
    c->peer_port = 0;
    c->peer_ip[0] = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, c->peer_ip, sizeof c->peer_ip);
        c->peer_port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, c->peer_ip, sizeof c->peer_ip);
        c->peer_port = ntohs(in6->sin6_port);
    }
    if (tls) {
        /* plain sockets got TCP_NODELAY when they became idle records */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    c->ssl = NULL;
    /* the first request head, TLS handshake included, is due client_header ms after accept
     * (an idle record woken by its first bytes passes the deadline it kept) */
    c->head_deadline = head_deadline ? head_deadline : gw_now_ms() + (uint64_t)g->client_header_timeout;
    c->io = NULL;
    if (tls) {
        SSL *ssl = gw_tls_accept(g, c);
        struct bufferevent *bev = ssl ? bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                                        BEV_OPT_CLOSE_ON_FREE) : NULL;
        if (bev) {
            c->ssl = ssl;
            /* a client that closes without close_notify still ends the stream cleanly */
            bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
            c->io = gw_io_tls(bev);
            /* out of memory: the socket is closed below */
            if (!c->io) { bufferevent_setfd(bev, -1); bufferevent_free(bev); c->ssl = NULL; }
        } else if (ssl) {
            SSL_free(ssl);
        }
    } else {
        c->io = gw_io_socket(w->base, fd);
    }
    if (!c->io) { conn_gone(w, fd); conn_release(w, c); return NULL; }
    gw_io_setcb(c->io, conn_read_cb, conn_write_cb, conn_event_cb, c);
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
    memset(&c->req.h, 0, sizeof c->req.h);
    c->req.c = c;
    c->req.state = GW_RS_IDLE;
    req_start(c);
    return c;
}

/* ---- idle connections ------------------------------------------------------------------
 * A plain-HTTP connection waiting for a request holds no request state. From accept, and once
 * it has waited IDLE_SHRINK_MS after a response, it is only an idle record: its socket, one
 * struct event (readable, or the client_header / keep-alive deadline), the peer's address —
 * under 200 bytes. Its gw_conn (request, arena, head buffers, bufferevent) goes back to the free
 * list and is taken again when a byte arrives. Busy connections never shrink: per request the
 * hot path only links the connection into the idle queue (ordered by idle time) and unlinks it;
 * one timer a second shrinks those at its head. TLS connections keep their gw_conn (the SSL
 * state lives in the bufferevent). */
#define IDLE_SHRINK_MS 1000
/* At most this many idle connections keep their gw_conn: past it the oldest shrinks at once,
 * so thousands of connections going quiet together never hold thousands of request buffers
 * (nor leave the heap fragmented by them). */
#define MAX_IDLE_FULL 512

typedef struct idle_rec {
    union {
        struct event ev;         /* its fd is the socket's; the peer address comes back from
                                  * getpeername/getsockname when the connection wakes */
        struct idle_rec *next_free;   /* while unused */
    } u;
    unsigned nreq;
    uint32_t due;                /* no request yet: the low 32 bits of the first head's deadline (ms) */
    unsigned char draining, used;
} idle_rec;                      /* 144 bytes */

#define SLAB_RECS 64
static idle_rec **slabs;             /* records come in slabs, never returned: no malloc header
                                      * per record, no interleaving with request memory; the
                                      * records in use are found by walking them (drain) */
static int nslabs;
static idle_rec *idle_free;          /* unused records */
static gw_conn *iq_head, *iq_tail;   /* connections waiting for a request, oldest first */
static int iq_len;
static struct event *iq_timer;

/* A socket that never became (or no longer is) a connection: close and uncount it. */
static void conn_gone(gw_worker *w, int fd)
{
    close(fd);
    w->nconns--;
    if (w->stats) w->stats->connections--;
    gw_worker_maybe_exit();
}

static idle_rec *rec_get(void)
{
    if (!idle_free) {
        idle_rec **ns = realloc(slabs, sizeof *slabs * (size_t)(nslabs + 1));
        if (!ns) return NULL;
        slabs = ns;
        idle_rec *slab = calloc(SLAB_RECS, sizeof *slab);
        if (!slab) return NULL;
        slabs[nslabs++] = slab;
        for (int i = SLAB_RECS - 1; i >= 0; i--) { slab[i].u.next_free = idle_free; idle_free = &slab[i]; }
    }
    idle_rec *d = idle_free;
    idle_free = d->u.next_free;
    return d;
}

/* The record is done with (its event is not pending: fired, or deleted). */
static void rec_unlink(idle_rec *d)
{
    d->used = 0;
    d->u.next_free = idle_free;
    idle_free = d;
}

static void idle_wake(evutil_socket_t fd, short what, void *arg)
{
    idle_rec *d = arg;
    gw_worker *w = gw_W;
    unsigned nreq = d->nreq;
    int draining = d->draining;
    uint64_t now = gw_now_ms();
    int32_t left = (int32_t)(d->due - (uint32_t)now);
    uint64_t head_deadline = now + (uint64_t)(left > 1 ? left : 1);
    rec_unlink(d);
    struct sockaddr_storage peer, local;
    socklen_t pl = sizeof peer, ll = sizeof local;
    if ((what & EV_TIMEOUT) || getpeername(fd, (struct sockaddr *)&peer, &pl) != 0 ||
        getsockname(fd, (struct sockaddr *)&local, &ll) != 0) {
        /* keep-alive (or client_header, before a first byte) timeout, or the peer is gone */
        conn_gone(w, fd);
        return;
    }
    int local_port = local.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&local)->sin6_port)
                                                 : ntohs(((struct sockaddr_in *)&local)->sin_port);
    /* the first head is due client_header ms after accept; a later one, from its first byte */
    gw_conn *c = conn_open(w, fd, (struct sockaddr *)&peer, local_port, 0, head_deadline);
    if (!c) return;
    c->nreq = nreq;
    c->draining = draining;
    if (nreq) c->head_deadline = 0;
    /* the bytes wait in the socket: the stream's read event (registered when it was made)
     * reports them on the loop's next poll */
}

static void idle_record(gw_worker *w, int fd, unsigned nreq, int draining, int ms)
{
    idle_rec *d = rec_get();
    if (!d) { conn_gone(w, fd); return; }
    if (nreq == 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    d->nreq = nreq;
    d->draining = (unsigned char)draining;
    d->used = 1;
    if (ms < 1) ms = 1;
    d->due = (uint32_t)(gw_now_ms() + (uint64_t)ms);
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    event_assign(&d->u.ev, w->base, fd, EV_READ, idle_wake, d);
    event_add(&d->u.ev, &tv);
}

/* Links c (not in the queue) at the queue's tail. */
static void iq_link_tail(gw_conn *c)
{
    c->in_iq = 1;
    c->iq_next = NULL;
    c->iq_prev = iq_tail;
    if (iq_tail) iq_tail->iq_next = c; else iq_head = c;
    iq_tail = c;
    iq_len++;
}

static void iq_remove(gw_conn *c)
{
    if (!c->in_iq) return;
    if (c->iq_prev) c->iq_prev->iq_next = c->iq_next; else iq_head = c->iq_next;
    if (c->iq_next) c->iq_next->iq_prev = c->iq_prev; else iq_tail = c->iq_prev;
    c->iq_prev = c->iq_next = NULL;
    c->in_iq = 0;
    iq_len--;
}

/* Quiet: waiting for a request with nothing buffered either way (a response may still drain). */
static int conn_quiet(gw_conn *c)
{
    return c->req.state == GW_RS_IDLE && !c->paused && !c->closing && !c->log_pending && c->io &&
           evbuffer_get_length(gw_io_input(c->io)) == 0 &&
           evbuffer_get_length(gw_io_output(c->io)) == 0;
}

/* Shrinks an idle connection to a record; it stays open and counted. */
static void conn_shrink(gw_conn *c)
{
    gw_worker *w = c->w;
    gw_gen *g = w->gen;
    int ka = c->nreq ? g->keepalive_timeout : g->client_header_timeout;
    int64_t left = (int64_t)c->idle_since + ka - (int64_t)gw_now_ms();
    int fd = c->fd;
    iq_remove(c);
    /* the socket outlives the stream */
    gw_io_free_keep_fd(c->io);
    c->io = NULL;
    if (c->prev_live) c->prev_live->next_live = c->next_live;
    else w->live = c->next_live;
    if (c->next_live) c->next_live->prev_live = c->prev_live;
    idle_record(w, fd, c->nreq, c->draining, left > 0 ? (int)left : 1);
    conn_release(w, c);
}

static void iq_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
    uint64_t now = gw_now_ms();
    while (iq_head && iq_head->idle_since + IDLE_SHRINK_MS <= now) {
        gw_conn *c = iq_head;
        if (!conn_quiet(c)) {
            /* not quiet after all (a response still draining): look again later */
            iq_remove(c);
            if (c->req.state == GW_RS_IDLE && c->io) iq_push(c);
            if (iq_head == c) break;
            continue;
        }
        conn_shrink(c);
    }
    /* a burst of connections went quiet: hand the freed request memory back to the system */
    if (nfreed >= MAX_SPARE_CONNS) { gw_io_mem_trim(); malloc_trim(0); nfreed = 0; }
}

static void iq_push(gw_conn *c)
{
    if (c->in_iq) iq_remove(c);
    if (!iq_timer) {
        iq_timer = event_new(c->w->base, -1, EV_PERSIST, iq_tick, NULL);
        struct timeval tv = { IDLE_SHRINK_MS / 1000, (IDLE_SHRINK_MS % 1000) * 1000 };
        if (iq_timer) event_add(iq_timer, &tv);
    }
    c->idle_since = gw_now_ms();
    iq_link_tail(c);
    for (int k = 0; k < 4 && iq_len > MAX_IDLE_FULL && iq_head != c; k++) {
        gw_conn *old = iq_head;
        if (conn_quiet(old)) { conn_shrink(old); continue; }
        /* its response is still draining: to the back of the queue */
        iq_remove(old);
        iq_link_tail(old);
    }
}

/* Draining: idle records are closed (their next request would get Connection: close anyway). */
void gw_conn_close_idle(gw_worker *w)
{
    for (int i = 0; i < nslabs; i++) {
        for (int k = 0; k < SLAB_RECS; k++) {
            idle_rec *d = &slabs[i][k];
            if (!d->used) continue;
            int fd = event_get_fd(&d->u.ev);
            event_del(&d->u.ev);
            rec_unlink(d);
            conn_gone(w, fd);
        }
    }
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
            if (c->io) { gw_io_free(c->io); c->io = NULL; c->ssl = NULL; }
            c->log_pending = 1;
            if (gw_api_run_log_aborted(r)) return;   /* finishes in gw_req_complete */
            c->log_pending = 0;
        }
        gw_api_req_cleanup(r);
        req_finish(r);
    }
    r->state = GW_RS_IDLE;
    iq_remove(c);
    if (c->hs_ev) evtimer_del(c->hs_ev);
    if (c->io) { gw_io_free(c->io); c->io = NULL; }
    c->ssl = NULL;
    if (c->prev_live) c->prev_live->next_live = c->next_live;
    else w->live = c->next_live;
    if (c->next_live) c->next_live->prev_live = c->prev_live;
    w->nconns--;
    if (w->stats) w->stats->connections--;
    conn_release(w, c);
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
    struct evbuffer *in = gw_io_input(c->io);
    /* TLS: close_notify first, so the client knows the response was not cut */
    gw_tls_close_notify(c);
    if (c->req.body_done && pending == 0 && evbuffer_get_length(in) == 0) { gw_conn_close(c); return; }
    if (shutdown(c->fd, SHUT_WR) != 0) { gw_conn_close(c); return; }
    evbuffer_drain(in, evbuffer_get_length(in));
    c->req.state = GW_RS_LINGER;
    c->linger_until = gw_now_ms() + LINGER_TIME_MS;
    gw_io_set_timeouts(c->io, LINGER_TIMEOUT_MS, 0);
    gw_io_disable(c->io, EV_WRITE);
    gw_io_enable(c->io, EV_READ);
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
    int pipelined = evbuffer_get_length(gw_io_input(c->io)) > 0;
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
    gw_io_set_write_lowat(c->io, 0);
    /* the next head is read straight into hbuf when nothing of it is buffered yet */
    gw_io_read_into(c->io, c->hbuf, c->hcap);
    if ((gw_io_get_enabled(c->io) & (EV_READ | EV_WRITE)) != (EV_READ | EV_WRITE)) gw_io_enable(c->io, EV_READ | EV_WRITE);
    /* A pipelined request already buffered is taken up from the event loop, not from here:
     * answering it may complete synchronously and land here again, and thousands of pipelined
     * requests must not become thousands of nested calls. */
    if (pipelined)
        gw_io_trigger_read(c->io);
    else if (!c->ssl && !c->test)
        iq_push(c);   /* waits for a request: shrinks if it stays quiet (idle records, above) */
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
    struct evbuffer *out = gw_io_output(c->io);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                        "Connection: close\r\nServer: gw\r\n\r\n%s", status, status_text(status), bl, body);
    c->closing = 1;
    c->req.state = GW_RS_FLUSH;
    gw_io_disable(c->io, EV_READ);
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

/* "<pid hex>-<counter hex>" (the worker's pid read once: it is a system call) */
static void req_id_str(gw_req *r)
{
    static unsigned pid;   /* 0 in every freshly forked worker: the master serves no request */
    if (!pid) pid = (unsigned)getpid();
    static const char hex[] = "0123456789abcdef";
    char tmp[32];
    int n = 0, k = 0;
    unsigned p = pid;
    do { tmp[n++] = hex[p & 15]; p >>= 4; } while (p);
    while (n) r->id_str[k++] = tmp[--n];
    r->id_str[k++] = '-';
    unsigned long long id = r->id;
    do { tmp[n++] = hex[id & 15]; id >>= 4; } while (id);
    while (n) r->id_str[k++] = tmp[--n];
    r->id_str[k] = 0;
}

/* Sets the client read timeout (ms; 0: none) and the send timeout. */
static void set_read_timeout(gw_conn *c, int64_t ms)
{
    gw_io_set_timeouts(c->io, ms > 0 ? (int)ms : 0, c->w->gen->send_timeout);
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
    if (!c->io) return;
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

/* Returns 1 when the head is not complete yet (nothing answered), else 0. direct: the bytes
 * were read straight into hbuf (gw_io_read_into), an incomplete head is left to the caller. */
static int process_head(gw_conn *c, size_t avail, int direct)
{
    gw_req *r = &c->req;
    gw_worker *w = c->w;
    gw_gen *g = w->gen;
    size_t cap = c->hcap;
    size_t n = avail < cap ? avail : cap;
    if (!direct) evbuffer_copyout(gw_io_input(c->io), c->hbuf, n);
    int rc = gw_http_parse_request(c->hbuf, n, &r->h, r->hdrs, g->limits.max_headers, &g->limits);
    if (rc == GW_HTTP_AGAIN) {
        if (n < cap || direct) return 1;
        bad_request(c, 431, "Request header fields too large");
        return 0;
    }
    if (rc < 0) {
        bad_request(c, r->h.status ? r->h.status : 400, r->h.error);
        return 0;
    }
    if (direct) gw_io_direct_take(c->io, (size_t)rc);
    else evbuffer_drain(gw_io_input(c->io), rc);
    /* hbuf holds this request's head until it is done: the next reads go to the input (and
     * what followed the head, a body or a pipelined request, moves there now) */
    gw_io_read_into(c->io, NULL, 0);
    r->head_len = rc;
    c->nreq++;
    r->start_ms = gw_now_ms();
    r->start_us = gw_now_us();
    r->id = ++w->next_req_id;
    req_id_str(r);
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

static void conn_read_cb(gw_io *io, void *arg)
{
    gw_conn *c = arg;
    gw_req *r = &c->req;
    struct evbuffer *in;
    switch (r->state) {
    case GW_RS_IDLE: {
        /* the usual case: a whole head read straight into hbuf (req_start), parsed in place */
        size_t dn = gw_io_direct_len(io);
        if (dn && c->hbuf[0] != '\r' && evbuffer_get_length(gw_io_output(io)) <= HIGH_WATER) {
            iq_remove(c);
            if (!process_head(c, dn, 1)) return;
            /* incomplete: it continues from the input like any other */
        }
        in = gw_io_input(io);
        size_t avail = evbuffer_get_length(in);
        if (avail == 0) return;
        iq_remove(c);
        if (evbuffer_get_length(gw_io_output(io)) > HIGH_WATER) {
            /* the client pipelines without reading the answers: take no new request until
             * they drain, or gw would hold every response in memory (conn_write_cb resumes) */
            c->paused = 1;
            gw_io_disable(io, EV_READ);
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
        if (avail && !process_head(c, avail, 0)) return;
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
        in = gw_io_input(io);
        evbuffer_drain(in, evbuffer_get_length(in));
        if (gw_now_ms() >= c->linger_until) gw_conn_close(c);
        return;
    default:
        /* Lua running or flushing: leave pipelined bytes in the buffer, but do not buffer
         * without bound. */
        if (evbuffer_get_length(gw_io_input(io)) > HIGH_WATER) gw_io_disable(io, EV_READ);
        return;
    }
}

static void conn_write_cb(gw_io *io, void *arg)
{
    gw_conn *c = arg;
    gw_req *r = &c->req;
    (void)io;
    if (r->state == GW_RS_UPSTREAM) { gw_proxy_client_drained(r); return; }
    if (r->state == GW_RS_IDLE && c->paused) {
        c->paused = 0;
        gw_io_enable(c->io, EV_READ);
        conn_read_cb(c->io, c);
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
    if (evbuffer_get_length(gw_io_input(c->io)) && !c->closing) {
        bad_request(c, 408, "Request timeout");
        return;
    }
    gw_conn_close(c);
}

static void conn_event_cb(gw_io *io, short what, void *arg)
{
    gw_conn *c = arg;
    gw_req *r = &c->req;
    (void)io;
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

/* Response fields gw never forwards: hop-by-hop ones and the framing it writes itself. By length
 * first: most names have a length no such field has, and are passed with one switch. */
static int hop_by_hop(gw_str n)
{
    switch (n.n) {
    case 2: return name_eq(n, "te", 2);
    case 7: return name_eq(n, "trailer", 7) || name_eq(n, "upgrade", 7);
    case 10: return name_eq(n, "connection", 10) || name_eq(n, "keep-alive", 10);
    case 14: return name_eq(n, "content-length", 14);
    case 16: return name_eq(n, "proxy-connection", 16);
    case 17: return name_eq(n, "transfer-encoding", 17);
    default: return 0;
    }
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
    struct evbuffer *out = gw_io_output(c->io);
    if (c->w->draining || c->draining) r->resp_close = 1;
    if (body_len < 0 && !no_body) {
        if (r->h.version >= 11) r->resp_chunked_out = 1;
        else r->resp_close = 1;
    }
    size_t head_start = evbuffer_get_length(out);
    gw_hb hb;
    hb.out = out;
    hb.n = 0;
    gw_hb_add(&hb, "HTTP/1.1 ", 9);
    gw_hb_num(&hb, r->status);
    gw_hb_add(&hb, " ", 1);
    gw_hb_str(&hb, status_text(r->status));
    gw_hb_add(&hb, "\r\n", 2);
    /* A Connection header naming other fields is rare (the usual one says only keep-alive or
     * close, fields gw drops anyway): looked for once per head, not once per field. */
    int listed = 0;
    for (int i = 0; i < r->nrhdrs && !listed; i++) {
        if (!name_eq(r->rhdrs[i].name, "connection", 10)) continue;
        size_t pos = 0;
        gw_str el;
        while (!listed && gw_http_list_next(r->rhdrs[i].value, &pos, &el))
            listed = !gw_str_ieq(el, "keep-alive") && !gw_str_ieq(el, "close");
    }
    for (int i = 0; i < r->nrhdrs; i++) {
        gw_header *h = &r->rhdrs[i];
        if (hop_by_hop(h->name) || (listed && connection_listed(r, h->name))) continue;
        gw_hb_field(&hb, h->name, h->value);
    }
    if (body_len >= 0) {
        if (r->status != 204 && r->status != 304 && r->status >= 200) {
            gw_hb_add(&hb, "Content-Length: ", 16);
            gw_hb_num(&hb, (long long)body_len);
            gw_hb_add(&hb, "\r\n", 2);
        }
    } else if (r->resp_chunked_out) {
        gw_hb_add(&hb, "Transfer-Encoding: chunked\r\n", 28);
    }
    /* 426 to a plain request on an https-only route (RFC 9110 15.5.22) */
    if (r->tls_upgrade) gw_hb_add(&hb, "Upgrade: TLS/1.2, HTTP/1.1\r\nConnection: Upgrade\r\n", 49);
    if (r->resp_close) gw_hb_add(&hb, "Connection: close\r\n\r\n", 21);
    else if (r->h.version < 11) gw_hb_add(&hb, "Connection: keep-alive\r\n\r\n", 26);
    else gw_hb_add(&hb, "\r\n", 2);
    gw_hb_flush(&hb);
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
    struct evbuffer *out = gw_io_output(r->c->io);
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
    if (r->c->ssl && r->c->io) {
        struct evbuffer *out = gw_io_output(r->c->io);
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
        gw_io_disable(c->io, EV_READ);
        if (evbuffer_get_length(gw_io_output(c->io)) == 0) conn_close_when_sent(c);
        return;
    }
    req_start(c);
}
