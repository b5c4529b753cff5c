/* gen.c — builds a generation's C structures from the Lua `compiled` table (lua/gw/config.lua):
 * services, upstreams with resolved targets, routes into the router, limits and timeouts. */
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <lua.h>
#include <lauxlib.h>
#include "gw.h"
#include "gen.h"
#include "router.h"
#include "tls.h"

static int gen_counter;
static void free_route(lua_State *L, gw_route *rt);

int gw_resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    const char *h = host;
    char buf[256];
    size_t hl = strlen(host);
    if (hl > 2 && host[0] == '[' && host[hl - 1] == ']' && hl - 2 < sizeof buf) {
        memcpy(buf, host + 1, hl - 2);
        buf[hl - 2] = 0;
        h = buf;
    }
    if (getaddrinfo(h, ps, &hints, &res) != 0 || !res) return -1;
    /* An IPv4 address when the name has one: glibc may sort ::1 before 127.0.0.1 for
     * "localhost" (it does on a fresh Debian 12), while servers on loopback mostly listen on
     * IPv4 only. A name with IPv6 addresses only still gets its first one. */
    struct addrinfo *pick = res;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        if (a->ai_family == AF_INET) { pick = a; break; }
    memcpy(ss, pick->ai_addr, pick->ai_addrlen);
    *len = pick->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int int_field(lua_State *L, int idx, const char *k, int dflt)
{
    lua_getfield(L, idx, k);
    int v = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

static int64_t num_field(lua_State *L, int idx, const char *k, int64_t dflt)
{
    lua_getfield(L, idx, k);
    int64_t v = lua_isnumber(L, -1) ? (int64_t)lua_tonumber(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

static char *str_field(lua_State *L, int idx, const char *k)
{
    lua_getfield(L, idx, k);
    char *v = lua_isstring(L, -1) ? strdup(lua_tostring(L, -1)) : NULL;
    lua_pop(L, 1);
    return v;
}

static int bool_field(lua_State *L, int idx, const char *k, int dflt)
{
    lua_getfield(L, idx, k);
    int v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Reads a Lua array of strings at field k into a malloc'ed array of pointers into Lua strings
 * (valid while the compiled table lives: the generation holds a ref to it). */
static const char **str_list(lua_State *L, int idx, const char *k, int *n)
{
    *n = 0;
    lua_getfield(L, idx, k);
    if (!lua_istable(L, -1)) { lua_pop(L, 1); return NULL; }
    int len = (int)lua_objlen(L, -1);
    const char **a = calloc(len ? len : 1, sizeof(char *));
    for (int i = 1; i <= len; i++) {
        lua_rawgeti(L, -1, i);
        if (lua_isstring(L, -1)) a[(*n)++] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return a;
}

static unsigned chain_mask(lua_State *L, int chain_idx, int *bf_count)
{
    unsigned mask = 0;
    *bf_count = 0;
    int n = (int)lua_objlen(L, chain_idx);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, chain_idx, i);
        lua_getfield(L, -1, "phases");      /* the phases this instance runs (a set) */
        for (int ph = 0; ph < GW_PHASE_COUNT; ph++) {
            lua_getfield(L, -1, gw_phase_names[ph]);
            if (lua_toboolean(L, -1)) {
                mask |= 1u << ph;
                if (ph == GW_PHASE_BODY_FILTER) (*bf_count)++;
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
    return mask;
}

static int build_targets(lua_State *L, int idx, gw_upstream *u, char *err, size_t errlen)
{
    lua_getfield(L, idx, "targets");
    int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    u->targets = calloc(n ? n : 1, sizeof(gw_target));
    u->ntargets = 0;
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        int t = lua_gettop(L);
        gw_target *tg = &u->targets[u->ntargets];
        tg->host = str_field(L, t, "host");
        tg->port = int_field(L, t, "port", 80);
        tg->weight = int_field(L, t, "weight", 100);
        lua_pop(L, 1);
        if (!tg->host || gw_resolve(tg->host, tg->port, &tg->addr, &tg->addrlen) != 0) {
            snprintf(err, errlen, "upstream %s: cannot resolve target %s:%d", u->name, tg->host ? tg->host : "?", tg->port);
            lua_pop(L, 1);
            return -1;
        }
        u->ntargets++;
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "passive");
    if (lua_istable(L, -1)) {
        u->passive_failures = int_field(L, lua_gettop(L), "failures", 0);
        u->cooldown_ms = (int)(num_field(L, lua_gettop(L), "cooldown", 10) * 1000);
    }
    lua_pop(L, 1);
    return 0;
}

static gw_route *new_route(lua_State *L, int chain_idx)
{
    gw_route *rt = calloc(1, sizeof *rt);
    rt->chain_ref = LUA_NOREF;
    if (chain_idx && lua_istable(L, chain_idx) && lua_objlen(L, chain_idx) > 0) {
        rt->phase_mask = chain_mask(L, chain_idx, &rt->bf_count);
        lua_pushvalue(L, chain_idx);
        rt->chain_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    return rt;
}

gw_gen *gw_gen_build(lua_State *L, char *err, size_t errlen)
{
    int top = lua_gettop(L);
    int c = top;
    gw_gen *g = calloc(1, sizeof *g);
    g->refs = 1;
    g->id = ++gen_counter;
    g->lua_ref = LUA_NOREF;

    lua_getfield(L, c, "gw");
    int gwi = lua_gettop(L);
    lua_getfield(L, gwi, "limits");
    int li = lua_gettop(L);
    g->limits.max_request_line = (size_t)num_field(L, li, "max_request_line", 8192);
    g->limits.max_header_size = (size_t)num_field(L, li, "max_header_size", 32768);
    g->limits.max_headers = int_field(L, li, "max_headers", 100);
    g->max_body_size = num_field(L, li, "max_body_size", 0);
    lua_pop(L, 1);
    lua_getfield(L, gwi, "metrics");
    g->metrics = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, gwi, "underscores_in_headers");
    g->underscores_in_headers = lua_toboolean(L, -1);
    lua_pop(L, 1);
    g->max_connections = int_field(L, gwi, "max_connections", 1024);
    lua_getfield(L, gwi, "timeouts");
    int ti = lua_gettop(L);
    g->client_header_timeout = int_field(L, ti, "client_header", 60000);
    g->client_body_timeout = int_field(L, ti, "client_body", 60000);
    g->client_body_min_rate = int_field(L, ti, "client_body_min_rate", 1024);
    g->keepalive_timeout = int_field(L, ti, "keepalive", 75000);
    g->send_timeout = int_field(L, ti, "send", 60000);
    lua_pop(L, 1);
    lua_getfield(L, gwi, "upstream_keepalive");
    int ki = lua_gettop(L);
    g->ka_max_idle = int_field(L, ki, "max_idle", 64);
    g->ka_idle_timeout = int_field(L, ki, "idle_timeout", 60000);
    g->ka_max_requests = int_field(L, ki, "max_requests", 10000);
    lua_pop(L, 2);

    /* upstreams */
    lua_getfield(L, c, "upstreams");
    int ui = lua_gettop(L);
    int nu = 0;
    if (lua_istable(L, ui)) { lua_pushnil(L); while (lua_next(L, ui)) { nu++; lua_pop(L, 1); } }
    g->upstreams = calloc(nu ? nu : 1, sizeof(gw_upstream));
    if (nu) {
        lua_pushnil(L);
        while (lua_next(L, ui)) {
            gw_upstream *u = &g->upstreams[g->nupstreams++];
            u->name = str_field(L, lua_gettop(L), "name");
            if (!u->name) u->name = strdup(lua_tostring(L, -2));
            if (build_targets(L, lua_gettop(L), u, err, errlen) != 0) { lua_settop(L, top); gw_gen_free(L, g); return NULL; }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);

    /* services */
    lua_getfield(L, c, "services");
    int si = lua_gettop(L);
    int ns = lua_istable(L, si) ? (int)lua_objlen(L, si) : 0;
    g->services = calloc(ns ? ns : 1, sizeof(gw_service));
    for (int i = 1; i <= ns; i++) {
        lua_rawgeti(L, si, i);
        int s = lua_gettop(L);
        gw_service *sv = &g->services[g->nservices++];
        sv->name = str_field(L, s, "name");
        char *proto = str_field(L, s, "protocol");
        sv->protocol = proto && strcmp(proto, "echo") == 0 ? GW_PROTO_ECHO :
                       proto && strcmp(proto, "https") == 0 ? GW_PROTO_HTTPS : GW_PROTO_HTTP;
        free(proto);
        sv->host = str_field(L, s, "host");
        sv->port = int_field(L, s, "port", sv->protocol == GW_PROTO_HTTPS ? 443 : 80);
        sv->path = str_field(L, s, "path");
        sv->path_len = sv->path ? strlen(sv->path) : 0;
        sv->connect_timeout = int_field(L, s, "connect_timeout", 60000);
        sv->write_timeout = int_field(L, s, "write_timeout", 60000);
        sv->read_timeout = int_field(L, s, "read_timeout", 60000);
        sv->retries = int_field(L, s, "retries", 5);
        char *ups = str_field(L, s, "upstream");
        sv->upstream = &sv->single;
        if (ups) {
            for (int k = 0; k < g->nupstreams; k++)
                if (strcmp(g->upstreams[k].name, ups) == 0) sv->upstream = &g->upstreams[k];
            free(ups);
        }
        if (sv->upstream == &sv->single && sv->protocol != GW_PROTO_ECHO) {
            sv->single.name = sv->name;
            sv->single.ntargets = 1;
            sv->single.targets = calloc(1, sizeof(gw_target));
            gw_target *t = sv->single.targets;
            t->host = sv->host;
            t->port = sv->port;
            t->weight = 1;
            if (!sv->host || gw_resolve(sv->host, sv->port, &t->addr, &t->addrlen) != 0) {
                snprintf(err, errlen, "service %s: cannot resolve host %s", sv->name, sv->host ? sv->host : "?");
                lua_settop(L, top);
                gw_gen_free(L, g);
                return NULL;
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    /* certificates and the https services' client contexts */
    if (gw_tls_gen_build(L, c, g, err, errlen) != 0) { lua_settop(L, top); gw_gen_free(L, g); return NULL; }

    /* routes */
    g->router = gw_router_new();
    lua_getfield(L, c, "routes");
    int ri = lua_gettop(L);
    int nr = lua_istable(L, ri) ? (int)lua_objlen(L, ri) : 0;
    g->routes = calloc(nr ? nr : 1, sizeof(gw_route *));
    for (int i = 1; i <= nr; i++) {
        lua_rawgeti(L, ri, i);
        int r = lua_gettop(L);
        lua_getfield(L, r, "plugins");
        gw_route *rt = new_route(L, lua_gettop(L));
        lua_pop(L, 1);
        g->routes[g->nroutes++] = rt;
        rt->index = i - 1;
        rt->name = str_field(L, r, "name");
        int svc = int_field(L, r, "service", 0);
        rt->service = svc >= 1 && svc <= g->nservices ? &g->services[svc - 1] : NULL;
        rt->strip_path = bool_field(L, r, "strip_path", 1);
        rt->preserve_host = bool_field(L, r, "preserve_host", 0);
        rt->https_only = bool_field(L, r, "https_only", 0);
        rt->https_redirect = int_field(L, r, "https_redirect", 426);
        rt->require_client_cert = bool_field(L, r, "require_client_cert", 0);
        gw_route_spec sp;
        memset(&sp, 0, sizeof sp);
        sp.hosts = str_list(L, r, "hosts", &sp.nhosts);
        sp.paths = str_list(L, r, "paths", &sp.npaths);
        sp.methods = str_list(L, r, "methods", &sp.nmethods);
        sp.regex_priority = int_field(L, r, "priority", 0);
        lua_getfield(L, r, "headers");
        int hi = lua_gettop(L);
        int nh = 0;
        if (lua_istable(L, hi)) { lua_pushnil(L); while (lua_next(L, hi)) { nh++; lua_pop(L, 1); } }
        sp.headers = calloc(nh ? nh : 1, sizeof(gw_route_header));
        if (nh) {
            lua_pushnil(L);
            while (lua_next(L, hi)) {
                gw_route_header *rh = &sp.headers[sp.nheaders++];
                rh->name = lua_tostring(L, -2);
                int vi = lua_gettop(L);
                int nv = lua_istable(L, vi) ? (int)lua_objlen(L, vi) : 0;
                rh->values = calloc(nv ? nv : 1, sizeof(char *));
                for (int v = 1; v <= nv; v++) {
                    lua_rawgeti(L, vi, v);
                    rh->values[rh->nvalues++] = lua_tostring(L, -1);
                    lua_pop(L, 1);
                }
                lua_pop(L, 1);
            }
        }
        int rc = gw_router_add(g->router, rt, &sp, err, errlen);
        for (int h = 0; h < sp.nheaders; h++) free(sp.headers[h].values);
        free(sp.headers);
        free(sp.hosts);
        free(sp.paths);
        free(sp.methods);
        lua_pop(L, 2);
        if (rc != 0) { lua_settop(L, top); gw_gen_free(L, g); return NULL; }
    }
    lua_pop(L, 1);
    gw_router_finish(g->router);

    lua_getfield(L, c, "global_plugins");
    g->fallback = new_route(L, lua_gettop(L));
    g->fallback->index = -1;
    lua_pop(L, 1);

    lua_pushvalue(L, c);
    g->lua_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, top);
    return g;
}

static void free_route(lua_State *L, gw_route *rt)
{
    if (!rt) return;
    if (rt->chain_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, rt->chain_ref);
    free(rt->name);
    free(rt);
}

void gw_gen_free(lua_State *L, gw_gen *g)
{
    if (!g) return;
    gw_tls_gen_free(g);
    for (int i = 0; i < g->nroutes; i++) free_route(L, g->routes[i]);
    free(g->routes);
    free_route(L, g->fallback);
    gw_router_free(g->router);
    for (int i = 0; i < g->nservices; i++) {
        gw_service *s = &g->services[i];
        if (s->upstream == &s->single) free(s->single.targets);
        free(s->name);
        free(s->host);
        free(s->path);
    }
    free(g->services);
    for (int i = 0; i < g->nupstreams; i++) {
        gw_upstream *u = &g->upstreams[i];
        for (int k = 0; k < u->ntargets; k++) free(u->targets[k].host);
        free(u->targets);
        free(u->name);
    }
    free(g->upstreams);
    if (g->lua_ref != LUA_NOREF && g->lua_ref != 0) luaL_unref(L, LUA_REGISTRYINDEX, g->lua_ref);
    free(g);
}

void gw_gen_release(gw_gen *g)
{
    /* Workers keep their generation for life (a reload starts new workers), so a generation is
     * only counted here; its memory goes with the process. */
    if (g) g->refs--;
}
