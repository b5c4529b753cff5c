/* io.h — a buffered socket stream for gw's client and upstream connections.
 *
 * The shape of a libevent bufferevent (an input and an output evbuffer, read / write / event
 * callbacks, read and write timeouts, a write low-water mark), with the per-request costs of the
 * generic one taken out for plain sockets:
 *   - the socket is registered once, edge-triggered: no epoll_ctl per request, and the kernel
 *     does not poll a level-triggered socket again on every epoll_wait after it was reported;
 *   - a read is one readv into the input, sized by what the buffer has room for (no
 *     ioctl(FIONREAD) before it);
 *   - timeouts are deadlines kept in the stream: moving a deadline later (every read, every new
 *     request) is a store, and the one timer is re-armed only when a deadline moves earlier or
 *     when it fires early;
 *   - what is added to the output goes out in one direct writev once the loop's current
 *     callbacks are done (several adds, one system call); only what the socket does not take
 *     waits for the socket to become writable.
 * A TLS stream wraps libevent's OpenSSL bufferevent and forwards each call to it.
 * Event flags are libevent's BEV_EVENT_* (READING, WRITING, EOF, ERROR, TIMEOUT, CONNECTED). */
#ifndef GW_IO_H
#define GW_IO_H
#include <stddef.h>
#include <sys/socket.h>
#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include <event2/event.h>

typedef struct gw_io gw_io;
typedef void (*gw_io_data_cb)(gw_io *io, void *arg);
typedef void (*gw_io_event_cb)(gw_io *io, short what, void *arg);

/* A stream over a connected socket, or over none yet (fd -1: gw_io_connect makes it). Closed by
 * gw_io_free. NULL when out of memory. */
gw_io *gw_io_socket(struct event_base *base, int fd);
/* A stream over an OpenSSL bufferevent, which it owns from now on (NULL: out of memory, the
 * bufferevent is still the caller's). */
gw_io *gw_io_tls(struct bufferevent *bev);
void gw_io_free(gw_io *io);
/* Frees the stream but leaves its socket open (an idle connection shrinking to a record). */
void gw_io_free_keep_fd(gw_io *io);
/* Connects a stream made with fd -1: 0 started (CONNECTED or an error comes to the event
 * callback), -1 no socket could be made (no callback). */
int gw_io_connect(gw_io *io, const struct sockaddr *sa, int salen);

void gw_io_setcb(gw_io *io, gw_io_data_cb rd, gw_io_data_cb wr, gw_io_event_cb ev, void *arg);
void gw_io_enable(gw_io *io, short what);
void gw_io_disable(gw_io *io, short what);
short gw_io_get_enabled(gw_io *io);
struct evbuffer *gw_io_input(gw_io *io);
struct evbuffer *gw_io_output(gw_io *io);
/* Read and write timeouts in ms (0: none), each counted from now: reading times out when no byte
 * has come for rd_ms while reading is enabled, writing when output has waited wr_ms without the
 * socket taking any of it. The stream stops the direction that timed out before the callback. */
void gw_io_set_timeouts(gw_io *io, int rd_ms, int wr_ms);
/* The write callback runs when a write leaves at most `lowat` bytes in the output. */
void gw_io_set_write_lowat(gw_io *io, size_t lowat);
/* Direct reads: while buf is set (NULL: off) and the input is empty, a read lands in buf (up to
 * cap bytes) instead of the input, and the read callback finds it there: gw_io_direct_len bytes
 * from buf + what it took so far (a request or response head is parsed where it was read, with
 * no copy and no buffer allocated). gw_io_direct_take consumes them; what is not taken moves to
 * the input when the callback returns, or at once when gw_io_input is asked for. */
void gw_io_read_into(gw_io *io, char *buf, size_t cap);
size_t gw_io_direct_len(const gw_io *io);
void gw_io_direct_take(gw_io *io, size_t n);
/* Runs the read callback from the event loop (input already buffered: a pipelined request). */
void gw_io_trigger_read(gw_io *io);
int gw_io_fd(gw_io *io);
/* Before any other libevent call: libevent's buffer chains come from free lists (io.c). */
void gw_io_mem_init(void);
/* Gives the free lists back to malloc (a burst of connections went quiet). */
void gw_io_mem_trim(void);
/* The OpenSSL bufferevent of a TLS stream, NULL for a plain one. */
struct bufferevent *gw_io_bev(gw_io *io);
#endif
