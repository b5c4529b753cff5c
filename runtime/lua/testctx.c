/* testctx.c — gw.test.context for plugin unit tests: a request built from a Lua table, with no
 * socket, on which a handler's phase method runs through the real gw.* API (same FFI functions,
 * same phase checks, gw.sleep on a real event loop). Afterwards the test reads what the handler
 * changed: the upstream request, the exit response, response headers, gw.ctx.shared. */
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include "gw.h"
#include "conn.h"
#include "worker.h"
#include "vm.h"
#include "api.h"
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define CAP 256
#define MT "gw.test.context"

static gw_worker TW;
static gw_gen TG;
static gw_service TS;
static gw_route TR;

static void ensure_worker(lua_State *L)
{
    if (gw_W) return;
    memset(&TW, 0, sizeof TW);
    TW.base = event_base_new();
    TW.L = L;
    TG.limits.max_request_line = 8192;
    TG.limits.max_header_size = 32768;
    TG.limits.max_headers = 100;
    TG.refs = 1;
    TG.lua_ref = LUA_NOREF;
    TS.name = "test-service";
    TS.host = "upstream.test";
    TS.port = 80;
    TS.upstream = &TS.single;
    TS.connect_timeout = TS.read_timeout = TS.write_timeout = 60000;
    TG.services = &TS;
    TG.nservices = 1;
    TR.name = "test-route";
    TR.service = &TS;
    TR.chain_ref = LUA_NOREF;
    TW.gen = &TG;
    gw_W = &TW;
}

static gw_conn *check(lua_State *L)
{
    gw_conn **p = luaL_checkudata(L, 1, MT);
    if (!*p) luaL_error(L, "gw.test.context: already freed");
    return *p;
}

static void add_header(gw_req *r, gw_header *arr, int *n, const char *k, size_t kl, const char *v, size_t vl)
{
    if (*n >= CAP) return;
    arr[*n].name.p = gw_req_strdup(r, k, kl);
    arr[*n].name.n = kl;
    arr[*n].value.p = gw_req_strdup(r, v, vl);
    arr[*n].value.n = vl;
    (*n)++;
}

/* Adds the headers of table at idx ({name = "v" | {"v1", "v2"}}) to arr. */
static void headers_from(lua_State *L, int idx, gw_req *r, gw_header *arr, int *n)
{
    if (!lua_istable(L, idx)) return;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t kl, vl;
        const char *k = lua_tolstring(L, -2, &kl);
        if (k && lua_istable(L, -1)) {
            int len = (int)lua_objlen(L, -1);
            for (int i = 1; i <= len; i++) {
                lua_rawgeti(L, -1, i);
                const char *v = lua_tolstring(L, -1, &vl);
                if (v) add_header(r, arr, n, k, kl, v, vl);
                lua_pop(L, 1);
            }
        } else if (k) {
            const char *v = lua_tolstring(L, -1, &vl);
            if (v) add_header(r, arr, n, k, kl, v, vl);
        }
        lua_pop(L, 1);
    }
}

static const char *opt_field(lua_State *L, int idx, const char *k, const char *dflt, size_t *len)
{
    lua_getfield(L, idx, k);
    const char *s = lua_isstring(L, -1) ? lua_tolstring(L, -1, len) : NULL;
    lua_pop(L, 1);   /* the spec table keeps the string alive while we copy it */
    if (!s) { s = dflt; *len = dflt ? strlen(dflt) : 0; }
    return s;
}

/* gw.test_c.new{method=, path=, headers=, body=, client_ip=} */
static int l_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    ensure_worker(L);
    gw_conn *c = calloc(1, sizeof *c);
    gw_conn **ud = lua_newuserdata(L, sizeof *ud);
    *ud = c;
    luaL_getmetatable(L, MT);
    lua_setmetatable(L, -2);
    c->w = gw_W;
    c->test = 1;
    c->hdr_cap = CAP;
    c->local_port = 8000;
    c->peer_port = 40000;
    gw_req *r = &c->req;
    r->c = c;
    r->hdrs = calloc(CAP, sizeof(gw_header));
    r->rhdrs = calloc(CAP, sizeof(gw_header));
    r->co_ref = r->ctx_ref = r->wait_ref = LUA_NOREF;
    r->gen = gw_W->gen;
    r->route = &TR;
    r->svc = &TS;
    r->ups = TS.upstream;
    r->status = 200;
    r->h.version = 11;
    r->h.keepalive = 1;
    r->h.content_length = -1;
    snprintf(r->id_str, sizeof r->id_str, "test-%p", (void *)c);
    size_t n;
    const char *s = opt_field(L, 1, "method", "GET", &n);
    r->h.method.p = gw_req_strdup(r, s, n);
    r->h.method.n = n;
    s = opt_field(L, 1, "path", "/", &n);
    char *t = gw_req_strdup(r, s, n);
    r->h.target.p = t;
    r->h.target.n = n;
    char *q = memchr(t, '?', n);
    r->h.path.p = t;
    r->h.path.n = q ? (size_t)(q - t) : n;
    r->h.query.p = q ? q + 1 : "";
    r->h.query.n = q ? n - (size_t)(q - t) - 1 : 0;
    /* route_path: a regex route path ("~/orders/(?<id>\\d+)") whose captures
     * gw.request.get_uri_captures() reports for this request */
    lua_getfield(L, 1, "route_path");
    if (lua_isstring(L, -1)) {
        s = lua_tolstring(L, -1, &n);
        if (n > 1 && s[0] == '~') {
            int ec;
            PCRE2_SIZE eo;
            r->route_re = pcre2_compile((PCRE2_SPTR)(s + 1), n - 1, PCRE2_ANCHORED, &ec, &eo, NULL);
            if (!r->route_re) return luaL_error(L, "gw.test.context: route_path does not compile at offset %d", (int)eo);
        }
    }
    lua_pop(L, 1);
    s = opt_field(L, 1, "client_ip", "127.0.0.1", &n);
    snprintf(c->peer_ip, sizeof c->peer_ip, "%.*s", (int)n, s);
    lua_getfield(L, 1, "headers");
    headers_from(L, lua_gettop(L), r, r->hdrs, &r->h.nheaders);
    lua_pop(L, 1);
    r->h.headers = r->hdrs;
    r->h.host.p = "localhost";
    r->h.host.n = 9;
    for (int i = 0; i < r->h.nheaders; i++)
        if (r->hdrs[i].name.n == 4 && strncasecmp(r->hdrs[i].name.p, "host", 4) == 0) r->h.host = r->hdrs[i].value;
    lua_getfield(L, 1, "body");
    r->body = evbuffer_new();
    if (lua_isstring(L, -1)) {
        s = lua_tolstring(L, -1, &n);
        evbuffer_add(r->body, s, n);
        r->h.content_length = (int64_t)n;
    }
    lua_pop(L, 1);
    r->body_buffered = 1;
    r->body_done = 1;
    r->up_method = r->h.method;
    r->up_query = r->h.query;
    return 1;
}

/* gw.test_c.run(ctx, phase_no, fn, ...): fn(...) in a coroutine as phase phase_no.
 * Returns "ok", "exit" or nil, error. */
static int l_run(lua_State *L)
{
    gw_conn *c = check(L);
    gw_req *r = &c->req;
    int phase = (int)luaL_checkinteger(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    int nargs = lua_gettop(L) - 3;
    lua_State *co = lua_newthread(L);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 3);
    for (int i = 4; i <= 3 + nargs; i++) lua_pushvalue(L, i);
    lua_xmove(L, co, nargs + 1);
    r->phase = phase;
    r->exited = 0;
    r->co = co;
    r->co_ref = LUA_NOREF;   /* ours is `ref`, released below */
    gw_req *saved = gw_cur;
    gw_cur = r;
    int rc = lua_resume(co, nargs);
    while (rc == LUA_YIELD && !r->exited) {
        c->test_wake = 0;
        while (!c->test_wake && (r->wait_ev || r->wait_op)) event_base_loop(gw_W->base, EVLOOP_ONCE);
        if (!c->test_wake) {
            gw_cur = saved;
            r->co = NULL;
            luaL_unref(L, LUA_REGISTRYINDEX, ref);
            lua_pushnil(L);
            lua_pushliteral(L, "the handler yielded for something gw.test.context cannot provide");
            return 2;
        }
        gw_cur = r;
        rc = lua_resume(co, 0);
    }
    gw_cur = saved;
    r->co = NULL;
    if (rc != 0 && rc != LUA_YIELD && gw_api_ended_handler(L, co)) rc = 0;  /* ended itself */
    if (rc != 0 && rc != LUA_YIELD) {
        luaL_traceback(L, co, lua_tostring(co, -1), 0);
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    if (r->exited) lua_pushliteral(L, "exit");
    else lua_pushliteral(L, "ok");
    return 1;
}

static void push_headers(lua_State *L, gw_header *arr, int n)
{
    lua_createtable(L, 0, n);
    for (int i = 0; i < n; i++) {
        char name[256];
        size_t nl = arr[i].name.n < sizeof name ? arr[i].name.n : sizeof name - 1;
        for (size_t k = 0; k < nl; k++) {
            char ch = arr[i].name.p[k];
            name[k] = ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
        }
        lua_pushlstring(L, name, nl);
        lua_rawget(L, -2);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushlstring(L, name, nl);
            lua_pushlstring(L, arr[i].value.p, arr[i].value.n);
            lua_rawset(L, -3);
        } else if (lua_istable(L, -1)) {
            lua_pushlstring(L, arr[i].value.p, arr[i].value.n);
            lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
            lua_pop(L, 1);
        } else {
            lua_createtable(L, 2, 0);
            lua_insert(L, -2);
            lua_rawseti(L, -2, 1);
            lua_pushlstring(L, arr[i].value.p, arr[i].value.n);
            lua_rawseti(L, -2, 2);
            lua_pushlstring(L, name, nl);
            lua_insert(L, -2);
            lua_rawset(L, -3);
        }
    }
}

/* gw.test_c.state(ctx) -> what the handlers did so far */
static int l_state(lua_State *L)
{
    gw_conn *c = check(L);
    gw_req *r = &c->req;
    gw_req *saved = gw_cur;
    gw_cur = r;
    gw_req_build_path(r);
    gw_cur = saved;
    lua_newtable(L);
    lua_createtable(L, 0, 6);
    lua_pushlstring(L, r->up_method.p, r->up_method.n); lua_setfield(L, -2, "method");
    lua_pushlstring(L, r->up_path.p, r->up_path.n); lua_setfield(L, -2, "path");
    lua_pushlstring(L, r->up_query.p, r->up_query.n); lua_setfield(L, -2, "query");
    push_headers(L, r->hdrs, r->h.nheaders); lua_setfield(L, -2, "headers");
    if (r->body) {
        size_t n = evbuffer_get_length(r->body);
        lua_pushlstring(L, (const char *)evbuffer_pullup(r->body, (ssize_t)n), n);
        lua_setfield(L, -2, "body");
    }
    if (r->has_override) {
        lua_pushfstring(L, "%s:%d", r->override.host, r->override.port);
        lua_setfield(L, -2, "target");
    }
    if (r->svc) { lua_pushstring(L, r->svc->name); lua_setfield(L, -2, "service"); }
    if (r->ups && r->ups->name) { lua_pushstring(L, r->ups->name); lua_setfield(L, -2, "upstream"); }
    lua_setfield(L, -2, "upstream");
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, r->status); lua_setfield(L, -2, "status");
    push_headers(L, r->rhdrs, r->nrhdrs); lua_setfield(L, -2, "headers");
    if (r->lbody) {
        size_t n = evbuffer_get_length(r->lbody);
        lua_pushlstring(L, (const char *)evbuffer_pullup(r->lbody, (ssize_t)n), n);
        lua_setfield(L, -2, "body");
    }
    lua_setfield(L, -2, "response");
    lua_pushboolean(L, r->exited); lua_setfield(L, -2, "exited");
    if (r->ctx_ref >= 0) { lua_rawgeti(L, LUA_REGISTRYINDEX, r->ctx_ref); lua_setfield(L, -2, "shared"); }
    return 1;
}

/* gw.test_c.set_response(ctx, status, headers [, body]): the upstream's answer, before
 * header_filter; the body is what body_filter's gw.response.get_raw_body() returns. */
static int l_set_response(lua_State *L)
{
    gw_conn *c = check(L);
    gw_req *r = &c->req;
    r->status = (int)luaL_checkinteger(L, 2);
    r->nrhdrs = 0;
    headers_from(L, 3, r, r->rhdrs, &r->nrhdrs);
    if (!lua_isnoneornil(L, 4)) {
        size_t n;
        const char *b = luaL_checklstring(L, 4, &n);
        if (!r->lbody) r->lbody = evbuffer_new();
        evbuffer_drain(r->lbody, evbuffer_get_length(r->lbody));
        evbuffer_add(r->lbody, b, n);
    }
    return 0;
}

static int l_gc(lua_State *L)
{
    gw_conn **p = luaL_checkudata(L, 1, MT);
    gw_conn *c = *p;
    if (!c) return 0;
    *p = NULL;
    gw_req *r = &c->req;
    if (r->wait_ev) event_free(r->wait_ev);
    gw_wait_cancel(r);
    if (r->ctx_ref >= 0) luaL_unref(L, LUA_REGISTRYINDEX, r->ctx_ref);
    arena_block *b = r->blocks;
    while (b) { arena_block *n = b->next; free(b); b = n; }
    if (r->body) evbuffer_free(r->body);
    if (r->lbody) evbuffer_free(r->lbody);
    if (r->route_re) pcre2_code_free((pcre2_code *)r->route_re);
    free(r->hdrs);
    free(r->rhdrs);
    free(c);
    return 0;
}

int luaopen_gw_test_c(lua_State *L)
{
    luaL_newmetatable(L, MT);
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        { "new", l_new }, { "run", l_run }, { "state", l_state }, { "set_response", l_set_response },
        { "free", l_gc }, { NULL, NULL }
    };
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
