/* fuzz_proxy.c — libFuzzer target for the whole proxy path: a {request bytes, upstream reply bytes}
 * pair goes through gw's real connection and proxy code (conn.c, proxy.c, http_parser.c, the
 * plugin runner) in-process. A worker is made once (gw_worker_init over a compiled config, no
 * listeners); each input then:
 *   - the client: one end of a socketpair handed to gw_conn_accept, the request bytes written to
 *     the other end and everything gw answers read and dropped;
 *   - the upstream: a loopback listener of this process that every service points at; each
 *     connection gw makes gets the reply bytes once its first request bytes arrive, then a FIN;
 *   - the worker's own event loop runs until gw has answered (the connection idle with nothing
 *     left to read, or closed), then the client closes and gw must close its side too.
 * Input format: 2 bytes big-endian N, then N request bytes, then the reply bytes (a short input
 * is all request, no reply). gw's timeouts are 30 ms in this config, so every input ends; a
 * connection still open 5 s after both peers closed is a hang and traps. */
#define GW_FUZZ_VM
#include "fuzz.h"
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <event2/event.h>
#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include "api.h"
#include "conn.h"
#include "worker.h"
#include "metrics.h"
#include "shm.h"

/* %d: the upstream listener's port. Routes: plain proxying, a service path prefix with
 * strip_path, response header/body plugins (body_filter buffers the body), the echo service
 * (reads the whole request body), and a request body limit. */
static const char config_fmt[] =
    "_format_version: '3.0'\n"
    "gw:\n"
    "  listen: ['127.0.0.1:1']\n"
    "  timeouts: { client_header: 30, client_body: 30, keepalive: 30, send: 30 }\n"
    "  upstream_keepalive: { idle_timeout: 30, max_requests: 3 }\n"
    "  limits: { max_header_size: 4096, max_request_line: 1024, max_headers: 40, max_body_size: 65536 }\n"
    "services:\n"
    "  - name: up\n"
    "    url: http://127.0.0.1:%d\n"
    "    connect_timeout: 30\n"
    "    write_timeout: 30\n"
    "    read_timeout: 30\n"
    "    retries: 1\n"
    "    routes: [{ name: all, paths: ['/'] }]\n"
    "  - name: prefixed\n"
    "    url: http://127.0.0.1:%d/base\n"
    "    read_timeout: 30\n"
    "    routes: [{ name: strip, paths: ['/s'], strip_path: true }]\n"
    "    plugins:\n"
    "      - name: response-transformer\n"
    "        config: { add: { headers: ['x-a:1'] }, remove: { headers: [server] } }\n"
    "      - name: request-size-limiting\n"
    "        config: { allowed_payload_size: 1 }\n"
    "  - name: echo\n"
    "    url: echo://\n"
    "    routes: [{ name: echo, paths: ['/echo'] }]\n";

#define MAX_UP 16
static struct {
    int lfd, port;
    struct event *lev, *tick;
    struct bufferevent *cli;
    int cli_eof;
    struct bufferevent *up[MAX_UP];
    int up_sent[MAX_UP];
    int nup;
    const uint8_t *reply;
    size_t reply_len;
} H;

static void up_read(struct bufferevent *bev, void *arg)
{
    int i = (int)(intptr_t)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (!H.up_sent[i]) {
        H.up_sent[i] = 1;
        if (H.reply_len) bufferevent_write(bev, H.reply, H.reply_len);
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) shutdown(bufferevent_getfd(bev), SHUT_WR);
    }
}

static void up_write(struct bufferevent *bev, void *arg)
{
    int i = (int)(intptr_t)arg;
    if (H.up_sent[i]) shutdown(bufferevent_getfd(bev), SHUT_WR);
}

static void up_event(struct bufferevent *bev, short what, void *arg)
{
    int i = (int)(intptr_t)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        bufferevent_free(bev);
        H.up[i] = NULL;
    }
}

static void up_accept(evutil_socket_t lfd, short ev, void *arg)
{
    (void)ev; (void)arg;
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    if (H.nup >= MAX_UP) { close(fd); return; }
    int i = H.nup++;
    H.up_sent[i] = 0;
    H.up[i] = bufferevent_socket_new(gw_W->base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(H.up[i], up_read, up_write, up_event, (void *)(intptr_t)i);
    bufferevent_enable(H.up[i], EV_READ | EV_WRITE);
}

static void cli_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void cli_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev; (void)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) H.cli_eof = 1;
}

static void tick(evutil_socket_t fd, short ev, void *arg) { (void)fd; (void)ev; (void)arg; }

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    lua_State *L = fuzz_vm();
    H.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof a;
    if (H.lfd < 0 || bind(H.lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(H.lfd, 64) != 0 ||
        getsockname(H.lfd, (struct sockaddr *)&a, &al) != 0) { perror("fuzz_proxy: upstream listener"); abort(); }
    H.port = ntohs(a.sin_port);
    char cfg[sizeof config_fmt + 32];
    snprintf(cfg, sizeof cfg, config_fmt, H.port, H.port);
    if (gw_shm_stats_init() != 0 || gw_metrics_init() != 0) { fprintf(stderr, "fuzz_proxy: shm\n"); abort(); }
    lua_getglobal(L, "require");
    lua_pushliteral(L, "gw.config");
    if (gw_vm_pcall(L, 1, 1, "gw.config") != 0) abort();
    lua_getfield(L, -1, "load_string");
    lua_pushstring(L, cfg);
    lua_pushliteral(L, "fuzz_proxy.yaml");
    if (lua_pcall(L, 2, 2, 0) != 0 || lua_isnil(L, -2)) {
        lua_rawgeti(L, -1, 1);
        fprintf(stderr, "fuzz_proxy: config: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_pop(L, 1);
    if (gw_worker_init(L, lua_gettop(L), NULL, 0, 0) != 0 || gw_api_init_worker() != 0) {
        fprintf(stderr, "fuzz_proxy: worker\n");
        abort();
    }
    H.lev = event_new(gw_W->base, H.lfd, EV_READ | EV_PERSIST, up_accept, NULL);
    event_add(H.lev, NULL);
    H.tick = event_new(gw_W->base, -1, EV_PERSIST, tick, NULL);
    struct timeval tv = { 0, 20000 };
    event_add(H.tick, &tv);
}

static int pending_bytes(int fd)
{
    int n = 0;
    if (ioctl(fd, FIONREAD, &n) != 0) n = 0;
    return n;
}

/* gw has answered everything it was sent and waits for the next request. */
static int gw_idle(int gw_fd, int cli_fd)
{
    /* no gw_conn: closed, or an idle record waiting for its first byte (conn.c) */
    gw_conn *c = gw_W->live;
    if (c && (c->req.state != GW_RS_IDLE || !c->io)) return 0;
    if (evbuffer_get_length(bufferevent_get_output(H.cli)) || pending_bytes(gw_fd)) return 0;
    if (c && (evbuffer_get_length(gw_io_input(c->io)) || evbuffer_get_length(gw_io_output(c->io))))
        return 0;
    if (pending_bytes(cli_fd)) return 0;
    for (int i = 0; i < H.nup; i++) if (H.up[i] && !H.up_sent[i]) return 0;
    return 1;
}

static void run_until(int (*done)(int, int), int a, int b, int ms)
{
    uint64_t end = gw_now_ms() + (uint64_t)ms;
    while (!done(a, b) && gw_now_ms() < end) event_base_loop(gw_W->base, EVLOOP_ONCE);
}

static int cli_done(int gw_fd, int cli_fd) { return H.cli_eof || gw_idle(gw_fd, cli_fd); }
static int all_closed(int a, int b) { (void)a; (void)b; return gw_W->nconns == 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!gw_W) setup();
    size_t n = size >= 2 ? ((size_t)data[0] << 8 | data[1]) : 0;
    const uint8_t *req = data + (size >= 2 ? 2 : size);
    size_t rest = size >= 2 ? size - 2 : 0;
    if (n > rest) n = rest;
    H.reply = req + n;
    H.reply_len = rest - n;
    H.nup = 0;
    H.cli_eof = 0;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) abort();
    struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(40000),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    H.cli = bufferevent_socket_new(gw_W->base, sv[1], BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(H.cli, cli_read, NULL, cli_event, NULL);
    bufferevent_enable(H.cli, EV_READ | EV_WRITE);
    if (n) bufferevent_write(H.cli, req, n);
    gw_conn_accept(gw_W, sv[0], (struct sockaddr *)&peer, sizeof peer, 8000, 0);

    /* until gw has answered (or closed); its own timeouts bound this */
    run_until(cli_done, sv[0], sv[1], 5000);
    /* the client goes away: gw must close its side */
    bufferevent_free(H.cli);
    H.cli = NULL;
    run_until(all_closed, 0, 0, 5000);
    ENSURE(gw_W->nconns == 0);
    for (int i = 0; i < H.nup; i++) if (H.up[i]) { bufferevent_free(H.up[i]); H.up[i] = NULL; }
    gw_pool_close_all(gw_W);
    event_base_loop(gw_W->base, EVLOOP_NONBLOCK);
    return 0;
}
