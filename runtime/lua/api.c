/* api.c — the request phases in Lua: one coroutine per request, reused across its phases, runs
 * the route's plugin chain through gw._run_phase (lua/gw/init.lua). A phase that no plugin of the
 * route implements is skipped in C without touching the VM. Also the FFI functions behind the hot
 * gw.request / gw.service.request / gw.response calls, and the classic C functions that yield
 * (gw.sleep, reading the request body). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "gw.h"
#include "api.h"
#include "conn.h"
#include "worker.h"
#include "vm.h"

enum { RUN_OK = 0, RUN_EXIT = 1, RUN_ERROR = 2, RUN_SUSPENDED = 3 };

static int runner_ref = LUA_NOREF;
static int failed_ref = LUA_NOREF;   /* gw._handler_failed: a failing handler's phase timing ends */

static void step_request(gw_req *r, int from);
static void after_header_filter(gw_req *r, int res);
static void body_ready(gw_req *r);
static void after_body_filter(gw_req *r, int res);

static int phase_bit(gw_req *r, int phase)
{
    return r->route && (r->route->phase_mask & (1u << phase));
}

/* Drops r's coroutine where it stands (after gw.response.exit, an error, or a body read that
 * failed): the next phase starts on a fresh one. */
static void abandon_co(gw_req *r)
{
    if (r->co_ref >= 0) luaL_unref(gw_W->L, LUA_REGISTRYINDEX, r->co_ref);
    r->co_ref = LUA_NOREF;
    r->co = NULL;
}

/* A coroutine that ended with an error: its message and its traceback (the stack is still
 * there after lua_resume returned the error), pushed on L and returned. */
static const char *co_traceback(lua_State *L, lua_State *co)
{
    const char *msg = lua_tostring(co, -1);
    if (!msg) msg = lua_pushfstring(co, "(error object is a %s value)", luaL_typename(co, -1));
    luaL_traceback(L, co, msg, 0);
    return lua_tostring(L, -1);
}

/* The error that ended co is gw._END_HANDLER: the handler ended itself, not the request
 * (kong-compat's ngx.exit(ngx.OK)). Looked up on this rare path only. */
int gw_api_ended_handler(lua_State *L, lua_State *co)
{
    int top = lua_gettop(L), same = 0;
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1);
    if (lua_istable(L, top + 1)) {
        lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
        lua_getfield(L, -1, "gw");
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "_END_HANDLER");
            same = lua_rawequal(L, -1, top + 1);
        }
    }
    lua_settop(L, top);
    return same;
}

static int phase_enter_at(gw_req *r, int phase, int from);

/* Resumes r's coroutine. RUN_SUSPENDED when it yielded (a timer or I/O will resume it). */
static int co_resume(gw_req *r, int nargs)
{
    lua_State *co = r->co;
    gw_cur = r;
    int rc = lua_resume(co, nargs);
    gw_cur = NULL;
    if (rc == LUA_YIELD) {
        if (!r->exited) return RUN_SUSPENDED;
        /* gw.response.exit: the coroutine is abandoned where it yielded. The flag is consumed
         * here, so a later phase of this request (log) may yield in gw.sleep again. */
        r->exited = 0;
        abandon_co(r);
        return RUN_EXIT;
    }
    if (rc != 0) {
        /* A handler raised an error (the runner calls handlers without a pcall of its own): the
         * coroutine is dead, its stack still there for the traceback. */
        lua_State *L = gw_W->L;
        if (failed_ref != LUA_NOREF) {
            gw_cur = r;
            lua_rawgeti(L, LUA_REGISTRYINDEX, failed_ref);
            gw_vm_pcall(L, 0, 0, "gw._handler_failed");
            gw_cur = NULL;
        }
        if (r->plugin_id > 0 && gw_api_ended_handler(L, co)) {
            /* the phase goes on with the next plugin, in a fresh coroutine */
            int next = r->plugin_at + 5;
            r->plugin_id = 0;
            abandon_co(r);
            return phase_enter_at(r, r->phase, next);
        }
        const char *tb = co_traceback(L, co);
        const char *plugin = r->plugin_id > 0 ? gw_plugin_name(r->plugin_id) : NULL;
        const char *ph = gw_phase_names[r->phase];
        if (plugin) gw_err("[%s] plugin '%s' failed in the %s phase: %s, request: %s", ph, plugin, ph, tb, r->id_str);
        else gw_err("[%s] request %s: %s", ph, r->id_str, tb);
        lua_pop(L, 1);
        r->plugin_id = 0;
        abandon_co(r);
        return RUN_ERROR;
    }
    int res = (int)lua_tointeger(co, 1);
    lua_settop(co, 0);
    return res;
}

/* Coroutines of finished requests, kept for the next ones: a request that runs plugins takes
 * one instead of making a thread (a stack allocation, a registry slot and garbage) each time. */
#define CO_POOL 64
static struct { lua_State *co; int ref; } co_pool[CO_POOL];
static int co_pooled;

/* r is done with its coroutine: back to the pool when it finished cleanly, else released. */
static void release_co(gw_req *r)
{
    if (r->co_ref < 0) return;
    lua_State *co = r->co;
    if (co && lua_status(co) == 0 && co_pooled < CO_POOL && !r->c->test) {
        lua_settop(co, 0);
        co_pool[co_pooled].co = co;
        co_pool[co_pooled].ref = r->co_ref;
        co_pooled++;
    } else {
        luaL_unref(gw_W->L, LUA_REGISTRYINDEX, r->co_ref);
    }
    r->co_ref = LUA_NOREF;
    r->co = NULL;
}

static int phase_enter(gw_req *r, int phase) { return phase_enter_at(r, phase, 1); }

static int phase_enter_at(gw_req *r, int phase, int from)
{
    lua_State *L = gw_W->L;
    if (r->co_ref == LUA_NOREF || r->co_ref == -2) {
        if (co_pooled > 0) {
            co_pooled--;
            r->co = co_pool[co_pooled].co;
            r->co_ref = co_pool[co_pooled].ref;
        } else {
            r->co = lua_newthread(L);
            r->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        }
    }
    if (r->ctx_ref < 0) {
        /* gw.ctx.shared made here, so the Lua side always finds it in its registry slot (one
         * path through the trace instead of a "made yet?" branch taken both ways per request),
         * with room for four fields (an authenticating plugin's two and two more) so the first
         * ones written do not grow it twice */
        lua_createtable(L, 0, 4);
        r->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_State *co = r->co;
    lua_settop(co, 0);
    lua_rawgeti(co, LUA_REGISTRYINDEX, runner_ref);
    lua_pushinteger(co, phase);
    lua_rawgeti(co, LUA_REGISTRYINDEX, r->route->chain_ref);
    lua_pushinteger(co, from);
    r->phase = phase;
    return co_resume(r, 3);
}

/* The coroutine finished the phase it was suspended in: continue where that phase leads. */
static void phase_finished(gw_req *r, int res)
{
    switch (r->phase) {
    case GW_PHASE_REWRITE:
        if (res == RUN_OK) { step_request(r, GW_PHASE_ACCESS); return; }
        break;
    case GW_PHASE_ACCESS:
        if (res == RUN_OK) { step_request(r, GW_PHASE_BALANCER); return; }
        break;
    case GW_PHASE_HEADER_FILTER:
        after_header_filter(r, res);
        return;
    case GW_PHASE_LOG:
        gw_req_complete(r);
        return;
    case GW_PHASE_BALANCER:
        if (res == RUN_OK) gw_proxy_start(r);
        else gw_req_error(r, 500, "An unexpected error occurred");
        return;
    case GW_PHASE_BODY_FILTER:
        after_body_filter(r, res);
        return;
    default:
        return;
    }
    /* rewrite/access ended with exit or error */
    if (res == RUN_EXIT) {
        r->local = 1;
        gw_api_response_ready(r);
    } else {
        gw_req_error(r, 500, "An unexpected error occurred");
    }
}

void gw_req_lua_resume(gw_req *r, int nargs)
{
    /* a gw.test.context request: testctx.c resumes it itself, outside the state machine */
    if (r->c->test) { r->c->test_wake = 1; return; }
    int res = co_resume(r, nargs);
    if (res == RUN_SUSPENDED) return;
    phase_finished(r, res);
}

static void step_request(gw_req *r, int from)
{
    for (int ph = from; ph <= GW_PHASE_ACCESS; ph++) {
        if (ph != GW_PHASE_REWRITE && ph != GW_PHASE_ACCESS) continue;
        if (!phase_bit(r, ph)) continue;
        r->state = GW_RS_LUA;
        int res = phase_enter(r, ph);
        if (res == RUN_SUSPENDED) return;
        if (res != RUN_OK) { phase_finished(r, res); return; }
    }
    if (!r->svc) {
        gw_req_error(r, 404, "no Route matched with those values");
        return;
    }
    gw_req_build_path(r);
    if (r->svc->protocol == GW_PROTO_ECHO) {
        /* the echo service answers with the whole request, so it reads the body first */
        r->state = GW_RS_BODY;
        r->body_buffered = 1;
        gw_api_body_readable(r);
        return;
    }
    if (from <= GW_PHASE_BALANCER && phase_bit(r, GW_PHASE_BALANCER)) {
        /* last word on the target: gw.service.set_target / set_upstream */
        r->state = GW_RS_LUA;
        int res = phase_enter(r, GW_PHASE_BALANCER);
        if (res == RUN_SUSPENDED) return;
        if (res != RUN_OK) { gw_req_error(r, 500, "An unexpected error occurred"); return; }
    }
    gw_proxy_start(r);
}

void gw_api_run_request(gw_req *r, int no_route)
{
    if (no_route) r->svc = NULL;
    step_request(r, GW_PHASE_REWRITE);
}

void gw_api_response_ready(gw_req *r)
{
    if (!phase_bit(r, GW_PHASE_HEADER_FILTER)) { after_header_filter(r, RUN_OK); return; }
    r->state = GW_RS_LUA;
    int res = phase_enter(r, GW_PHASE_HEADER_FILTER);
    if (res == RUN_SUSPENDED) return;
    after_header_filter(r, res);
}

static void after_header_filter(gw_req *r, int res)
{
    if (res == RUN_ERROR) {
        /* the head has not gone out yet: the client gets a clean 500 instead */
        if (r->up) gw_proxy_abort(r);
        r->nrhdrs = 0;
        r->status = 500;
        if (!r->lbody) r->lbody = evbuffer_new();
        evbuffer_drain(r->lbody, evbuffer_get_length(r->lbody));
        static const char msg[] = "{\"message\":\"An unexpected error occurred\"}";
        evbuffer_add(r->lbody, msg, sizeof msg - 1);
        gw_req_set_header(r, r->rhdrs, &r->nrhdrs, "Content-Type", 12, "application/json", 16, 0);
        r->local = 1;
        r->resp_close = 1;
    }
    if (r->local) gw_req_send_local(r);
    else gw_proxy_head_filtered(r);
}

int gw_api_wants(gw_req *r, int phase)
{
    return phase_bit(r, phase);
}

/* body_filter runs (and the body is gathered for it) unless every instance of the chain that has
 * one said in header_filter that it does not want this response's body. */
int gw_api_wants_body_filter(gw_req *r)
{
    return phase_bit(r, GW_PHASE_BODY_FILTER) && r->bf_skipped < r->route->bf_count;
}

/* body_filter: the whole response body is in r->lbody (proxy.c buffered it, or gw made it);
 * the plugins may read and replace it (gw.response.get_raw_body / set_raw_body); then it goes
 * out with its new Content-Length. */
void gw_api_run_body_filter(gw_req *r)
{
    r->bf_done = 1;
    if (!r->lbody) r->lbody = evbuffer_new();
    r->state = GW_RS_LUA;
    int res = phase_enter(r, GW_PHASE_BODY_FILTER);
    if (res == RUN_SUSPENDED) return;
    after_body_filter(r, res);
}

static void after_body_filter(gw_req *r, int res)
{
    if (res == RUN_ERROR) {
        /* nothing of the response has gone out yet: a clean 500 instead */
        r->nrhdrs = 0;
        r->status = 500;
        evbuffer_drain(r->lbody, evbuffer_get_length(r->lbody));
        static const char msg[] = "{\"message\":\"An unexpected error occurred\"}";
        evbuffer_add(r->lbody, msg, sizeof msg - 1);
        gw_req_set_header(r, r->rhdrs, &r->nrhdrs, "Content-Type", 12, "application/json", 16, 0);
    }
    r->local = 1;
    gw_req_send_local(r);
}

/* gw.response.get_raw_body() in body_filter: the whole response body. */
static int l_resp_body(lua_State *L)
{
    gw_req *r = gw_cur;
    if (!r || !r->lbody) { lua_pushliteral(L, ""); return 1; }
    size_t n = evbuffer_get_length(r->lbody);
    lua_pushlstring(L, n ? (const char *)evbuffer_pullup(r->lbody, (ssize_t)n) : "", n);
    return 1;
}

/* gw.response.set_raw_body(s) in body_filter: replaces the response body. */
static int l_set_resp_body(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    gw_req *r = gw_cur;
    if (!r) return luaL_error(L, "no request");
    if (!r->lbody) r->lbody = evbuffer_new();
    evbuffer_drain(r->lbody, evbuffer_get_length(r->lbody));
    evbuffer_add(r->lbody, s, n);
    return 0;
}

void gw_api_run_log(gw_req *r)
{
    if (!phase_bit(r, GW_PHASE_LOG)) { gw_req_complete(r); return; }
    r->state = GW_RS_LOG;
    int res = phase_enter(r, GW_PHASE_LOG);
    if (res == RUN_SUSPENDED) return;
    gw_req_complete(r);
}

void gw_wait_resume(gw_req *r, lua_State *co, int co_ref)
{
    if (r) {
        r->wait_op = NULL;
        gw_req_lua_resume(r, 0);
        return;
    }
    gw_api_resume_timer(co, co_ref);
}

void gw_wait_cancel(gw_req *r)
{
    if (r->wait_op) ((gw_wait *)r->wait_op)->cancel(r);
}

/* The client went away before its request was done: what the request was waiting for is
 * abandoned (a sleeping or calling coroutine, the upstream), and the log phase runs as for any
 * request, so that logs and metrics see it. Returns 1 when the log phase suspended (it ends
 * through gw_req_complete), 0 when it is done. */
int gw_api_run_log_aborted(gw_req *r)
{
    lua_State *L = gw_W->L;
    if (r->wait_ev) {
        free(event_get_callback_arg(r->wait_ev));
        event_free(r->wait_ev);
        r->wait_ev = NULL;
    }
    gw_wait_cancel(r);
    if (r->co_ref >= 0) luaL_unref(L, LUA_REGISTRYINDEX, r->co_ref);
    r->co_ref = LUA_NOREF;
    r->co = NULL;
    r->state = GW_RS_LOG;
    return phase_enter(r, GW_PHASE_LOG) == RUN_SUSPENDED;
}

void gw_api_req_cleanup(gw_req *r)
{
    lua_State *L = gw_W->L;
    if (r->wait_ev) {
        /* a gw.sleep that will never fire: its sleeper goes with it */
        free(event_get_callback_arg(r->wait_ev));
        event_free(r->wait_ev);
        r->wait_ev = NULL;
    }
    gw_wait_cancel(r);   /* gw.http / gw.redis calls nobody will wait for */
    release_co(r);
    if (r->ctx_ref >= 0) luaL_unref(L, LUA_REGISTRYINDEX, r->ctx_ref);
    r->ctx_ref = LUA_NOREF;
}

/* ---- whole-body reads (echo service, gw.request.get_raw_body) ------------------------- */

int gw_req_pull_body(gw_req *r, struct evbuffer *in, struct evbuffer *dst, int rechunk);

void gw_api_body_readable(gw_req *r)
{
    if (!r->body) r->body = evbuffer_new();
    if (!r->body_done) {
        int rc = gw_req_pull_body(r, gw_io_input(r->c->io), r->body, 0);
        if (rc < 0) {
            gw_api_body_failed(r, rc == -413 ? 413 : 400, rc == -413 ? "Request body too large" : "Invalid request body");
            return;
        }
        if (!r->body_done) return;
    }
    body_ready(r);
}

/* The request body cannot be read to its end (malformed, too large, timed out): the request is
 * answered `status` and the connection closes after it. */
void gw_api_body_failed(gw_req *r, int status, const char *msg)
{
    r->resp_close = 1;
    r->body_done = 1;  /* nothing more will be read from this connection */
    /* a handler waiting in gw.request.get_raw_body never resumes: the request ends here
     * (a fresh coroutine runs header_filter and log) */
    if (r->co && lua_status(r->co) == LUA_YIELD) abandon_co(r);
    gw_req_error(r, status, msg);
}

static void body_ready(gw_req *r)
{
    if (r->phase == GW_PHASE_ACCESS || r->phase == GW_PHASE_REWRITE) {
        if (r->co && lua_status(r->co) == LUA_YIELD) {
            r->state = GW_RS_LUA;
            size_t n = evbuffer_get_length(r->body);
            lua_pushlstring(r->co, (const char *)evbuffer_pullup(r->body, n), n);
            gw_req_lua_resume(r, 1);
            return;
        }
    }
    gw_echo_respond(r);
}

/* Ends the running phase like gw.response.exit with gw's JSON error body: the yield is taken
 * by co_resume as an exit. */
static int exit_with_error(lua_State *L, gw_req *r, int status, const char *msg)
{
    char body[256];
    int n = snprintf(body, sizeof body, "{\"message\":\"%s\"}", msg);
    r->nrhdrs = 0;
    gw_req_set_header(r, r->rhdrs, &r->nrhdrs, "Content-Type", 12, "application/json", 16, 0);
    if (!r->lbody) r->lbody = evbuffer_new();
    evbuffer_drain(r->lbody, evbuffer_get_length(r->lbody));
    evbuffer_add(r->lbody, body, (size_t)n);
    r->status = status;
    r->local = 1;
    r->exited = 1;
    r->resp_close = 1;
    return lua_yield(L, 0);
}

/* Functions that suspend the request (gw.sleep, reading the body) must run in the request's
 * own coroutine: the event that resumes it resumes that one, not a coroutine of the plugin's. */
static int check_own_co(lua_State *L, gw_req *r, const char *fname)
{
    if (r->co == L) return 0;
    return luaL_error(L, "%s: cannot suspend a coroutine created by the plugin (call it from the handler itself)", fname);
}

/* gw.request.get_raw_body(): the body as a string, reading it first when needed (yields). A body
 * over max_body_size or with broken framing ends the request with 413 / 400. */
static int l_read_body(lua_State *L)
{
    gw_req *r = gw_cur;
    if (!r) return luaL_error(L, "no request");
    if (r->body_buffered && r->body_done) {
        size_t n = evbuffer_get_length(r->body);
        lua_pushlstring(L, (const char *)evbuffer_pullup(r->body, n), n);
        return 1;
    }
    if (r->body_done && !r->body_buffered) { lua_pushliteral(L, ""); return 1; }
    check_own_co(L, r, "gw.request.get_raw_body");
    r->body_buffered = 1;
    if (!r->body) r->body = evbuffer_new();
    int rc = gw_req_pull_body(r, gw_io_input(r->c->io), r->body, 0);
    if (rc < 0) {
        r->body_done = 1;
        return exit_with_error(L, r, rc == -413 ? 413 : 400, rc == -413 ? "Request body too large" : "Invalid request body");
    }
    if (r->body_done) {
        size_t n = evbuffer_get_length(r->body);
        lua_pushlstring(L, (const char *)evbuffer_pullup(r->body, n), n);
        return 1;
    }
    if (r->h.expect_continue && r->body_read == 0)
        evbuffer_add(gw_io_output(r->c->io), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    r->state = GW_RS_BODY;
    return lua_yield(L, 0);
}

int gw_router_push_captures(lua_State *L, const void *regex, const char *path, size_t n);

/* core.uri_captures(): the captures table of the route's regex path, or nil. */
static int l_uri_captures(lua_State *L)
{
    gw_req *r = gw_cur;
    if (!r) return luaL_error(L, "no request");
    return gw_router_push_captures(L, r->route_re, r->h.path.p, r->h.path.n);
}

/* gw.service.request.set_raw_body(s): replaces the body sent upstream. */
static int l_set_body(lua_State *L)
{
    gw_req *r = gw_cur;
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (!r) return luaL_error(L, "no request");
    if (!r->body_done) return luaL_error(L, "read the body first (gw.request.get_raw_body)");
    if (!r->body) r->body = evbuffer_new();
    evbuffer_drain(r->body, evbuffer_get_length(r->body));
    evbuffer_add(r->body, s, n);
    r->body_buffered = 1;
    r->body_replaced = 1;
    return 0;
}

/* ---- gw.sleep and timers -------------------------------------------------------------- */

typedef struct sleeper {
    struct event *ev;
    gw_req *r;              /* request whose coroutine sleeps, or NULL for a timer coroutine */
    lua_State *co;
    int co_ref;
    int fn_ref;             /* timer: the function (and its args table) to run */
    int args_ref;
    double every;
    struct sleeper *prev, *next;    /* pending timers (fn_ref set), for premature runs */
} sleeper;

static sleeper *timers;             /* gw.timer.at / every not run yet (or between runs) */
static int timers_suspended;        /* timer callbacks suspended in gw.sleep, gw.http, gw.redis */

int gw_api_timers_suspended(void) { return timers_suspended; }

static void timer_run(sleeper *s, int premature);

static void timer_link(sleeper *s)
{
    s->prev = NULL;
    s->next = timers;
    if (timers) timers->prev = s;
    timers = s;
}

static void timer_unlink(sleeper *s)
{
    if (s->prev) s->prev->next = s->next; else if (timers == s) timers = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

/* A timer callback failed: its message with the coroutine's traceback. */
static void timer_error(lua_State *L, lua_State *co)
{
    gw_err("timer failed: %s", co_traceback(L, co));
    lua_pop(L, 1);
}

/* Resumes a timer's coroutine once what it waited for (gw.sleep, gw.http, gw.redis) is done, and
 * drops that wait's anchor `ref` either way: a coroutine that suspended again is anchored by what
 * it waits for now, so keeping the reference would pin it (and all it holds) forever. */
void gw_api_resume_timer(lua_State *co, int ref)
{
    lua_State *L = gw_W && gw_W->L ? gw_W->L : co;
    int rc = lua_resume(co, 0);
    if (rc != 0 && rc != LUA_YIELD) timer_error(L, co);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    if (rc != LUA_YIELD) {              /* the callback is done: a draining worker may exit now */
        timers_suspended--;
        gw_worker_maybe_exit();
    }
}

static void sleep_fire(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    sleeper *s = arg;
    gw_req *r = s->r;
    if (r) {
        event_free(r->wait_ev);
        r->wait_ev = NULL;
        free(s);
        gw_req_lua_resume(r, 0);
        return;
    }
    if (s->fn_ref != LUA_NOREF) { timer_run(s, 0); return; }
    /* a timer coroutine that slept */
    gw_api_resume_timer(s->co, s->co_ref);
    event_free(s->ev);
    free(s);
}

static struct timeval tv_of(double sec)
{
    if (sec < 0) sec = 0;
    struct timeval tv = { (time_t)sec, (suseconds_t)((sec - (time_t)sec) * 1e6) };
    return tv;
}

static int l_sleep(lua_State *L)
{
    double sec = luaL_checknumber(L, 1);
    gw_req *r = gw_cur;
    if (r) check_own_co(L, r, "gw.sleep");
    sleeper *s = calloc(1, sizeof *s);
    if (!s) return luaL_error(L, "no memory");
    s->r = r;
    s->fn_ref = LUA_NOREF;
    s->co = L;
    if (!r) {
        if (lua_pushthread(L)) { free(s); return luaL_error(L, "gw.sleep: cannot sleep in the main thread"); }
        s->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    s->ev = evtimer_new(gw_W->base, sleep_fire, s);
    struct timeval tv = tv_of(sec);
    evtimer_add(s->ev, &tv);
    if (r) {
        r->wait_ev = s->ev;
        r->state = r->phase == GW_PHASE_LOG ? GW_RS_LOG : GW_RS_LUA;
        /* The response is out: a client that closes now must not cut the log phase short.
         * Not reading hides its EOF; the next request (req_start) reads again. */
        if (r->phase == GW_PHASE_LOG && r->c->io) gw_io_disable(r->c->io, EV_READ);
    }
    return lua_yield(L, 0);
}

/* Runs a timer's callback in a fresh coroutine; `every` timers are scheduled again unless the
 * worker is stopping. premature: the worker is exiting (the callback gets true and should
 * only flush what it holds). */
static void timer_run(sleeper *s, int premature)
{
    lua_State *L = gw_W->L;
    lua_State *co = lua_newthread(L);
    int co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_rawgeti(co, LUA_REGISTRYINDEX, s->fn_ref);
    lua_pushboolean(co, premature);
    lua_rawgeti(co, LUA_REGISTRYINDEX, s->args_ref);
    int t = lua_gettop(co);
    int n = (int)lua_objlen(co, t);
    for (int i = 1; i <= n; i++) lua_rawgeti(co, t, i);
    lua_remove(co, t);
    int nargs = 1 + n;
    timer_unlink(s);
    int rc = lua_resume(co, nargs);
    /* a coroutine that yielded (gw.sleep) is anchored by its sleeper */
    if (rc == LUA_YIELD) timers_suspended++;
    if (rc != 0 && rc != LUA_YIELD) timer_error(gw_W->L, co);
    luaL_unref(L, LUA_REGISTRYINDEX, co_ref);
    if (s->every > 0 && !gw_W->draining && !premature) {
        struct timeval tv = tv_of(s->every);
        evtimer_add(s->ev, &tv);
        timer_link(s);
        return;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, s->fn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, s->args_ref);
    event_free(s->ev);
    free(s);
}

/* gw.timer.at(delay, fn, ...) / gw.timer.every(interval, fn, ...) */
static int timer_new(lua_State *L, int every)
{
    double d = luaL_checknumber(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (every && d <= 0) return luaL_error(L, "interval must be > 0");
    if (!gw_W) { lua_pushnil(L); lua_pushliteral(L, "no event loop"); return 2; }
    if (gw_W->draining) { lua_pushnil(L); lua_pushliteral(L, "process exiting"); return 2; }
    int top = lua_gettop(L);
    lua_createtable(L, top - 2, 0);
    for (int i = 3; i <= top; i++) { lua_pushvalue(L, i); lua_rawseti(L, -2, i - 2); }
    sleeper *s = calloc(1, sizeof *s);
    if (!s) return luaL_error(L, "no memory");
    s->args_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 2);
    s->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->every = every ? d : 0;
    s->ev = evtimer_new(gw_W->base, sleep_fire, s);
    struct timeval tv = tv_of(d);
    evtimer_add(s->ev, &tv);
    timer_link(s);
    lua_pushboolean(L, 1);
    return 1;
}

/* The worker stops (SIGQUIT): every pending timer runs now with premature = true, as in
 * OpenResty, so plugins can flush buffered data; none is scheduled again. */
void gw_api_timers_premature(void)
{
    while (timers) {
        sleeper *s = timers;
        event_del(s->ev);
        timer_run(s, 1);     /* unlinks and frees s */
    }
}
static int l_timer_at(lua_State *L) { return timer_new(L, 0); }
static int l_timer_every(lua_State *L) { return timer_new(L, 1); }

static int l_log(lua_State *L)
{
    int level = (int)luaL_checkinteger(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    if (level > gw_log_level) return 0;
    gw_req *r = gw_cur;
    if (r) gw_log(level, "[%s] %s, request: %s", gw_phase_names[r->phase], msg, r->id_str);
    else gw_log(level, "%s", msg);
    return 0;
}

static int l_now(lua_State *L) { lua_pushnumber(L, gw_now()); return 1; }
static int l_monotonic_ms(lua_State *L) { lua_pushnumber(L, (lua_Number)(gw_clock_us() / 1000)); return 1; }

/* ctx table of the current request (gw.ctx.shared), created on first use */
static int l_ctx(lua_State *L)
{
    gw_req *r = gw_cur;
    if (!r) { lua_pushnil(L); return 1; }
    if (r->ctx_ref < 0) {
        lua_createtable(L, 0, 4);
        lua_pushvalue(L, -1);
        r->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        return 1;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ctx_ref);
    return 1;
}

/* core.own_co(): true when running in the request's own coroutine (not one a plugin made). */
static int l_own_co(lua_State *L)
{
    lua_pushboolean(L, gw_cur && gw_cur->co == (void *)L);
    return 1;
}

static int l_worker(lua_State *L)
{
    lua_newtable(L);
    lua_pushinteger(L, gw_W ? gw_W->slot : -1);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, getpid());
    lua_setfield(L, -2, "pid");
    lua_pushinteger(L, gw_W && gw_W->gen ? gw_W->gen->id : 0);
    lua_setfield(L, -2, "generation");
    return 1;
}

/* Set by the worker: the Lua runner function gw._run_phase. */
int gw_api_set_runner(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "gw");
    if (gw_vm_pcall(L, 1, 1, "require gw") != 0) return -1;
    lua_getfield(L, -1, "_run_phase");
    if (!lua_isfunction(L, -1)) { gw_err("gw._run_phase missing"); return -1; }
    runner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "_handler_failed");
    if (!lua_isfunction(L, -1)) { gw_err("gw._handler_failed missing"); return -1; }
    failed_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    return 0;
}

int gw_api_init_worker(void)
{
    lua_State *L = gw_W->L;
    if (gw_api_set_runner(L) != 0) return -1;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "gw");
    if (gw_vm_pcall(L, 1, 1, "require gw") != 0) return -1;
    lua_getfield(L, -1, "_init_worker");
    lua_rawgeti(L, LUA_REGISTRYINDEX, gw_W->gen->lua_ref);
    int rc = gw_vm_pcall(L, 1, 0, "init_worker");
    lua_pop(L, 1);
    return rc;
}

int luaopen_gw_core(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "sleep", l_sleep }, { "timer_at", l_timer_at }, { "timer_every", l_timer_every },
        { "log", l_log }, { "now", l_now }, { "monotonic_ms", l_monotonic_ms }, { "ctx", l_ctx },
        { "read_body", l_read_body }, { "uri_captures", l_uri_captures }, { "resp_body", l_resp_body }, { "set_resp_body", l_set_resp_body }, { "set_body", l_set_body }, { "worker", l_worker }, { "own_co", l_own_co },
        { NULL, NULL }
    };
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
