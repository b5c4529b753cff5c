/* router.c — route matching, compiled once per generation.
 * Every (route, path) pair becomes one entry; entries are sorted most specific first: routes with
 * an exact host, then a wildcard host, then none; within those regex paths, then longer prefixes,
 * then routes with methods and with more header conditions; ties keep config order. The first entry
 * whose conditions all hold wins. Entries are bucketed by their first path byte after '/', so a
 * lookup scans only the entries that can match. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include "gw.h"
#include "gen.h"
#include "router.h"

const char *gw_phase_names[GW_PHASE_COUNT] = {
    "init_worker", "rewrite", "access", "balancer", "header_filter", "body_filter", "log", "admin", "timer"
};

typedef struct { char *s; size_t n; int wild; /* 0 exact, 1 "*.x" suffix, 2 "x.*" prefix */ } host_pat;
typedef struct { char *name; size_t nlen; char **values; int nvalues; } hdr_cond;

typedef struct {
    gw_route *route;
    int host_class;             /* 2 exact host, 1 wildcard only, 0 no hosts */
    host_pat *hosts; int nhosts;
    char *prefix; size_t plen;  /* prefix path, or NULL */
    pcre2_code *re;             /* regex path, or NULL */
    pcre2_match_data *md;
    char **methods; int nmethods;
    hdr_cond *hdrs; int nhdrs;
    int order;
} entry;

struct gw_router {
    entry *entries;
    int n;
    /* bucket[c] lists entry indexes, sorted, that can match a path whose byte after the leading
     * '/' is c; entries with an empty prefix, a regex or no path go in every bucket. */
    int *bucket[256];
    int nbucket[256];
};

static int cmp_entry(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->host_class != y->host_class) return y->host_class - x->host_class;
    if ((x->re != NULL) != (y->re != NULL)) return x->re ? -1 : 1;
    if (x->plen != y->plen) return x->plen > y->plen ? -1 : 1;
    if ((x->nmethods > 0) != (y->nmethods > 0)) return x->nmethods > 0 ? -1 : 1;
    if (x->nhdrs != y->nhdrs) return y->nhdrs - x->nhdrs;
    return x->order - y->order;
}

gw_router *gw_router_new(void)
{
    return calloc(1, sizeof(gw_router));
}

int gw_router_add(gw_router *r, gw_route *route, const gw_route_spec *spec, char *err, size_t errlen)
{
    int npaths = spec->npaths ? spec->npaths : 1;
    entry *ne = realloc(r->entries, sizeof(entry) * (r->n + npaths));
    if (!ne) { snprintf(err, errlen, "out of memory"); return -1; }
    r->entries = ne;
    for (int i = 0; i < npaths; i++) {
        entry *e = &r->entries[r->n];
        memset(e, 0, sizeof *e);
        e->route = route;
        e->order = r->n;
        e->hosts = spec->nhosts ? calloc(spec->nhosts, sizeof(host_pat)) : NULL;
        e->nhosts = spec->nhosts;
        for (int h = 0; h < spec->nhosts; h++) {
            const char *s = spec->hosts[h];
            host_pat *hp = &e->hosts[h];
            size_t n = strlen(s);
            if (n > 1 && s[0] == '*') { hp->wild = 1; s++; n--; }          /* "*.example.com" -> ".example.com" */
            else if (n > 1 && s[n - 1] == '*') { hp->wild = 2; n--; }       /* "api.*" -> "api." */
            hp->s = strndup(s, n);
            for (size_t k = 0; k < n; k++) hp->s[k] = (char)tolower((unsigned char)hp->s[k]);
            hp->n = n;
            int cls = hp->wild ? 1 : 2;
            if (cls > e->host_class) e->host_class = cls;
        }
        if (spec->npaths) {
            const char *p = spec->paths[i];
            if (p[0] == '~') {
                int ec; PCRE2_SIZE eo;
                e->re = pcre2_compile((PCRE2_SPTR)(p + 1), PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &ec, &eo, NULL);
                if (!e->re) {
                    PCRE2_UCHAR msg[256];
                    pcre2_get_error_message(ec, msg, sizeof msg);
                    snprintf(err, errlen, "invalid regex %s at offset %zu: %s", p + 1, (size_t)eo, (char *)msg);
                    return -1;
                }
                pcre2_jit_compile(e->re, PCRE2_JIT_COMPLETE);
                e->md = pcre2_match_data_create_from_pattern(e->re, NULL);
            } else {
                e->prefix = strdup(p);
                e->plen = strlen(p);
            }
        }
        e->nmethods = spec->nmethods;
        e->methods = spec->nmethods ? calloc(spec->nmethods, sizeof(char *)) : NULL;
        for (int m = 0; m < spec->nmethods; m++) e->methods[m] = strdup(spec->methods[m]);
        e->nhdrs = spec->nheaders;
        e->hdrs = spec->nheaders ? calloc(spec->nheaders, sizeof(hdr_cond)) : NULL;
        for (int h = 0; h < spec->nheaders; h++) {
            e->hdrs[h].name = strdup(spec->headers[h].name);
            e->hdrs[h].nlen = strlen(e->hdrs[h].name);
            e->hdrs[h].nvalues = spec->headers[h].nvalues;
            e->hdrs[h].values = calloc(spec->headers[h].nvalues ? spec->headers[h].nvalues : 1, sizeof(char *));
            for (int v = 0; v < spec->headers[h].nvalues; v++) e->hdrs[h].values[v] = strdup(spec->headers[h].values[v]);
        }
        r->n++;
    }
    return 0;
}

int gw_router_finish(gw_router *r)
{
    qsort(r->entries, r->n, sizeof(entry), cmp_entry);
    for (int c = 0; c < 256; c++) {
        r->bucket[c] = malloc(sizeof(int) * (r->n ? r->n : 1));
        r->nbucket[c] = 0;
    }
    for (int i = 0; i < r->n; i++) {
        entry *e = &r->entries[i];
        if (e->prefix && e->plen >= 2) {
            unsigned char c = (unsigned char)e->prefix[1];
            r->bucket[c][r->nbucket[c]++] = i;
        } else {
            for (int c = 0; c < 256; c++) r->bucket[c][r->nbucket[c]++] = i;
        }
    }
    return 0;
}

void gw_router_free(gw_router *r)
{
    if (!r) return;
    for (int i = 0; i < r->n; i++) {
        entry *e = &r->entries[i];
        for (int h = 0; h < e->nhosts; h++) free(e->hosts[h].s);
        free(e->hosts);
        free(e->prefix);
        if (e->re) { pcre2_code_free(e->re); pcre2_match_data_free(e->md); }
        for (int m = 0; m < e->nmethods; m++) free(e->methods[m]);
        free(e->methods);
        for (int h = 0; h < e->nhdrs; h++) {
            for (int v = 0; v < e->hdrs[h].nvalues; v++) free(e->hdrs[h].values[v]);
            free(e->hdrs[h].values);
            free(e->hdrs[h].name);
        }
        free(e->hdrs);
    }
    for (int c = 0; c < 256; c++) free(r->bucket[c]);
    free(r->entries);
    free(r);
}

static int host_match(const entry *e, const char *h, size_t hn)
{
    for (int i = 0; i < e->nhosts; i++) {
        const host_pat *p = &e->hosts[i];
        if (p->wild == 0) {
            if (hn == p->n && memcmp(h, p->s, hn) == 0) return 1;
        } else if (p->wild == 1) {
            if (hn > p->n && memcmp(h + hn - p->n, p->s, p->n) == 0) return 1;
        } else {
            if (hn > p->n && memcmp(h, p->s, p->n) == 0) return 1;
        }
    }
    return 0;
}

static int header_match(const hdr_cond *c, const gw_http_request *req)
{
    for (int i = 0; i < req->nheaders; i++) {
        const gw_header *h = &req->headers[i];
        if (h->name.n != c->nlen || strncasecmp(h->name.p, c->name, c->nlen) != 0) continue;
        for (int v = 0; v < c->nvalues; v++)
            if (strlen(c->values[v]) == h->value.n && strncasecmp(h->value.p, c->values[v], h->value.n) == 0)
                return 1;
    }
    return 0;
}

gw_route *gw_router_match(gw_router *r, const gw_http_request *req, size_t *strip_len)
{
    /* Host without port, lowercased, bounded: hosts longer than 255 bytes match no host rule. */
    char host[256];
    size_t hn = 0;
    if (req->host.n < sizeof host) {
        for (size_t i = 0; i < req->host.n && req->host.p[i] != ':'; i++)
            host[hn++] = (char)tolower((unsigned char)req->host.p[i]);
        if (hn && host[0] == '[') hn = req->host.n < sizeof host ? hn : 0;
    }
    const char *path = req->path.p;
    size_t pn = req->path.n;
    unsigned char c = pn >= 2 ? (unsigned char)path[1] : 0;
    const int *idx = r->bucket[c];
    int n = r->nbucket[c];
    for (int k = 0; k < n; k++) {
        entry *e = &r->entries[idx[k]];
        if (e->nhosts && !host_match(e, host, hn)) continue;
        size_t strip = 0;
        if (e->prefix) {
            if (pn < e->plen || memcmp(path, e->prefix, e->plen) != 0) continue;
            strip = e->plen;
        } else if (e->re) {
            int rc = pcre2_match(e->re, (PCRE2_SPTR)path, pn, 0, 0, e->md, NULL);
            if (rc < 0) continue;
            strip = pcre2_get_ovector_pointer(e->md)[1];
        }
        if (e->nmethods) {
            int ok = 0;
            for (int m = 0; m < e->nmethods && !ok; m++)
                ok = strlen(e->methods[m]) == req->method.n && memcmp(e->methods[m], req->method.p, req->method.n) == 0;
            if (!ok) continue;
        }
        int ok = 1;
        for (int h = 0; h < e->nhdrs && ok; h++) ok = header_match(&e->hdrs[h], req);
        if (!ok) continue;
        if (strip_len) *strip_len = strip;
        return e->route;
    }
    return NULL;
}

/* gw.regex.check(pattern): true, or nil and PCRE2's message — config validation uses the same
 * compiler as the router, so a regex path that passes `gw check` also compiles at start. */
#include <lua.h>
#include <lauxlib.h>
static int l_regex_check(lua_State *L)
{
    size_t n;
    const char *p = luaL_checklstring(L, 1, &n);
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)p, n, PCRE2_ANCHORED, &ec, &eo, NULL);
    if (re) { pcre2_code_free(re); lua_pushboolean(L, 1); return 1; }
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(ec, msg, sizeof msg);
    lua_pushnil(L);
    lua_pushfstring(L, "%s at offset %d", (char *)msg, (int)eo);
    return 2;
}

int luaopen_gw_regex(lua_State *L)
{
    lua_newtable(L);
    lua_pushcfunction(L, l_regex_check);
    lua_setfield(L, -2, "check");
    return 1;
}
