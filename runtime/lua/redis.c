/* redis.c — gw.redis_c: the C half of gw.redis, a non-blocking Redis client on hiredis's async
 * API and the worker's libevent loop (lua/gw/redis.lua builds the API on top).
 *
 * A connection ("rconn") is shared by every caller of one key (host, port, db, password) in the
 * worker: Redis answers in order, so callers pipeline on it. A new connection is set up by the
 * first call that needs it: AUTH and SELECT go first, in the same write as that call's commands.
 * An "op" is one call: a batch of commands (a pipeline of one or more) and its replies, copied
 * out of hiredis's reply objects. A timer bounds the whole op (connect included); an op that
 * times out retires its connection (later callers get a new one) and frees it, so a paused or
 * dead server does not keep callers queued behind it.
 *
 * wait(op) suspends the caller exactly as gw.http does (http.c): a request's coroutine through
 * r->wait_op (gw_req_lua_resume wakes it; gw.test.context is run by testctx.c; a request that
 * ends while it waits is cancelled through the waiter's cancel, redis_cancel), a timer's
 * coroutine through a registry reference, and the main thread by running the loop here. The
 * wake-up is a zero-delay event, so no Lua runs inside a hiredis callback. */
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <openssl/sha.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
#include "gw.h"
#include "conn.h"
#include "worker.h"
#include "api.h"
#include "vm.h"

#define MT "gw.redis.op"

/* ---- replies ------------------------------------------------------------------------------ */

typedef struct rrep {
    int type;                       /* REDIS_REPLY_* */
    long long integer;
    char *str;
    size_t len;
    size_t n;
    struct rrep **el;
} rrep;

static void rrep_free(rrep *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) rrep_free(r->el[i]);
    free(r->el);
    free(r->str);
    free(r);
}

static rrep *rrep_copy(const redisReply *x)
{
    rrep *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->type = x->type;
    r->integer = x->integer;
    if (x->str) {
        r->str = malloc(x->len + 1);
        if (!r->str) { free(r); return NULL; }
        memcpy(r->str, x->str, x->len);
        r->str[x->len] = 0;
        r->len = x->len;
    }
    if (x->type == REDIS_REPLY_ARRAY && x->elements) {
        r->el = calloc(x->elements, sizeof *r->el);
        if (!r->el) { rrep_free(r); return NULL; }
        for (size_t i = 0; i < x->elements; i++) {
            r->el[i] = rrep_copy(x->element[i]);
            r->n = i + 1;
            if (!r->el[i]) { rrep_free(r); return NULL; }
        }
    }
    return r;
}

/* ---- connections -------------------------------------------------------------------------- */

typedef struct rconn {
    redisAsyncContext *ac;
    struct event_base *base;
    char *key;
    int pending;                    /* callbacks hiredis still owes us */
    int ac_gone;                    /* hiredis freed (or is freeing) ac */
    int retired;                    /* no new calls go to it */
    int killing;                    /* we are inside redisAsyncFree */
    struct event *ctimer;           /* connect_timeout, until connected */
    int connect_timed_out;
    struct rconn *next, *prev;
} rconn;

static rconn *conns;

static void conn_unlink(rconn *c)
{
    if (!c->retired) {
        if (c->prev) c->prev->next = c->next; else conns = c->next;
        if (c->next) c->next->prev = c->prev;
        c->next = c->prev = NULL;
        c->retired = 1;
    }
}

static void conn_maybe_free(rconn *c)
{
    if (c->ac_gone && c->pending == 0 && !c->killing) {
        conn_unlink(c);
        if (c->ctimer) event_free(c->ctimer);
        free(c->key);
        free(c);
    }
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    rconn *c = ac->data;
    if (c->ctimer) { event_free(c->ctimer); c->ctimer = NULL; }
    if (status != REDIS_OK) {
        /* hiredis frees ac after this; the pending callbacks then run with no reply */
        conn_unlink(c);
        c->ac_gone = 1;
        c->ac = NULL;
        conn_maybe_free(c);
    }
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    (void)status;
    rconn *c = ac->data;
    conn_unlink(c);
    c->ac_gone = 1;
    c->ac = NULL;
    conn_maybe_free(c);
}

/* Kills c now (outside hiredis callbacks only): pending callbacks run with no reply. */
static void conn_kill(rconn *c)
{
    conn_unlink(c);
    if (c->ac && !c->ac_gone) {
        c->killing = 1;
        redisAsyncContext *ac = c->ac;
        redisAsyncFree(ac);
        c->killing = 0;
        c->ac = NULL;
        c->ac_gone = 1;
    }
    conn_maybe_free(c);
}

/* ---- ops ---------------------------------------------------------------------------------- */

typedef struct rwaiter rwaiter;

typedef struct rop {
    int refs;                       /* Lua's userdata + outstanding callbacks */
    int n;                          /* commands of the caller */
    int nsetup;                     /* AUTH / SELECT / PING before them */
    int got;
    rrep **replies;                 /* n entries */
    rconn *conn;                    /* valid while callbacks are outstanding */
    int outstanding;
    struct event *timer;
    char err[256];
    int failed, done;
    rwaiter *w;
} rop;

enum { W_REQ = 1, W_TIMER, W_BLOCK };


struct rwaiter {
    gw_wait wait;                   /* first: r->wait_op points here */
    int mode;
    gw_req *r;
    lua_State *co;
    int co_ref;
    rop *op;
    struct event *wake;
    int ready;
};

static void op_unref(rop *op)
{
    if (--op->refs > 0) return;
    if (op->timer) event_free(op->timer);
    if (op->replies) for (int i = 0; i < op->n; i++) rrep_free(op->replies[i]);
    free(op->replies);
    free(op);
}

static void rwaiter_ready(rwaiter *w)
{
    if (w->mode == W_BLOCK) { w->ready = 1; return; }
    struct timeval zero = { 0, 0 };
    evtimer_add(w->wake, &zero);
}

static void op_finish(rop *op)
{
    if (op->done) return;
    op->done = 1;
    if (op->timer) evtimer_del(op->timer);
    rwaiter *w = op->w;
    op->w = NULL;
    if (w) rwaiter_ready(w);
}

static void op_fail(rop *op, const char *msg)
{
    if (op->done) return;
    snprintf(op->err, sizeof op->err, "%s", msg);
    op->failed = 1;
    op_finish(op);
}

static void reply_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    rop *op = priv;
    rconn *c = ac->data;
    c->pending--;
    op->outstanding--;
    if (op->outstanding == 0) op->conn = NULL;
    if (!op->done) {
        redisReply *x = reply;
        int i = op->got++;
        if (!x) {
            char m[200];
            snprintf(m, sizeof m, "%s", c->connect_timed_out ? "connect timeout" : ac->errstr[0] ? ac->errstr : "connection closed");
            if (strcmp(m, "Connection refused") == 0) snprintf(m, sizeof m, "connection refused");
            op_fail(op, m);
        } else if (i < op->nsetup) {
            if (x->type == REDIS_REPLY_ERROR) {
                char m[256];
                snprintf(m, sizeof m, "%s", x->str ? x->str : "ERR");
                op_fail(op, m);
                conn_unlink(c);
                if (c->ac && !c->ac_gone) redisAsyncDisconnect(c->ac);
            }
        } else {
            rrep *r = rrep_copy(x);
            if (!r) op_fail(op, "no memory");
            else {
                op->replies[i - op->nsetup] = r;
            }
        }
        if (!op->done && op->got == op->n + op->nsetup) op_finish(op);
    }
    op_unref(op);
    if (c->ac_gone) conn_maybe_free(c);
}

static void timer_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    rop *op = arg;
    op->refs++;
    op_fail(op, "timeout");
    /* the server is slow or gone: later calls get a new connection, this one goes */
    if (op->conn) conn_kill(op->conn);
    op_unref(op);
}


static void ctimer_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    rconn *c = arg;
    event_free(c->ctimer);
    c->ctimer = NULL;
    c->connect_timed_out = 1;
    conn_kill(c);
}

static struct event_base *own_base;

static struct event_base *loop_base(void)
{
    if (gw_W && gw_W->base) return gw_W->base;
    if (!own_base) own_base = event_base_new();
    return own_base;
}

static rconn *conn_get(struct event_base *base, const char *key, const char *host, int port, int connect_ms, int *fresh, const char **err)
{
    for (rconn *c = conns; c; c = c->next)
        if (c->base == base && !c->ac_gone && strcmp(c->key, key) == 0) { *fresh = 0; return c; }
    rconn *c = calloc(1, sizeof *c);
    if (!c) { *err = "no memory"; return NULL; }
    c->key = strdup(key);
    c->base = base;
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    if (!ac || !c->key) { free(c->key); free(c); if (ac) redisAsyncFree(ac); *err = "no memory"; return NULL; }
    if (ac->err) {
        static char m[200];
        snprintf(m, sizeof m, "%s", strcmp(ac->errstr, "Connection refused") == 0 ? "connection refused" : ac->errstr);
        redisAsyncFree(ac);
        free(c->key); free(c);
        *err = m;
        return NULL;
    }
    ac->data = c;
    c->ac = ac;
    redisLibeventAttach(ac, base);
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    if (connect_ms > 0 && (c->ctimer = evtimer_new(base, ctimer_cb, c))) {
        struct timeval tv = { connect_ms / 1000, (connect_ms % 1000) * 1000 };
        evtimer_add(c->ctimer, &tv);
    }
    c->next = conns;
    if (conns) conns->prev = c;
    conns = c;
    *fresh = 1;
    return c;
}

/* Pushes one command (a table of strings at index t) on c for op. */
static int send_cmd(lua_State *L, rconn *c, rop *op, int t)
{
    int argc = (int)lua_objlen(L, t);
    if (argc <= 0) return -1;
    /* on the heap: a command may carry many arguments */
    const char **argv = malloc((size_t)argc * sizeof *argv);
    size_t *lens = malloc((size_t)argc * sizeof *lens);
    int rc = -1;
    if (!argv || !lens) goto out;
    for (int i = 0; i < argc; i++) {
        lua_rawgeti(L, t, i + 1);
        argv[i] = lua_tolstring(L, -1, &lens[i]);
        lua_pop(L, 1);              /* the string stays in the table */
        if (!argv[i]) goto out;
    }
    if (redisAsyncCommandArgv(c->ac, reply_cb, op, argc, argv, lens) != REDIS_OK) goto out;
    c->pending++;
    op->outstanding++;
    op->refs++;
    rc = 0;
out:
    free(argv);
    free(lens);
    return rc;
}

static int send_argv(rconn *c, rop *op, int argc, const char **argv)
{
    size_t lens[4];
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    if (redisAsyncCommandArgv(c->ac, reply_cb, op, argc, argv, lens) != REDIS_OK) return -1;
    c->pending++;
    op->outstanding++;
    op->refs++;
    return 0;
}

/* start(host, port, password|nil, db, {{arg...}, ...}, timeout_ms, connect_timeout_ms) -> op.
 * Validation in redis.lua. */
static int l_start(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    int port = luaL_checkint(L, 2);
    const char *password = lua_isstring(L, 3) ? lua_tostring(L, 3) : NULL;
    int db = luaL_checkint(L, 4);
    luaL_checktype(L, 5, LUA_TTABLE);
    int timeout = luaL_checkint(L, 6);
    int connect_ms = luaL_optint(L, 7, 0);
    struct event_base *base = loop_base();
    if (!base) return luaL_error(L, "gw.redis: no event loop");

    rop *op = calloc(1, sizeof *op);
    if (!op) return luaL_error(L, "no memory");
    op->refs = 1;
    op->n = (int)lua_objlen(L, 5);
    op->replies = calloc((size_t)(op->n ? op->n : 1), sizeof *op->replies);
    rop **ud = lua_newuserdata(L, sizeof *ud);
    *ud = op;
    luaL_getmetatable(L, MT);
    lua_setmetatable(L, -2);
    if (!op->replies) return luaL_error(L, "no memory");

    char key[600];
    snprintf(key, sizeof key, "%s|%d|%d|%s", host, port, db, password ? password : "");
    int fresh = 0;
    const char *err = NULL;
    rconn *c = conn_get(base, key, host, port, connect_ms, &fresh, &err);
    if (!c) { op_fail(op, err); return 1; }
    op->conn = c;
    if (fresh) {
        if (password) { const char *a[2] = { "AUTH", password }; send_argv(c, op, 2, a); op->nsetup++; }
        if (db) { char d[16]; snprintf(d, sizeof d, "%d", db); const char *a[2] = { "SELECT", d }; send_argv(c, op, 2, a); op->nsetup++; }
        if (!op->nsetup && op->n == 0) { const char *a[1] = { "PING" }; send_argv(c, op, 1, a); op->nsetup++; }
    }
    for (int i = 1; i <= op->n; i++) {
        lua_rawgeti(L, 5, i);
        if (send_cmd(L, c, op, lua_gettop(L)) != 0) { lua_pop(L, 1); op_fail(op, "cannot send the command"); return 1; }
        lua_pop(L, 1);
    }
    if (op->outstanding == 0) { op_finish(op); return 1; }
    op->timer = evtimer_new(base, timer_cb, op);
    struct timeval tv = { timeout / 1000, (timeout % 1000) * 1000 };
    evtimer_add(op->timer, &tv);
    return 1;
}

static rop *check_op(lua_State *L, int i)
{
    rop **p = luaL_checkudata(L, i, MT);
    if (!*p) luaL_argerror(L, i, "freed op");
    return *p;
}

static void wake_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    rwaiter *w = arg;
    event_free(w->wake);
    gw_req *r = w->mode == W_REQ ? w->r : NULL;
    lua_State *co = w->co;
    int ref = w->co_ref;
    free(w);
    gw_wait_resume(r, co, ref);
}

/* The request ends while its coroutine waits in gw.redis: nothing will resume it. */
static void redis_cancel(gw_req *r)
{
    rwaiter *w = r->wait_op;
    r->wait_op = NULL;
    if (w->op) { w->op->w = NULL; op_fail(w->op, "cancelled"); }
    if (w->wake) event_free(w->wake);
    free(w);
}

/* wait(op): suspends until the op is done. */
static int l_wait(lua_State *L)
{
    rop *op = check_op(L, 1);
    if (op->done) return 0;
    if (op->w) return luaL_error(L, "gw.redis: the call is already being waited for");
    rwaiter *w = calloc(1, sizeof *w);
    if (!w) return luaL_error(L, "no memory");
    w->wait.cancel = redis_cancel;
    w->co_ref = LUA_NOREF;
    w->op = op;
    gw_req *r = gw_cur;
    if (r) {
        if (r->co != L) { free(w); return luaL_error(L, "gw.redis: cannot suspend a coroutine created by the plugin (call it from the handler itself)"); }
        if (r->wait_op) { free(w); return luaL_error(L, "gw.redis: the request already waits"); }
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
    op->w = w;
    struct event_base *base = loop_base();
    if (w->mode == W_BLOCK) {
        op->refs++;
        while (!w->ready && !op->done) {
            if (event_base_loop(base, EVLOOP_ONCE) != 0) break;
        }
        op->w = NULL;
        if (!op->done) op_fail(op, "event loop stopped");
        free(w);
        op_unref(op);
        return 0;
    }
    w->wake = evtimer_new(base, wake_cb, w);
    if (w->mode == W_REQ) {
        r->wait_op = w;
        r->state = r->phase == GW_PHASE_LOG ? GW_RS_LOG : GW_RS_LUA;
        if (r->phase == GW_PHASE_LOG && !r->c->test && r->c->io) gw_io_disable(r->c->io, EV_READ);
    }
    return lua_yield(L, 0);
}

static void push_reply(lua_State *L, rrep *r, int top)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        lua_pushlstring(L, r->str ? r->str : "", r->len);
        break;
    case REDIS_REPLY_INTEGER:
        lua_pushnumber(L, (lua_Number)r->integer);
        break;
    case REDIS_REPLY_NIL:
        if (top) lua_pushnil(L); else lua_pushlightuserdata(L, NULL);
        break;
    case REDIS_REPLY_ERROR:
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, r->str ? r->str : "", r->len);
        lua_setfield(L, -2, "err");
        break;
    case REDIS_REPLY_ARRAY:
        lua_createtable(L, (int)r->n, 0);
        for (size_t i = 0; i < r->n; i++) {
            push_reply(L, r->el[i], 0);
            lua_rawseti(L, -2, (int)i + 1);
        }
        break;
    default:
        lua_pushnil(L);
    }
}

/* result(op) -> {value...}, {errmsg or false...}, n | nil, err */
static int l_result(lua_State *L)
{
    rop *op = check_op(L, 1);
    if (!op->done) { lua_pushnil(L); lua_pushliteral(L, "not finished"); return 2; }
    if (op->failed) { lua_pushnil(L); lua_pushstring(L, op->err); return 2; }
    lua_createtable(L, op->n, 0);
    lua_createtable(L, op->n, 0);
    for (int i = 0; i < op->n; i++) {
        rrep *r = op->replies[i];
        if (r->type == REDIS_REPLY_ERROR) {
            lua_pushlightuserdata(L, NULL);
            lua_rawseti(L, -3, i + 1);
            lua_pushlstring(L, r->str ? r->str : "", r->len);
        } else {
            push_reply(L, r, 0);
            lua_rawseti(L, -3, i + 1);
            lua_pushboolean(L, 0);
        }
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushinteger(L, op->n);
    return 3;
}

static int l_gc(lua_State *L)
{
    rop **p = luaL_checkudata(L, 1, MT);
    rop *op = *p;
    if (!op) return 0;
    *p = NULL;
    if (op->w) op->w->op = NULL;
    op->w = NULL;
    if (!op->done) op_fail(op, "collected");
    op_unref(op);
    return 0;
}

static int l_sha1(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)s, n, d);
    char hex[2 * SHA_DIGEST_LENGTH + 1];
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    lua_pushlstring(L, hex, 2 * SHA_DIGEST_LENGTH);
    return 1;
}

/* conns() -> number of live connections in this process */
static int l_conns(lua_State *L)
{
    int n = 0;
    for (rconn *c = conns; c; c = c->next) n++;
    lua_pushinteger(L, n);
    return 1;
}

int luaopen_gw_redis_c(lua_State *L)
{
    luaL_newmetatable(L, MT);
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        { "start", l_start }, { "wait", l_wait }, { "result", l_result }, { "sha1", l_sha1 },
        { "conns", l_conns }, { NULL, NULL }
    };
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    return 1;
}
