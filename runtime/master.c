/* master.c — the master process. Compiles the config, opens the listeners once, creates shared
 * memory, forks the workers and respawns any that dies. A reload (SIGHUP, `POST /reload`,
 * `POST /config`) compiles the new config beside the running one; only when it is valid does the
 * master fork a new set of workers from it and tell the old set to drain (SIGQUIT): listeners
 * are never closed, requests in flight finish on the generation they started with.
 * The admin API is served here too, by lua/gw/admin.lua. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include <luajit.h>
#include "gw.h"
#include "master.h"
#include "worker.h"
#include "shm.h"
#include "metrics.h"
#include "vm.h"
#include "http_parser.h"
#include "tls.h"

/* pid > 0: running; 0: free slot; -1: reserved for a delayed respawn */
typedef struct {
    pid_t pid; int slot; int gen; int old; double started; int quit_pending;
    uint64_t wd_asked_ms;       /* the watchdog asked this (stalled) worker what it runs, at */
} wproc;

static struct {
    lua_State *L;
    struct event_base *base;
    const char *file;
    gw_listen ls[16];
    int nls;
    int admin_fd;
    struct evconnlistener *admin;
    int status_fd;              /* gw.status_listen: GET /metrics and /status only, no token */
    struct evconnlistener *status;
    wproc w[GW_MAX_WORKERS * 2];
    int nworkers;               /* workers per generation */
    int gen;
    int compiled_ref;
    int stopping;
    double started, last_reload;
    int last_reload_ok;
    struct event *swap_timer;   /* waits for the new workers to be ready, then drains the old */
    double swap_started;
    double swap_quit_at;        /* the old set was sent SIGQUIT at (0: not yet) */
    char last_reload_msg[8192];
    int watchdog_ms;            /* gw.worker_watchdog; 0: off */
    struct event *watchdog_timer;
} M;

static int open_listener(const char *host, int port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (gw_resolve(host, port, &ss, &sl) != 0) { snprintf(err, errlen, "cannot resolve %s", host); return -1; }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { snprintf(err, errlen, "socket: %s", strerror(errno)); return -1; }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 4096) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Admin connections open in the master. A worker forked while one is open (POST /reload forks
 * from inside its handler) must close its copy, or the client would never see the close. */
typedef struct admin_conn {
    struct bufferevent *bev;
    struct evbuffer *deferred;        /* the answer to a reload, held until the swap is done */
    int deferred_close;
    struct admin_conn *prev, *next;   /* open admin connections: a forked worker closes them */
    int status_only;                  /* accepted on status_listen */
    char buf[65536];
} admin_conn;
static admin_conn *admin_conns;

static int free_slot(void)
{
    for (int i = 0; i < GW_MAX_WORKERS * 2; i++) if (M.w[i].pid == 0) return i;
    return -1;
}

/* The signals the master and the workers handle through their loops. */
void gw_loop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGQUIT);
    sigaddset(set, SIGCHLD);
    sigaddset(set, SIGUSR1);
}

static pid_t spawn(int slot)
{
    /* Until the worker has its own signal events, a signal sent to it would run the master's
     * libevent handler, which writes into the master's loop (the socketpair is inherited): the
     * master would act on the worker's SIGQUIT. They stay blocked until gw_worker_run unblocks. */
    sigset_t sigs, old;
    gw_loop_signals(&sigs);
    sigprocmask(SIG_BLOCK, &sigs, &old);
    pid_t master = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        gw_err("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* a master killed without a chance to stop its workers still takes them along: they
         * drain and exit instead of holding the listeners forever */
        prctl(PR_SET_PDEATHSIG, SIGQUIT);
        if (getppid() != master) _exit(1);
        /* child: the master's loop and admin listener are not ours. No evconnlistener_disable:
         * the epoll instance is shared with the master, deleting from it would stop the
         * master's admin listener; closing our copy of the fd leaves the master's alone. */
        signal(SIGHUP, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        if (M.admin_fd >= 0) close(M.admin_fd);
        if (M.status_fd >= 0) close(M.status_fd);
        for (struct admin_conn *a = admin_conns; a; a = a->next) close(bufferevent_getfd(a->bev));
        lua_rawgeti(M.L, LUA_REGISTRYINDEX, M.compiled_ref);
        int rc = gw_worker_run(M.L, lua_gettop(M.L), M.ls, M.nls, slot);
        _exit(rc);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    M.w[slot].pid = pid;
    M.w[slot].slot = slot;
    M.w[slot].gen = M.gen;
    M.w[slot].old = 0;
    M.w[slot].started = gw_now();
    M.w[slot].wd_asked_ms = 0;
    return pid;
}

/* A worker that dies right after it started would die again at once: wait a second before
 * respawning it, so a broken worker does not turn into a fork loop. */
static void respawn_later_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    int slot = (int)(intptr_t)arg;
    if (M.w[slot].pid != -1) return;
    M.w[slot].pid = 0;
    if (M.stopping || M.w[slot].gen != M.gen) return;
    if (spawn(slot) < 0) gw_err("cannot respawn worker slot %d", slot);
}

static void respawn(int slot)
{
    if (gw_now() - M.w[slot].started >= 1.0) {
        if (spawn(slot) < 0) gw_err("cannot respawn worker slot %d", slot);
        return;
    }
    gw_err("worker slot %d died within a second of starting; respawning in 1 s", slot);
    M.w[slot].pid = -1;
    struct timeval tv = { 1, 0 };
    event_base_once(M.base, -1, EV_TIMEOUT, respawn_later_cb, (void *)(intptr_t)slot, &tv);
}

/* gw.error_log: "stderr" (the default) or a file, appended to; a relative path is relative to
 * the config file's directory. The file becomes the master's fd 2, which every worker forked
 * afterwards inherits, so a reload that names another file moves the log with it, and a reload
 * after a log rotation (the file renamed away) starts a new file. */
static char current_error_log[4096];    /* "" when it is stderr */

/* Opens the error log file again (after logrotate moved it); in the master and, through the
 * state they inherited, in the workers. */
void gw_reopen_error_log(void)
{
    if (!current_error_log[0]) return;
    int fd = open(current_error_log, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) { gw_err("cannot reopen error_log %s: %s", current_error_log, strerror(errno)); return; }
    dup2(fd, 2);
    close(fd);
}

static void open_error_log(const char *path)
{
    static int saved_stderr = -1;
    char *current = current_error_log;
    if (saved_stderr < 0) saved_stderr = dup(2);
    if (strcmp(path, "stderr") == 0) {
        if (current[0]) { dup2(saved_stderr, 2); current[0] = 0; }
        return;
    }
    char full[4096];
    if (path[0] == '/') snprintf(full, sizeof full, "%s", path);
    else {
        const char *slash = strrchr(M.file, '/');
        if (slash) snprintf(full, sizeof full, "%.*s/%s", (int)(slash - M.file), M.file, path);
        else snprintf(full, sizeof full, "%s", path);
    }
    /* the same path is opened again too: a reload after log rotation writes to the new file */
    int fd = open(full, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) { gw_err("cannot open error_log %s: %s (logging to stderr)", full, strerror(errno)); return; }
    dup2(fd, 2);
    close(fd);
    snprintf(current, sizeof current_error_log, "%s", full);
}

static void set_compiled_globals(lua_State *L, int idx)
{
    lua_getfield(L, idx, "gw");
    lua_getfield(L, -1, "log_level");
    if (lua_isstring(L, -1)) {
        int lv = gw_log_level_from_name(lua_tostring(L, -1));
        if (lv >= 0) gw_log_level = lv;
    }
    lua_pop(L, 1);
    lua_getfield(L, -1, "error_log");
    open_error_log(lua_isstring(L, -1) ? lua_tostring(L, -1) : "stderr");
    lua_pop(L, 1);
    lua_getfield(L, -1, "workers");
    M.nworkers = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : 1;
    if (M.nworkers < 1) M.nworkers = 1;
    if (M.nworkers > GW_MAX_WORKERS) M.nworkers = GW_MAX_WORKERS;
    lua_pop(L, 1);
    lua_getfield(L, -1, "worker_watchdog");
    M.watchdog_ms = lua_isnumber(L, -1) ? (int)(lua_tonumber(L, -1) * 1000) : 0;
    lua_pop(L, 2);
}

/* ---- the watchdog: a worker whose loop has not turned for gw.worker_watchdog seconds -------- */

/* Every worker stamps its shared slot from a loop timer (worker.c heartbeat_tick). A stale stamp
 * means the loop is stuck (a plugin in an endless loop, a blocking call): the master sends
 * GW_WATCHDOG_SIGNAL, whose handler in the worker writes the plugin, phase and route it is in,
 * logs that a moment later, kills the worker with SIGKILL, and the SIGCHLD path forks its
 * replacement. The other workers are not touched. */
static void watchdog_tick(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev; (void)arg;
    if (M.watchdog_ms <= 0 || !gw_stats) return;
    uint64_t now = gw_now_ms();
    for (int i = 0; i < GW_MAX_WORKERS * 2; i++) {
        wproc *p = &M.w[i];
        gw_worker_stats *s = &gw_stats->workers[i];
        if (p->pid <= 0 || s->pid != p->pid) continue;
        uint64_t hb = s->heartbeat_ms;
        if (!hb) continue;
        if (!p->wd_asked_ms) {
            if (now > hb && now - hb > (uint64_t)M.watchdog_ms) {
                p->wd_asked_ms = now;
                s->wd_seq = 0;
                kill(p->pid, GW_WATCHDOG_SIGNAL);
            }
            continue;
        }
        if (now <= hb || now - hb <= (uint64_t)M.watchdog_ms) { p->wd_asked_ms = 0; continue; }  /* it moved on */
        /* the report is written by a signal handler: give it up to 200 ms */
        if (!__atomic_load_n(&s->wd_seq, __ATOMIC_ACQUIRE) && now - p->wd_asked_ms < 200) continue;
        double stalled = (double)(now - hb) / 1000;
        char where[320];
        int k;
        if (!__atomic_load_n(&s->wd_seq, __ATOMIC_ACQUIRE))
            k = snprintf(where, sizeof where, " (it did not answer the watchdog signal)");
        else if (s->wd_plugin[0])
            k = snprintf(where, sizeof where, " in plugin %s (phase %s)", s->wd_plugin, s->wd_phase);
        else if (s->wd_phase[0])
            k = snprintf(where, sizeof where, " outside any plugin (phase %s)", s->wd_phase);
        else
            k = snprintf(where, sizeof where, " outside any plugin and request");
        if (s->wd_route[0] && k > 0 && (size_t)k < sizeof where)
            snprintf(where + k, sizeof where - (size_t)k, " on route %s", s->wd_route);
        gw_err("worker %d stalled for %.1fs%s; replacing it", p->pid, stalled, where);
        kill(p->pid, SIGKILL);
        s->heartbeat_ms = 0;    /* reported once; SIGCHLD respawns it */
        p->wd_asked_ms = 0;
    }
}

static void watchdog_arm(void)
{
    if (M.watchdog_ms <= 0) { if (M.watchdog_timer) event_del(M.watchdog_timer); return; }
    if (!M.watchdog_timer) M.watchdog_timer = event_new(M.base, -1, EV_PERSIST, watchdog_tick, NULL);
    struct timeval tv = { 0, 100000 };
    event_add(M.watchdog_timer, &tv);
}

/* Creates the shared dicts of the compiled config at idx that do not exist yet (existing ones
 * keep their contents and size across reloads). Done before forking, so workers inherit them. */
static int create_dicts(lua_State *L, int idx, char *err, size_t errlen)
{
    int rc = 0;
    lua_getfield(L, idx, "gw");
    lua_getfield(L, -1, "shared_dicts");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            const char *name = lua_tostring(L, -2);
            if (rc == 0 && gw_dict_create(name, (size_t)lua_tonumber(L, -1)) != 0) {
                snprintf(err, errlen, "cannot create shared dict \"%s\"", name);
                rc = -1;
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 2);
    return rc;
}

static void admin_flush_deferred(void);

/* Drains the old worker set once every worker of the current generation is ready (or after
 * 10 s, whatever they are doing), then answers the reloads that wait for the swap once every old
 * worker has stopped accepting (it clears its ready flag in start_drain; at most 2 s): a client
 * that has read the answer connects to the new generation, never to an old worker that has not
 * yet handled its SIGQUIT. */
static void swap_tick(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev; (void)arg;
    if (!M.swap_quit_at) {
        int ready = 1;
        for (int i = 0; i < GW_MAX_WORKERS * 2 && ready; i++)
            if (M.w[i].pid > 0 && M.w[i].gen == M.gen && !(gw_stats && gw_stats->workers[i].ready)) ready = 0;
        if (!ready && gw_now() - M.swap_started < 10) return;
        for (int i = 0; i < GW_MAX_WORKERS * 2; i++) {
            if (M.w[i].pid > 0 && M.w[i].quit_pending) {
                kill(M.w[i].pid, SIGQUIT);
                M.w[i].quit_pending = 0;
            }
        }
        M.swap_quit_at = gw_now();
    }
    int accepting = 0;
    for (int i = 0; i < GW_MAX_WORKERS * 2 && gw_stats; i++)
        if (M.w[i].pid > 0 && M.w[i].old && gw_stats->workers[i].pid == M.w[i].pid && gw_stats->workers[i].ready)
            accepting = 1;
    if (accepting && gw_now() - M.swap_quit_at < 2) return;
    M.swap_quit_at = 0;
    event_del(M.swap_timer);
    admin_flush_deferred();
}

int gw_master_apply(lua_State *L, char *err, size_t errlen)
{
    /* stopping: new workers would outlive the stop (or delay it forever) */
    if (M.stopping) { snprintf(err, errlen, "gw is stopping"); return -1; }
    /* validate the C half too before any worker sees it: a target that does not resolve or a
     * regex PCRE2 refuses must reject the reload, not kill the new workers */
    gw_gen *probe = gw_gen_build(L, err, errlen);
    if (!probe) return -1;
    /* the session ticket keys' rotation period; certificate warnings (an expired one) */
    gw_tls_master_apply(M.base, L, lua_gettop(L));
    /* a dict added by this config must exist before the new workers fork */
    if (create_dicts(L, lua_gettop(L), err, errlen) != 0) return -1;
    gw_gen_free(L, probe);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int old_ref = M.compiled_ref;
    M.compiled_ref = ref;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    set_compiled_globals(L, lua_gettop(L));
    lua_pop(L, 1);
    M.gen++;
    watchdog_arm();
    /* the old generation's Lua objects and the compile's garbage go before the fork, so every
     * new worker starts from the same heap however many reloads came before */
    if (old_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, old_ref);
    old_ref = LUA_NOREF;
    lua_gc(L, LUA_GCCOLLECT, 0);
    /* old set: every live worker of an earlier generation */
    int oldset[GW_MAX_WORKERS * 2], nold = 0;
    for (int i = 0; i < GW_MAX_WORKERS * 2; i++) {
        if (M.w[i].pid > 0 && M.w[i].gen != M.gen) { M.w[i].old = 1; oldset[nold++] = i; }
        if (M.w[i].pid == -1) M.w[i].pid = 0;  /* a delayed respawn of the old set: dropped */
    }
    for (int k = 0; k < M.nworkers; k++) {
        int slot = free_slot();
        if (slot < 0) { snprintf(err, errlen, "too many workers"); break; }
        spawn(slot);
    }
    /* The old set keeps accepting until every new worker is ready (its generation built, its
     * init_worker done): a big config takes the new workers tens of ms, and no connection
     * should wait for them meanwhile. */
    for (int i = 0; i < nold; i++) M.w[oldset[i]].quit_pending = 1;
    M.swap_started = gw_now();
    M.swap_quit_at = 0;
    if (!M.swap_timer) M.swap_timer = event_new(M.base, -1, EV_PERSIST, swap_tick, NULL);
    struct timeval two_ms = { 0, 2000 };
    event_add(M.swap_timer, &two_ms);
    swap_tick(-1, 0, NULL);
    M.last_reload = gw_now();
    M.last_reload_ok = 1;
    snprintf(M.last_reload_msg, sizeof M.last_reload_msg, "ok");
    gw_notice("generation %d started (%d workers)", M.gen, M.nworkers);
    return 0;
}

/* Reads and compiles the config file; on success applies it. */
static int reload_file(char *err, size_t errlen)
{
    lua_State *L = M.L;
    int top = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "gw.config");
    if (gw_vm_pcall(L, 1, 1, "gw.config") != 0) { snprintf(err, errlen, "cannot load gw.config"); return -1; }
    lua_getfield(L, -1, "load_file");
    lua_pushstring(L, M.file);
    if (gw_vm_pcall(L, 1, 2, "config.load_file") != 0) { snprintf(err, errlen, "config loader failed"); lua_settop(L, top); return -1; }
    if (lua_isnil(L, -2)) {
        size_t off = 0;
        int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
        err[0] = 0;
        for (int i = 1; i <= n && off < errlen; i++) {
            lua_rawgeti(L, -1, i);
            off += snprintf(err + off, errlen - off, "%s%s", i > 1 ? "\n" : "", lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        lua_settop(L, top);
        return -1;
    }
    lua_pop(L, 1);
    int rc = gw_master_apply(L, err, errlen);
    lua_settop(L, top);
    return rc;
}

static void do_reload(const char *why)
{
    char err[8192];
    gw_notice("reloading (%s)", why);
    if (reload_file(err, sizeof err) != 0) {
        M.last_reload = gw_now();
        M.last_reload_ok = 0;
        snprintf(M.last_reload_msg, sizeof M.last_reload_msg, "%s", err);
        gw_err("reload rejected, the running config stays:\n%s", err);
    }
}

static void stop_all(int sig)
{
    M.stopping = 1;
    for (int i = 0; i < GW_MAX_WORKERS * 2; i++)
        if (M.w[i].pid > 0) kill(M.w[i].pid, sig);
}

static int live_workers(void)
{
    int n = 0;
    for (int i = 0; i < GW_MAX_WORKERS * 2; i++) if (M.w[i].pid > 0) n++;
    return n;
}

static void sig_cb(evutil_socket_t sig, short ev, void *arg)
{
    (void)ev; (void)arg;
    switch (sig) {
    case SIGUSR1:
        /* logrotate's postrotate: the error log here, the access and error logs in the workers */
        gw_reopen_error_log();
        for (int i = 0; i < GW_MAX_WORKERS * 2; i++) if (M.w[i].pid > 0) kill(M.w[i].pid, SIGUSR1);
        gw_notice("SIGUSR1: logs reopened");
        break;
    case SIGHUP:
        if (M.stopping) { gw_notice("SIGHUP ignored: gw is stopping"); break; }
        do_reload("SIGHUP");
        break;
    case SIGTERM:
    case SIGINT:
        gw_notice("stopping (%s)", sig == SIGINT ? "SIGINT" : "SIGTERM");
        stop_all(SIGTERM);
        break;
    case SIGQUIT:
        gw_notice("graceful stop (SIGQUIT): draining");
        stop_all(SIGQUIT);
        break;
    case SIGCHLD: {
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            int i;
            for (i = 0; i < GW_MAX_WORKERS * 2; i++) if (M.w[i].pid == pid) break;
            if (i == GW_MAX_WORKERS * 2) continue;
            int old = M.w[i].old;
            M.w[i].pid = 0;
            if (gw_stats) memset(&gw_stats->workers[i], 0, sizeof gw_stats->workers[i]);
            if (M.stopping || old) {
                if (WIFSIGNALED(status) && WTERMSIG(status) != SIGTERM && WTERMSIG(status) != SIGQUIT)
                    gw_err("worker %d (stopping) died on signal %d", pid, WTERMSIG(status));
                else
                    gw_info("worker %d exited", pid);
                continue;
            }
            if (WIFSIGNALED(status))
                gw_err("worker %d died on signal %d, respawning", pid, WTERMSIG(status));
            else
                gw_err("worker %d exited with status %d, respawning", pid, WEXITSTATUS(status));
            respawn(i);
        }
        if (M.stopping && live_workers() == 0) event_base_loopbreak(M.base);
        break;
    }
    }
}

/* ---- admin API: a small HTTP/1.1 server whose handler is lua/gw/admin.lua --------------- */


static void admin_free(admin_conn *a)
{
    if (a->deferred) evbuffer_free(a->deferred);
    if (a->prev) a->prev->next = a->next; else admin_conns = a->next;
    if (a->next) a->next->prev = a->prev;
    bufferevent_free(a->bev);
    free(a);
}

static void admin_reply(admin_conn *a, int status, const char *ctype, const char *body, size_t bl, int close_after)
{
    struct evbuffer *out = a->deferred ? a->deferred : bufferevent_get_output(a->bev);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nServer: gw\r\n%s\r\n",
                        status, status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error",
                        ctype, bl, close_after ? "Connection: close\r\n" : "");
    evbuffer_add(out, body, bl);
}

static void admin_read_cb(struct bufferevent *bev, void *arg)
{
    admin_conn *a = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (!avail) return;
        size_t n = avail < sizeof a->buf ? avail : sizeof a->buf;
        evbuffer_copyout(in, a->buf, n);
        gw_http_request req;
        gw_header hdrs[100];
        gw_http_limits lim = { 8192, 32768, 100 };
        int rc = gw_http_parse_request(a->buf, n, &req, hdrs, 100, &lim);
        if (rc == GW_HTTP_AGAIN) {
            if (n == sizeof a->buf) { admin_reply(a, 431, "application/json", "{\"message\":\"head too large\"}", 28, 1); }
            return;
        }
        if (rc < 0) {
            char m[256];
            int ml = snprintf(m, sizeof m, "{\"message\":\"%s\"}", req.error ? req.error : "Bad request");
            admin_reply(a, req.status ? req.status : 400, "application/json", m, ml, 1);
            bufferevent_disable(bev, EV_READ);
            return;
        }
        if (req.chunked) {
            admin_reply(a, 411, "application/json", "{\"message\":\"send a Content-Length\"}", 35, 1);
            bufferevent_disable(bev, EV_READ);
            return;
        }
        size_t blen = req.content_length > 0 ? (size_t)req.content_length : 0;
        if (blen > 256u * 1024 * 1024) {
            admin_reply(a, 413, "application/json", "{\"message\":\"body too large\"}", 28, 1);
            bufferevent_disable(bev, EV_READ);
            return;
        }
        if (avail < (size_t)rc + blen) return; /* wait for the whole body */
        lua_State *L = M.L;
        int top = lua_gettop(L);
        lua_getglobal(L, "require");
        lua_pushliteral(L, "gw.admin");
        if (gw_vm_pcall(L, 1, 1, "gw.admin") != 0) { lua_settop(L, top); admin_reply(a, 500, "application/json", "{}", 2, 1); return; }
        lua_getfield(L, -1, "handle");
        lua_createtable(L, 0, 6);
        lua_pushlstring(L, req.method.p, req.method.n); lua_setfield(L, -2, "method");
        lua_pushlstring(L, req.path.p, req.path.n); lua_setfield(L, -2, "path");
        lua_pushlstring(L, req.query.p, req.query.n); lua_setfield(L, -2, "query");
        lua_pushboolean(L, a->status_only); lua_setfield(L, -2, "status_only");
        lua_newtable(L);
        for (int i = 0; i < req.nheaders; i++) {
            char name[128];
            size_t nl = req.headers[i].name.n < sizeof name - 1 ? req.headers[i].name.n : sizeof name - 1;
            for (size_t k = 0; k < nl; k++) {
                char ch = req.headers[i].name.p[k];
                name[k] = ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
            }
            lua_pushlstring(L, name, nl);
            lua_pushlstring(L, req.headers[i].value.p, req.headers[i].value.n);
            lua_rawset(L, -3);
        }
        lua_setfield(L, -2, "headers");
        evbuffer_drain(in, rc);
        char *body = malloc(blen + 1);
        evbuffer_remove(in, body, blen);
        lua_pushlstring(L, body, blen);
        free(body);
        lua_setfield(L, -2, "body");
        int keep = req.keepalive;
        int gen_before = M.gen;
        if (gw_vm_pcall(L, 1, 3, "admin") != 0) {
            admin_reply(a, 500, "application/json", "{\"message\":\"admin handler failed\"}", 34, !keep);
        } else {
            size_t bl;
            const char *b = lua_tolstring(L, -2, &bl);
            const char *ct = lua_isstring(L, -1) ? lua_tostring(L, -1) : "application/json";
            /* A reload answered only once the swap is done: when the client reads "reloaded",
             * every new connection is served by the new generation. */
            if (M.gen != gen_before && M.swap_timer && event_pending(M.swap_timer, EV_TIMEOUT, NULL)) {
                a->deferred = evbuffer_new();
                a->deferred_close = !keep;
            }
            admin_reply(a, (int)lua_tointeger(L, -3), ct, b ? b : "", b ? bl : 0, !keep);
        }
        lua_settop(L, top);
        if (a->deferred) { bufferevent_disable(bev, EV_READ); return; }
        if (!keep) { bufferevent_disable(bev, EV_READ); return; }
    }
}

/* The swap is done: send the reload answers that waited for it. */
static void admin_flush_deferred(void)
{
    admin_conn *a = admin_conns;
    while (a) {
        admin_conn *next = a->next;
        if (a->deferred) {
            evbuffer_add_buffer(bufferevent_get_output(a->bev), a->deferred);
            evbuffer_free(a->deferred);
            a->deferred = NULL;
            if (!a->deferred_close) {
                bufferevent_enable(a->bev, EV_READ);
                admin_read_cb(a->bev, a);   /* a pipelined request may be waiting */
            }
        }
        a = next;
    }
}

static void admin_write_cb(struct bufferevent *bev, void *arg)
{
    admin_conn *a = arg;
    if (!a->deferred && !(bufferevent_get_enabled(bev) & EV_READ)) admin_free(a);
}

static void admin_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev; (void)what;
    admin_free(arg);
}

static void admin_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int sl, void *arg)
{
    (void)l; (void)sa; (void)sl;
    admin_conn *a = calloc(1, sizeof *a);
    if (!a) { close(fd); return; }
    a->status_only = arg != NULL;
    a->bev = bufferevent_socket_new(M.base, fd, BEV_OPT_CLOSE_ON_FREE);
    a->next = admin_conns;
    if (admin_conns) admin_conns->prev = a;
    admin_conns = a;
    bufferevent_setcb(a->bev, admin_read_cb, admin_write_cb, admin_event_cb, a);
    struct timeval tv = { 60, 0 };
    bufferevent_set_timeouts(a->bev, &tv, &tv);
    bufferevent_enable(a->bev, EV_READ | EV_WRITE);
}

/* gw.master: what lua/gw/admin.lua may ask of the master. */
static int l_apply(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    char err[1024];
    lua_pushvalue(L, 1);
    if (gw_master_apply(L, err, sizeof err) != 0) {
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_reload(lua_State *L)
{
    char err[8192];
    if (reload_file(err, sizeof err) != 0) {
        M.last_reload = gw_now();
        M.last_reload_ok = 0;
        snprintf(M.last_reload_msg, sizeof M.last_reload_msg, "%s", err);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_current(lua_State *L)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, M.compiled_ref);
    return 1;
}

static int l_status(lua_State *L)
{
    lua_newtable(L);
    lua_pushstring(L, GW_VERSION); lua_setfield(L, -2, "version");
    lua_pushnumber(L, gw_now() - M.started); lua_setfield(L, -2, "uptime");
    lua_pushinteger(L, M.gen); lua_setfield(L, -2, "generation");
    lua_pushinteger(L, getpid()); lua_setfield(L, -2, "pid");
    lua_pushstring(L, M.file); lua_setfield(L, -2, "config_file");
    lua_newtable(L);
    lua_pushnumber(L, M.last_reload); lua_setfield(L, -2, "time");
    lua_pushboolean(L, M.last_reload_ok); lua_setfield(L, -2, "ok");
    lua_pushstring(L, M.last_reload_msg); lua_setfield(L, -2, "message");
    lua_setfield(L, -2, "last_reload");
    lua_newtable(L);
    int k = 0;
    for (int i = 0; i < GW_MAX_WORKERS * 2; i++) {
        if (M.w[i].pid <= 0) continue;
        lua_newtable(L);
        lua_pushinteger(L, M.w[i].pid); lua_setfield(L, -2, "pid");
        lua_pushinteger(L, M.w[i].gen); lua_setfield(L, -2, "generation");
        lua_pushboolean(L, M.w[i].old); lua_setfield(L, -2, "draining");
        if (gw_stats && gw_stats->workers[i].pid == M.w[i].pid) {
            gw_worker_stats *s = &gw_stats->workers[i];
            lua_pushnumber(L, (lua_Number)s->connections); lua_setfield(L, -2, "connections");
            lua_pushnumber(L, (lua_Number)s->accepted); lua_setfield(L, -2, "accepted");
            lua_pushnumber(L, (lua_Number)s->requests); lua_setfield(L, -2, "requests");
            lua_pushnumber(L, (lua_Number)s->lua_kb); lua_setfield(L, -2, "lua_memory_kb");
        }
        lua_rawseti(L, -2, ++k);
    }
    lua_setfield(L, -2, "workers");
    return 1;
}

/* gw.master.health(name): {target = {fails = max over workers, down_workers = n, down_until =}}
 * from what the current generation's workers published (at most a second old). */
static int l_health(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_newtable(L);
    double now = gw_now();
    for (int i = 0; i < GW_MAX_WORKERS * 2 && gw_stats; i++) {
        if (M.w[i].pid <= 0 || M.w[i].gen != M.gen) continue;
        gw_worker_stats *ws = &gw_stats->workers[i];
        if (ws->pid != M.w[i].pid) continue;
        for (int k = 0; k < ws->nhealth && k < GW_HEALTH_MAX; k++) {
            gw_target_health *h = &ws->health[k];
            if (strcmp(h->upstream, name) != 0) continue;
            lua_getfield(L, -1, h->target);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_newtable(L);
                lua_pushinteger(L, 0); lua_setfield(L, -2, "fails");
                lua_pushinteger(L, 0); lua_setfield(L, -2, "down_workers");
                lua_pushinteger(L, 0); lua_setfield(L, -2, "workers");
                lua_pushvalue(L, -1);
                lua_setfield(L, -3, h->target);
            }
            lua_getfield(L, -1, "workers");
            lua_pushinteger(L, lua_tointeger(L, -1) + 1);
            lua_setfield(L, -3, "workers");
            lua_pop(L, 1);
            lua_getfield(L, -1, "fails");
            if (h->fails > lua_tointeger(L, -1)) { lua_pushinteger(L, h->fails); lua_setfield(L, -3, "fails"); }
            lua_pop(L, 1);
            if (h->down_until > now) {
                lua_getfield(L, -1, "down_workers");
                lua_pushinteger(L, lua_tointeger(L, -1) + 1);
                lua_setfield(L, -3, "down_workers");
                lua_pop(L, 1);
                lua_getfield(L, -1, "down_until");
                if (lua_isnil(L, -1) || h->down_until > lua_tonumber(L, -1)) {
                    lua_pushnumber(L, h->down_until);
                    lua_setfield(L, -3, "down_until");
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    }
    return 1;
}

/* master.metrics(): the Prometheus text of every worker's figures (metrics.c). */
static int l_metrics(lua_State *L)
{
    struct evbuffer *b = evbuffer_new();
    gw_metrics_render(b);
    size_t n = evbuffer_get_length(b);
    lua_pushlstring(L, (const char *)evbuffer_pullup(b, (ssize_t)n), n);
    evbuffer_free(b);
    return 1;
}

int luaopen_gw_master(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "health", l_health }, { "metrics", l_metrics },
        { "apply", l_apply }, { "reload", l_reload }, { "current", l_current }, { "status", l_status },
        { NULL, NULL }
    };
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}

/* libevent's own messages go to the error log. Its warning about a second event base taking
 * over signal handling is expected: each worker's loop replaces the master's it inherited. */
static void libevent_log(int severity, const char *msg)
{
    if (strstr(msg, "Added a signal to event base")) return;
    if (severity >= EVENT_LOG_ERR) gw_err("libevent: %s", msg);
    else if (severity >= EVENT_LOG_WARN) gw_warn("libevent: %s", msg);
    else gw_debug("libevent: %s", msg);
}

int gw_master_run(const char *file)
{
    signal(SIGPIPE, SIG_IGN);
    /* ignored here and so in a new worker until it installs its own handler (worker.c) */
    signal(GW_WATCHDOG_SIGNAL, SIG_IGN);
    event_set_log_callback(libevent_log);
    memset(&M, 0, sizeof M);
    M.file = file;
    M.admin_fd = -1;
    M.status_fd = -1;
    M.compiled_ref = LUA_NOREF;
    M.started = gw_now();
    lua_State *L = gw_vm_new();
    /* The master only compiles configs: no JIT here, so no traces pile up across reloads in the
     * heap every worker inherits. Workers switch the JIT on for themselves. */
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    M.L = L;
    lua_getfield(L, LUA_GLOBALSINDEX, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_gw_master);
    lua_setfield(L, -2, "gw.master");
    lua_pop(L, 2);

    lua_getglobal(L, "require");
    lua_pushliteral(L, "gw.config");
    if (gw_vm_pcall(L, 1, 1, "gw.config") != 0) return 1;
    lua_getfield(L, -1, "load_file");
    lua_pushstring(L, file);
    if (gw_vm_pcall(L, 1, 2, "config") != 0) return 1;
    if (lua_isnil(L, -2)) {
        int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            fprintf(stderr, "%s\n", lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        fprintf(stderr, "gw: %s: configuration rejected\n", file);
        return 1;
    }
    lua_pop(L, 1);
    int ci = lua_gettop(L);
    set_compiled_globals(L, ci);

    if (gw_shm_stats_init() != 0 || gw_metrics_init() != 0 || gw_tls_shm_init() != 0) {
        gw_err("cannot create shared memory");
        return 1;
    }
    char err[512];
    lua_getfield(L, ci, "gw");
    int gwi = lua_gettop(L);
    if (create_dicts(L, ci, err, sizeof err) != 0) { gw_err("%s", err); return 1; }
    lua_getfield(L, gwi, "listen");
    int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    for (int i = 1; i <= n && M.nls < 16; i++) {
        lua_rawgeti(L, -1, i);
        lua_getfield(L, -1, "host");
        lua_getfield(L, -2, "port");
        lua_getfield(L, -3, "ssl");
        const char *h = lua_tostring(L, -3);
        int port = (int)lua_tointeger(L, -2);
        int ssl = lua_toboolean(L, -1);
        int fd = open_listener(h, port, err, sizeof err);
        if (fd < 0) { gw_err("%s", err); return 1; }
        M.ls[M.nls].fd = fd;
        M.ls[M.nls].port = port;
        M.ls[M.nls].ssl = ssl;
        M.nls++;
        gw_notice("proxy listening on %s:%d%s", h, port, ssl ? " (TLS)" : "");
        lua_pop(L, 4);
    }
    lua_pop(L, 1);
    M.base = event_base_new();
    lua_getfield(L, gwi, "admin_listen");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "host");
        lua_getfield(L, -2, "port");
        const char *h = lua_tostring(L, -2);
        int port = (int)lua_tointeger(L, -1);
        M.admin_fd = open_listener(h, port, err, sizeof err);
        if (M.admin_fd < 0) { gw_err("admin: %s", err); return 1; }
        M.admin = evconnlistener_new(M.base, admin_accept, NULL, 0, -1, M.admin_fd);
        gw_notice("admin listening on %s:%d", h, port);
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    lua_getfield(L, gwi, "status_listen");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "host");
        lua_getfield(L, -2, "port");
        const char *h = lua_tostring(L, -2);
        int port = (int)lua_tointeger(L, -1);
        M.status_fd = open_listener(h, port, err, sizeof err);
        if (M.status_fd < 0) { gw_err("status: %s", err); return 1; }
        M.status = evconnlistener_new(M.base, admin_accept, (void *)1, 0, -1, M.status_fd);
        gw_notice("status listening on %s:%d (GET /metrics, /status)", h, port);
        lua_pop(L, 2);
    }
    lua_pop(L, 2);

    int sigs[] = { SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGCHLD, SIGUSR1, 0 };
    for (int i = 0; sigs[i]; i++) event_add(evsignal_new(M.base, sigs[i], sig_cb, NULL), NULL);

    /* compiled config is at the top of the stack */
    if (gw_master_apply(L, err, sizeof err) != 0) {
        gw_err("%s: %s", file, err);
        return 1;
    }
    gw_notice("gw %s started, master pid %d", GW_VERSION, getpid());
    event_base_dispatch(M.base);
    /* wait for whatever is left (SIGTERM'd workers) */
    while (live_workers() > 0) {
        int status;
        pid_t pid = wait(&status);
        if (pid < 0) break;
        for (int i = 0; i < GW_MAX_WORKERS * 2; i++) if (M.w[i].pid == pid) M.w[i].pid = 0;
    }
    gw_notice("gw stopped");
    return 0;
}
