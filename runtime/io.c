/* io.c — gw's buffered socket streams (see io.h for what they are and why). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <event2/event_struct.h>
#include <event2/bufferevent_ssl.h>
#include "gw.h"
#include "io.h"

/* Bytes asked of the socket per read. */
#define READ_SIZE 65536

struct gw_io {
    struct bufferevent *bev;     /* TLS: every call goes to it */
    int fd;
    short enabled;               /* EV_READ / EV_WRITE, as the owner set them */
    unsigned char rd_ready;      /* the socket may hold unread bytes (an edge came, no short read since) */
    unsigned char rd_closed;     /* the peer's FIN (or an error) was reported: read until told so */
    unsigned char trig;          /* gw_io_trigger_read: run the read callback even when nothing is read */
    unsigned char wr_armed;      /* the write event is on: the socket did not take all the output */
    unsigned char connecting;
    unsigned char in_fl;         /* on the flush list */
    int conn_err;                /* connect() failed at once: reported from the loop */
    int busy;                    /* inside the read callback: a free waits until it returns */
    unsigned char dead;          /* freed while busy */
    char *dbuf;                  /* gw_io_read_into: reads while the input is empty land here */
    size_t dcap, dlen, dused;    /* its size, bytes read into it, bytes the owner took */
    int rd_tmo, wr_tmo;          /* ms; 0: none */
    uint64_t rd_since, wr_since; /* the read / write timeout counts from then (ms) */
    uint64_t t_due;              /* the timer is armed for then (ms); 0: not armed */
    size_t wlowat;
    struct evbuffer *in, *out;
    gw_io_data_cb rd, wr;
    gw_io_event_cb ev;
    void *arg;
    gw_io *fl_prev, *fl_next;
    struct event_base *base;
    struct event rev, wev, tev;
};

static void io_read_ev(evutil_socket_t fd, short what, void *arg);
static void io_write_ev(evutil_socket_t fd, short what, void *arg);
static void io_timer_ev(evutil_socket_t fd, short what, void *arg);
static void io_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg);

/* ---- the flush list: streams with output to write once this loop pass's callbacks are done -- */

static gw_io *fl_head, *fl_tail;     /* in the order their output came: the first answered goes first */
static struct event *fl_ev;
static int fl_active;            /* fl_ev is active: it runs this pass */

static void fl_unlink(gw_io *io)
{
    if (!io->in_fl) return;
    if (io->fl_prev) io->fl_prev->fl_next = io->fl_next; else fl_head = io->fl_next;
    if (io->fl_next) io->fl_next->fl_prev = io->fl_prev; else fl_tail = io->fl_prev;
    io->fl_prev = io->fl_next = NULL;
    io->in_fl = 0;
}

static void io_write(gw_io *io);

static void fl_run(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
    fl_active = 0;
    while (fl_head) {
        gw_io *io = fl_head;
        fl_unlink(io);
        io_write(io);
    }
}

static void fl_push(gw_io *io)
{
    if (io->in_fl) return;
    if (!fl_ev) {
        fl_ev = event_new(io->base, -1, 0, fl_run, NULL);
        if (!fl_ev) { io_write(io); return; }
    }
    io->in_fl = 1;
    io->fl_next = NULL;
    io->fl_prev = fl_tail;
    if (fl_tail) fl_tail->fl_next = io; else fl_head = io;
    fl_tail = io;
    if (!fl_active) { fl_active = 1; event_active(fl_ev, EV_WRITE, 0); }
}

/* ---- timers ------------------------------------------------------------------------------ */

static uint64_t io_due(const gw_io *io)
{
    uint64_t d = 0;
    if (io->rd_tmo && (io->enabled & EV_READ)) d = io->rd_since + (uint64_t)io->rd_tmo;
    if (io->wr_tmo && (io->wr_armed || io->connecting)) {
        uint64_t w = io->wr_since + (uint64_t)io->wr_tmo;
        if (!d || w < d) d = w;
    }
    return d;
}

static void io_timer_arm(gw_io *io, uint64_t due)
{
    uint64_t now = gw_now_ms();
    uint64_t ms = due > now ? due - now : 0;
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };
    event_add(&io->tev, &tv);
    io->t_due = due;
}

/* A deadline may have moved earlier than the armed timer: re-arm. A later one leaves the timer
 * as it is (it re-arms itself when it fires early), so the usual case costs no heap operation. */
static void io_timer_update(gw_io *io)
{
    uint64_t d = io_due(io);
    if (!d || (io->t_due && io->t_due <= d)) return;
    io_timer_arm(io, d);
}

static void io_timer_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    gw_io *io = arg;
    io->t_due = 0;
    uint64_t now = gw_now_ms();
    short dir = 0;
    if (io->rd_tmo && (io->enabled & EV_READ) && now >= io->rd_since + (uint64_t)io->rd_tmo)
        dir = BEV_EVENT_READING;
    else if (io->wr_tmo && (io->wr_armed || io->connecting) && now >= io->wr_since + (uint64_t)io->wr_tmo)
        dir = BEV_EVENT_WRITING;
    if (!dir) { io_timer_update(io); return; }
    gw_io_disable(io, dir == BEV_EVENT_READING ? EV_READ : EV_WRITE);
    if (io->ev) io->ev(io, (short)(dir | BEV_EVENT_TIMEOUT), io->arg);
}

/* ---- reading ----------------------------------------------------------------------------- */

/* Reads go through one per-process buffer and are appended to the input at their size: reading
 * straight into the input would make it allocate a READ_SIZE chain per read (most reads are a
 * few hundred bytes) and free it when the request has consumed it. */
static char rd_scratch[READ_SIZE];

static void io_release(gw_io *io, int close_fd);

/* Direct bytes the owner did not take go to the input (copied: the direct buffer is the
 * owner's to reuse). */
static void io_spill(gw_io *io)
{
    if (io->dlen > io->dused) evbuffer_add(io->in, io->dbuf + io->dused, io->dlen - io->dused);
    io->dlen = io->dused = 0;
}

static void io_read(gw_io *io)
{
    int trig = io->trig;
    io->trig = 0;
    char *dst = rd_scratch;
    size_t cap = sizeof rd_scratch;
    int direct = io->dbuf && evbuffer_get_length(io->in) == 0;
    if (direct) { dst = io->dbuf; cap = io->dcap; }
    ssize_t n = read(io->fd, dst, cap);
    if (n > 0) {
        if (direct) {
            io->dlen = (size_t)n;
            io->dused = 0;
        } else if (evbuffer_add(io->in, dst, (size_t)n) != 0) {
            io->enabled &= (short)~EV_READ;
            if (io->ev) io->ev(io, BEV_EVENT_READING | BEV_EVENT_ERROR, io->arg);
            return;
        }
        /* a short read emptied the socket: the next byte brings a new edge. A full one may have
         * left more, and a FIN that came with the data brings no edge of its own: read again
         * after the loop's other ready events. */
        if ((size_t)n < cap && !io->rd_closed) io->rd_ready = 0;
        else event_active(&io->rev, EV_READ, 1);
        if (io->rd_tmo) io->rd_since = gw_now_ms();
        io->busy++;
        if (io->rd) io->rd(io, io->arg);
        if (--io->busy == 0 && io->dead) { io_release(io, 0); return; }
        if (io->dlen) io_spill(io);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        io->rd_ready = errno == EINTR;
        if (io->rd_ready) event_active(&io->rev, EV_READ, 1);
        if (trig && io->rd) io->rd(io, io->arg);
        return;
    }
    /* end of stream or an error: reading stops, as a bufferevent's does */
    io->rd_ready = 0;
    io->enabled &= (short)~EV_READ;
    if (io->ev) io->ev(io, (short)(BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR)), io->arg);
}

static void io_read_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    gw_io *io = arg;
    io->rd_ready = 1;
    if (what & EV_CLOSED) io->rd_closed = 1;
    if (io->enabled & EV_READ) io_read(io);
}

/* ---- writing ----------------------------------------------------------------------------- */

/* Writes what the socket takes; what it does not wait for the write event. */
static void io_write(gw_io *io)
{
    if (!(io->enabled & EV_WRITE) || io->connecting) return;
    size_t before = evbuffer_get_length(io->out), left = before;
    int err = 0;
    while (left > 0) {
        int n = evbuffer_write(io->out, io->fd);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) err = 1;
            break;
        }
        left = evbuffer_get_length(io->out);
        if (n == 0) break;
        /* after a partial write (a full socket, or more chains than one writev takes) the next
         * write says which: the edge-triggered write event only reports a socket that was full */
    }
    if (err) {
        if (io->wr_armed) { event_del(&io->wev); io->wr_armed = 0; }
        io->enabled &= (short)~EV_WRITE;
        if (io->ev) io->ev(io, BEV_EVENT_WRITING | BEV_EVENT_ERROR, io->arg);
        return;
    }
    if (left) {
        int armed_now = !io->wr_armed;
        if (armed_now) {
            io->wr_armed = 1;
            event_add(&io->wev, NULL);
        }
        /* send_timeout counts from the last progress */
        if (io->wr_tmo && (armed_now || left < before)) {
            io->wr_since = gw_now_ms();
            io_timer_update(io);
        }
    } else if (io->wr_armed) {
        event_del(&io->wev);
        io->wr_armed = 0;
    }
    if (left < before && left <= io->wlowat && io->wr) io->wr(io, io->arg);
}

static void io_write_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    gw_io *io = arg;
    if (!io->connecting) { io_write(io); return; }
    int e = io->conn_err;
    socklen_t l = sizeof e;
    if (!e && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) != 0) e = errno;
    if (e == EINPROGRESS || e == EINTR) return;
    io->connecting = 0;
    event_del(&io->wev);
    io->wr_armed = 0;
    if (e) {
        io->enabled &= (short)~EV_WRITE;
        if (io->ev) io->ev(io, BEV_EVENT_ERROR, io->arg);
        return;
    }
    /* what was written while connecting goes out in this loop pass */
    if (evbuffer_get_length(io->out)) fl_push(io);
    if (io->ev) io->ev(io, BEV_EVENT_CONNECTED, io->arg);
}

static void io_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    gw_io *io = arg;
    if (info->n_added == 0 || io->in_fl || io->wr_armed || io->connecting) return;
    fl_push(io);
}

/* ---- the stream ---------------------------------------------------------------------------- */

static void io_attach_fd(gw_io *io, int fd)
{
    io->fd = fd;
    /* edge-triggered: registered once, reported once per arrival (a socket that is already
     * readable is reported when registered); EV_CLOSED (EPOLLRDHUP) tells a FIN that came with
     * the last data apart */
    event_assign(&io->rev, io->base, fd, EV_READ | EV_CLOSED | EV_PERSIST | EV_ET, io_read_ev, io);
    event_assign(&io->wev, io->base, fd, EV_WRITE | EV_PERSIST | EV_ET, io_write_ev, io);
    event_add(&io->rev, NULL);
}

gw_io *gw_io_socket(struct event_base *base, int fd)
{
    gw_io *io = calloc(1, sizeof *io);
    if (!io) return NULL;
    io->base = base;
    io->fd = -1;
    io->in = evbuffer_new();
    io->out = evbuffer_new();
    if (!io->in || !io->out) {
        if (io->in) evbuffer_free(io->in);
        if (io->out) evbuffer_free(io->out);
        free(io);
        return NULL;
    }
    evbuffer_add_cb(io->out, io_out_cb, io);
    evtimer_assign(&io->tev, base, io_timer_ev, io);
    io->enabled = EV_WRITE;
    if (fd >= 0) io_attach_fd(io, fd);
    return io;
}

static void tls_rd(struct bufferevent *b, void *a) { (void)b; gw_io *io = a; if (io->rd) io->rd(io, io->arg); }
static void tls_wr(struct bufferevent *b, void *a) { (void)b; gw_io *io = a; if (io->wr) io->wr(io, io->arg); }
static void tls_ev(struct bufferevent *b, short what, void *a) { (void)b; gw_io *io = a; if (io->ev) io->ev(io, what, io->arg); }

gw_io *gw_io_tls(struct bufferevent *bev)
{
    gw_io *io = calloc(1, sizeof *io);
    if (!io) return NULL;
    io->bev = bev;
    io->fd = -1;
    return io;
}

static void io_release(gw_io *io, int close_fd)
{
    if (io->bev) {
        if (!close_fd) bufferevent_setfd(io->bev, -1);
        bufferevent_free(io->bev);
        free(io);
        return;
    }
    if (!io->dead) {
        fl_unlink(io);
        if (io->fd >= 0) {
            event_del(&io->rev);
            event_del(&io->wev);
            if (close_fd) close(io->fd);
        }
        event_del(&io->tev);
        io->dead = 1;
    }
    /* freed inside its own read callback: the memory goes when the callback returns (io_read) */
    if (io->busy) return;
    evbuffer_free(io->in);
    evbuffer_free(io->out);
    free(io);
}

void gw_io_free(gw_io *io) { io_release(io, 1); }
void gw_io_free_keep_fd(gw_io *io) { io_release(io, 0); }

int gw_io_connect(gw_io *io, const struct sockaddr *sa, int salen)
{
    if (io->bev) return bufferevent_socket_connect(io->bev, (struct sockaddr *)sa, salen);
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    io_attach_fd(io, fd);
    io->connecting = 1;
    if (connect(fd, sa, (socklen_t)salen) != 0 && errno != EINPROGRESS) io->conn_err = errno ? errno : ECONNREFUSED;
    /* done or failed, it is reported from the loop (the write event), never from here */
    event_add(&io->wev, NULL);
    io->wr_armed = 1;
    if (io->conn_err) event_active(&io->wev, EV_WRITE, 1);
    io->wr_since = gw_now_ms();
    io_timer_update(io);
    return 0;
}

void gw_io_setcb(gw_io *io, gw_io_data_cb rd, gw_io_data_cb wr, gw_io_event_cb ev, void *arg)
{
    io->rd = rd;
    io->wr = wr;
    io->ev = ev;
    io->arg = arg;
    if (io->bev) bufferevent_setcb(io->bev, rd ? tls_rd : NULL, wr ? tls_wr : NULL, ev ? tls_ev : NULL, io);
}

void gw_io_enable(gw_io *io, short what)
{
    if (io->bev) { bufferevent_enable(io->bev, what); return; }
    if ((what & EV_READ) && !(io->enabled & EV_READ)) {
        io->enabled |= EV_READ;
        /* like a bufferevent's, the read timeout starts again when reading is enabled */
        if (io->rd_tmo) { io->rd_since = gw_now_ms(); io_timer_update(io); }
        if (io->rd_ready && io->fd >= 0) event_active(&io->rev, EV_READ, 1);
    }
    if ((what & EV_WRITE) && !(io->enabled & EV_WRITE)) {
        io->enabled |= EV_WRITE;
        if (evbuffer_get_length(io->out) && !io->connecting) fl_push(io);
    }
}

void gw_io_disable(gw_io *io, short what)
{
    if (io->bev) { bufferevent_disable(io->bev, what); return; }
    if (what & EV_READ) io->enabled &= (short)~EV_READ;
    if (what & EV_WRITE) {
        io->enabled &= (short)~EV_WRITE;
        if (io->wr_armed && !io->connecting) { event_del(&io->wev); io->wr_armed = 0; }
    }
}

short gw_io_get_enabled(gw_io *io)
{
    return io->bev ? bufferevent_get_enabled(io->bev) : io->enabled;
}

struct evbuffer *gw_io_input(gw_io *io)
{
    if (io->bev) return bufferevent_get_input(io->bev);
    if (io->dlen) io_spill(io);
    return io->in;
}

void gw_io_read_into(gw_io *io, char *buf, size_t cap)
{
    if (io->bev) return;
    if (io->dlen) io_spill(io);
    io->dbuf = buf;
    io->dcap = cap;
}

size_t gw_io_direct_len(const gw_io *io) { return io->dlen - io->dused; }
void gw_io_direct_take(gw_io *io, size_t n) { io->dused += n; }
struct evbuffer *gw_io_output(gw_io *io) { return io->bev ? bufferevent_get_output(io->bev) : io->out; }

void gw_io_set_timeouts(gw_io *io, int rd_ms, int wr_ms)
{
    if (io->bev) {
        struct timeval rt = { rd_ms / 1000, (rd_ms % 1000) * 1000 };
        struct timeval wt = { wr_ms / 1000, (wr_ms % 1000) * 1000 };
        bufferevent_set_timeouts(io->bev, rd_ms > 0 ? &rt : NULL, wr_ms > 0 ? &wt : NULL);
        return;
    }
    uint64_t now = 0;
    io->rd_tmo = rd_ms > 0 ? rd_ms : 0;
    io->wr_tmo = wr_ms > 0 ? wr_ms : 0;
    if (io->rd_tmo) io->rd_since = now = gw_now_ms();
    if (io->wr_tmo && (io->wr_armed || io->connecting)) io->wr_since = now ? now : gw_now_ms();
    io_timer_update(io);
}

void gw_io_set_write_lowat(gw_io *io, size_t lowat)
{
    if (io->bev) bufferevent_setwatermark(io->bev, EV_WRITE, lowat, 0);
    else io->wlowat = lowat;
}

void gw_io_trigger_read(gw_io *io)
{
    if (io->bev) { bufferevent_trigger(io->bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS); return; }
    io->trig = 1;
    event_active(&io->rev, EV_READ, 1);
}

int gw_io_fd(gw_io *io) { return io->bev ? bufferevent_getfd(io->bev) : io->fd; }
struct bufferevent *gw_io_bev(gw_io *io) { return io->bev; }

/* ---- libevent's memory ---------------------------------------------------------------------
 * Buffer chains are libevent's only allocations per request (a read's bytes when they are not
 * parsed in place, a head added to an output; 1, 2, 4, ... KiB): they come from per-size free
 * lists, so the hot path makes no malloc. A freed block whose usable size is that of a size
 * class (malloc_usable_size) joins the class's list: any block at least that large serves a
 * request of the class, so no header is needed and everything else libevent allocates (per
 * connection or per descriptor) goes to malloc untouched. Not under AddressSanitizer: recycled
 * blocks would hide a use after free from it. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GW_IO_ASAN 1
#endif
#endif
#if !defined(__SANITIZE_ADDRESS__) && !defined(GW_IO_ASAN)
#include <malloc.h>
#define MEM_MIN 1024
#define MEM_CLASSES 5                    /* 1 KiB .. 16 KiB */
#define MEM_SLACK 64                     /* a block up to this much larger still joins a class */
#define MEM_KEEP (256 * 1024)            /* bytes each class keeps on its free list at most */

typedef struct mem_free { struct mem_free *next; } mem_free;
static mem_free *mem_list[MEM_CLASSES];
static size_t mem_kept[MEM_CLASSES];

static void *mem_malloc(size_t n)
{
    if (n >= MEM_MIN && n <= (size_t)MEM_MIN << (MEM_CLASSES - 1) && !(n & (n - 1))) {
        int c = __builtin_ctzl(n) - __builtin_ctzl(MEM_MIN);
        mem_free *f = mem_list[c];
        if (f) {
            mem_list[c] = f->next;
            mem_kept[c] -= n;
            return f;
        }
    }
    return malloc(n);
}

static void mem_release(void *p)
{
    if (!p) return;
    size_t u = malloc_usable_size(p);
    if (u >= MEM_MIN && u < ((size_t)MEM_MIN << (MEM_CLASSES - 1)) + MEM_SLACK) {
        int c = 63 - __builtin_clzl(u) - __builtin_ctzl(MEM_MIN);   /* the largest class <= u */
        size_t cs = (size_t)MEM_MIN << c;
        if (u - cs <= MEM_SLACK && mem_kept[c] + cs <= MEM_KEEP) {
            mem_free *f = p;
            f->next = mem_list[c];
            mem_list[c] = f;
            mem_kept[c] += cs;
            return;
        }
    }
    free(p);
}

void gw_io_mem_init(void)
{
    event_set_mem_functions(mem_malloc, realloc, mem_release);
}

void gw_io_mem_trim(void)
{
    for (int c = 0; c < MEM_CLASSES; c++) {
        while (mem_list[c]) {
            mem_free *f = mem_list[c];
            mem_list[c] = f->next;
            free(f);
        }
        mem_kept[c] = 0;
    }
}
#else
void gw_io_mem_init(void) {}
void gw_io_mem_trim(void) {}
#endif
