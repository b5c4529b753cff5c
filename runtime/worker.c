/* worker.c — a worker process: builds its generation from the inherited compiled config, accepts
 * on the inherited listeners, runs init_worker, and serves until told to stop (SIGTERM: now;
 * SIGQUIT: stop accepting, finish in-flight requests, then exit). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <luajit.h>
#include "gw.h"
#include "worker.h"
#include "accesslog.h"
#include "conn.h"
#include "api.h"
#include "master.h"

struct gw_worker *gw_W;
static struct gw_worker W;

/* How many connections one wakeup accepts. Every idle worker is woken by a new connection;
 * taking just one each time (nginx's `multi_accept off`) spreads a burst over the workers
 * instead of handing it all to the first one awake. The listener is level-triggered, so what
 * is left wakes the loop again at once. */
#define ACCEPT_BATCH 1

static void accept_resume(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    if (!W.draining) event_add((struct event *)arg, NULL);
}

/* Past gw.max_connections: the new connection is answered at once and closed, costing no
 * buffers and no timer; those already open are not touched. A plain listener gets a 503 (one
 * non-blocking write, whatever of it fits); an ssl one is closed before any handshake. */
static void refuse(int fd, int tls)
{
    static const char resp[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        "Content-Length: 39\r\nConnection: close\r\nServer: gw\r\n\r\n{\"message\":\"Too many open connections\"}";
    static uint64_t last_warn;
    if (!tls) {
        ssize_t n = send(fd, resp, sizeof resp - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)n;
        shutdown(fd, SHUT_WR);
        /* what the client already sent is read off, so the close is a FIN, not a reset that
         * could drop the 503 before the client reads it */
        char sink[4096];
        for (int i = 0; i < 4 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++) {}
    }
    close(fd);
    if (W.stats) W.stats->refused++;
    uint64_t now = gw_now_ms();
    if (now - last_warn >= 10000) {
        last_warn = now;
        gw_warn("worker %d: gw.max_connections (%d) reached, refusing new connections", getpid(), W.gen->max_connections);
    }
}

static void accept_cb(evutil_socket_t lfd, short ev, void *arg)
{
    (void)ev;
    gw_listen *ls = arg;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED || e == EPROTO) return;
            gw_err("accept: %s", strerror(e));
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                /* out of descriptors or memory: pause accepting briefly instead of spinning */
                for (int k = 0; k < W.nlev; k++) {
                    if (event_get_fd(W.lev[k]) != lfd) continue;
                    event_del(W.lev[k]);
                    struct timeval tv = { 0, 100000 };
                    event_base_once(W.base, -1, EV_TIMEOUT, accept_resume, W.lev[k], &tv);
                }
            }
            return;
        }
        if (W.nconns >= W.gen->max_connections) { refuse(fd, ls->ssl); continue; }
        gw_conn_accept(&W, fd, (struct sockaddr *)&ss, (int)sl, ls->port, ls->ssl);
    }
}

/* A draining worker exits once its connections are closed and its timer callbacks done (the
 * premature flushes of plugins: gw.http in flight), those for at most 10 s. */
void gw_worker_maybe_exit(void)
{
    if (W.draining && W.nconns == 0 && (gw_api_timers_suspended() == 0 || W.drain_ticks >= 10))
        event_base_loopbreak(W.base);
}

static void drain_tick(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev; (void)arg;
    W.drain_ticks++;
    /* connections that stayed idle through the grace period are closed now */
    gw_conn *c = W.live;
    while (c) {
        gw_conn *next = c->next_live;
        if (c->req.state == GW_RS_IDLE && evbuffer_get_length(gw_io_input(c->io)) == 0)
            gw_conn_close(c);
        c = next;
    }
    gw_conn_close_idle(&W);   /* connections shrunk to idle records (conn.c) */
    gw_worker_maybe_exit();
}

static void start_drain(void)
{
    if (W.draining) return;
    W.draining = 1;
    for (int i = 0; i < W.nlev; i++) event_del(W.lev[i]);
    if (W.stats) W.stats->ready = 0;    /* no longer accepting: a reload's answer waits for this */
    gw_conn_drain_all(&W);
    gw_pool_close_all(&W);
    gw_api_timers_premature();
    W.drain_timer = event_new(W.base, -1, EV_PERSIST, drain_tick, NULL);
    struct timeval tv = { 1, 0 };
    event_add(W.drain_timer, &tv);
    gw_worker_maybe_exit();
}

static void sig_cb(evutil_socket_t sig, short ev, void *arg)
{
    (void)ev; (void)arg;
    if (sig == SIGQUIT) { start_drain(); return; }
    if (sig == SIGUSR1) { gw_reopen_error_log(); gw_accesslog_reopen(); return; }
    event_base_loopbreak(W.base);
}

/* ---- the watchdog (gw.worker_watchdog; the master's half is in master.c) -------------------- */

static void copy_name(char *dst, size_t n, const char *src)
{
    size_t i = 0;
    if (src) for (; i + 1 < n && src[i]; i++) dst[i] = src[i];
    dst[i] = 0;
}

/* GW_WATCHDOG_SIGNAL: the master found this worker's loop stuck. Runs on top of whatever is stuck
 * (a JIT-compiled loop included) and only reads plain memory: it writes the plugin, phase and
 * route into the shared slot for the master's log line; the master kills the worker next. */
static void watchdog_report(int sig)
{
    (void)sig;
    gw_worker_stats *s = W.stats;
    if (!s) return;
    gw_req *r = gw_cur;
    const char *plugin = gw_plugin_name(r ? r->plugin_id : gw_main_plugin_id);
    const char *phase = r ? (r->phase >= 0 && r->phase < GW_PHASE_COUNT ? gw_phase_names[r->phase] : "?")
                          : s->ready ? "timer" : "init_worker";
    copy_name(s->wd_plugin, sizeof s->wd_plugin, plugin);
    copy_name(s->wd_phase, sizeof s->wd_phase, plugin || r ? phase : "");
    s->wd_route[0] = 0;
    if (r && r->route) {
        if (r->route->name) copy_name(s->wd_route, sizeof s->wd_route, r->route->name);
        else if (r->gen && r->route == r->gen->fallback) copy_name(s->wd_route, sizeof s->wd_route, "(none matched)");
        else copy_name(s->wd_route, sizeof s->wd_route, "(unnamed)");
    }
    __atomic_store_n(&s->wd_seq, s->wd_seq + 1, __ATOMIC_RELEASE);
}

/* The loop turned: stamp the heartbeat the master watches. */
static void heartbeat_tick(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev; (void)arg;
    if (W.stats) W.stats->heartbeat_ms = gw_now_ms();
}

static void watchdog_start(lua_State *L, int compiled_idx)
{
    lua_getfield(L, compiled_idx, "gw");
    lua_getfield(L, -1, "worker_watchdog");
    double sec = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 0;
    lua_pop(L, 2);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = watchdog_report;
    sa.sa_flags = SA_RESTART;
    sigaction(GW_WATCHDOG_SIGNAL, &sa, NULL);
    if (sec <= 0 || !W.stats) return;
    /* a few stamps per watchdog period, so a worker is judged on its loop, not on timer jitter */
    W.stats->heartbeat_ms = gw_now_ms();
    struct event *hb = event_new(W.base, -1, EV_PERSIST, heartbeat_tick, NULL);
    struct timeval tv = { 0, 250000 };
    event_add(hb, &tv);
}

static void stats_tick(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev; (void)arg;
    if (!W.stats) return;
    W.stats->lua_kb = (uint64_t)lua_gc(W.L, LUA_GCCOUNT, 0);
    /* passive health of every balanced target, for GET /upstreams/{name}/health */
    int n = 0;
    uint64_t now_ms = gw_now_ms();
    double now = gw_now();
    for (int i = 0; i < W.gen->nupstreams && n < GW_HEALTH_MAX; i++) {
        gw_upstream *u = &W.gen->upstreams[i];
        for (int k = 0; k < u->ntargets && n < GW_HEALTH_MAX; k++, n++) {
            gw_target *t = &u->targets[k];
            gw_target_health *h = &W.stats->health[n];
            snprintf(h->upstream, sizeof h->upstream, "%s", u->name);
            snprintf(h->target, sizeof h->target, "%s:%d", t->host, t->port);
            h->fails = t->fails;
            h->down_until = t->down_until_ms > now_ms ? now + (double)(t->down_until_ms - now_ms) / 1000 : 0;
        }
    }
    W.stats->nhealth = n;
}

/* Each client connection may hold an upstream connection too: the worker wants two descriptors
 * per connection and some to spare. A soft limit below that is raised toward the hard limit. */
static void fd_budget(int max_connections)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t want = (rlim_t)max_connections * 2 + 256;
    if (rl.rlim_cur >= want) return;
    rlim_t cur = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
    if (rl.rlim_cur > cur && setrlimit(RLIMIT_NOFILE, &rl) == 0) cur = rl.rlim_cur;
    if (cur < want)
        gw_warn("worker: %llu file descriptors for gw.max_connections %d (wants %llu): raise the limit (ulimit -n)",
                (unsigned long long)cur, max_connections, (unsigned long long)want);
}

/* The worker's state without its loop: event base, generation, access log, accept events (no
 * signals, watchdog or init_worker yet). gw_worker_run's first half; fuzz/fuzz_proxy.c drives connections through a
 * worker made by it in-process (with nls = 0 and slot = 0: no listeners, no shared stats). */
int gw_worker_init(lua_State *L, int compiled_idx, gw_listen *ls, int nls, int slot)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    memset(&W, 0, sizeof W);
    gw_W = &W;
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_ON);
    W.L = L;
    W.slot = slot;
    /* The epoll changelist: event additions and removals made during one loop pass are applied
     * at its end, merged per descriptor — a read event disabled and enabled again in one pass
     * (a response head handed to header_filter, a connection leaving an idle record for its
     * bufferevent) costs no epoll_ctl at all. (Its one caveat, dup()ed descriptors sharing a
     * file, does not arise: gw never dups a socket.) */
    struct event_config *cfg = event_config_new();
    if (cfg) event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    W.base = cfg ? event_base_new_with_config(cfg) : NULL;
    if (cfg) event_config_free(cfg);
    if (!W.base) W.base = event_base_new();
    if (!W.base) { gw_err("worker: cannot create event base"); return 1; }
    lua_pushvalue(L, compiled_idx);
    char err[512];
    W.gen = gw_gen_build(L, err, sizeof err);
    lua_pop(L, 1);
    if (!W.gen) { gw_err("worker: %s", err); return 1; }
    lua_getfield(L, compiled_idx, "gw");
    lua_getfield(L, -1, "access_log");
    lua_getfield(L, -2, "access_log_format");
    if (gw_accesslog_open(W.base, lua_tostring(L, -2), lua_tostring(L, -1)) != 0)
        gw_err("worker: the access log is off");
    lua_pop(L, 3);
    fd_budget(W.gen->max_connections);
    W.stats = gw_stats ? &gw_stats->workers[slot] : NULL;
    if (W.stats) {
        memset(W.stats, 0, sizeof *W.stats);
        W.stats->pid = getpid();
        W.stats->generation = W.gen->id;
        W.stats->started = gw_now();
    }
    W.lev = calloc(nls ? nls : 1, sizeof *W.lev);
    for (int i = 0; i < nls; i++) {
        W.lev[i] = event_new(W.base, ls[i].fd, EV_READ | EV_PERSIST, accept_cb, &ls[i]);
        if (!W.lev[i] || event_add(W.lev[i], NULL) != 0) { gw_err("worker: cannot listen on fd %d", ls[i].fd); return 1; }
        W.nlev++;
    }
    return 0;
}

int gw_worker_run(lua_State *L, int compiled_idx, gw_listen *ls, int nls, int slot)
{
    if (gw_worker_init(L, compiled_idx, ls, nls, slot) != 0) return 1;
    struct event *sigs[5];
    int sl[5] = { SIGTERM, SIGINT, SIGQUIT, SIGUSR1, 0 };
    for (int i = 0; sl[i]; i++) {
        sigs[i] = evsignal_new(W.base, sl[i], sig_cb, NULL);
        event_add(sigs[i], NULL);
    }
    /* blocked since the fork (master.c spawn): our own handlers are in place now */
    sigset_t blocked;
    gw_loop_signals(&blocked);
    sigprocmask(SIG_UNBLOCK, &blocked, NULL);
    watchdog_start(L, compiled_idx);
    struct event *st = event_new(W.base, -1, EV_PERSIST, stats_tick, NULL);
    struct timeval one = { 1, 0 };
    event_add(st, &one);
    if (gw_api_init_worker() != 0) gw_err("worker: init_worker failed");
    lua_gc(L, LUA_GCCOLLECT, 0);   /* what the master left behind that this worker never uses */
    stats_tick(-1, 0, NULL);
    gw_info("worker %d started (generation %d)", getpid(), W.gen->id);
    if (W.stats) W.stats->ready = 1;
    /* the loop, one pass at a time: the clock is read once per pass (gw_time_pass) */
    gw_time_cache(1);
    while (event_base_loop(W.base, EVLOOP_ONCE) == 0 && !event_base_got_break(W.base) &&
           !event_base_got_exit(W.base))
        gw_time_pass();
    gw_time_cache(0);
    gw_accesslog_flush();
    gw_info("worker %d exiting", getpid());
    return 0;
}
