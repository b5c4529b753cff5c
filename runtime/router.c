/* router.c — route matching, compiled once per generation.
 * Every (route, path) pair becomes one entry; entries are sorted most specific first: routes with
 * an exact host, then a wildcard host, then none; within those regex paths, then longer prefixes,
 * then routes with methods and with more header conditions; ties keep config order. The first entry
 * (lowest index) whose conditions all hold wins.
 * Lookups do not scan every entry: prefix paths go into a hash table keyed by (length, bytes), and
 * one pass over the request path hashes each of its prefixes whose length some route uses, so only
 * entries whose prefix really matches are candidates. A regex path is indexed by its leading
 * literal text (it is anchored, so a path must start with that). Entries without either (routes
 * matching on host/method/headers only, regexes starting with a metacharacter) are always
 * candidates. */
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

typedef struct {
    char *s; size_t n;
    int wild;                   /* 0 exact, 1 "*.x" suffix, 2 "x.*" prefix */
    int with_port;              /* "host:port": compared with the Host header's port too */
} host_pat;
typedef struct { char *name; size_t nlen; char **values; int nvalues; } hdr_cond;

typedef struct {
    gw_route *route;
    int host_class;             /* 2 exact host, 1 wildcard only, 0 no hosts */
    host_pat *hosts; int nhosts;
    char *prefix; size_t plen;  /* prefix path, or NULL */
    pcre2_code *re;             /* regex path, or NULL */
    char *lit; size_t litlen;   /* the regex's leading literal text: a path must start with it */
    pcre2_match_data *md;
    char **methods; int nmethods;
    hdr_cond *hdrs; int nhdrs;
    int order;
    int regex_priority;
} entry;

typedef struct {
    uint64_t h;
    uint32_t len;               /* 0 = empty slot */
    const char *key;
    int *idx;                   /* entry indexes with this prefix, ascending */
    int n;
} pslot;

struct gw_router {
    entry *entries;
    int n;
    int *generic;               /* entries without a prefix path, ascending */
    int ngeneric;
    pslot *slots;               /* open addressing, nslots a power of two */
    size_t nslots;
    unsigned char *haslen;      /* haslen[k]: some prefix has length k */
    size_t maxlen;
};

#define FNV_OFF 1469598103934665603ULL
#define FNV_PRIME 1099511628211ULL

static pslot *slot_find(gw_router *r, uint64_t h, const char *key, uint32_t len)
{
    size_t m = r->nslots - 1;
    for (size_t i = (size_t)h & m;; i = (i + 1) & m) {
        pslot *sl = &r->slots[i];
        if (sl->len == 0) return sl;
        if (sl->h == h && sl->len == len && memcmp(sl->key, key, len) == 0) return sl;
    }
}

static int cmp_entry(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->host_class != y->host_class) return y->host_class - x->host_class;
    if ((x->re != NULL) != (y->re != NULL)) return x->re ? -1 : 1;
    if (x->re && x->regex_priority != y->regex_priority) return y->regex_priority - x->regex_priority;
    if (x->plen != y->plen) return x->plen > y->plen ? -1 : 1;
    if ((x->nmethods > 0) != (y->nmethods > 0)) return x->nmethods > 0 ? -1 : 1;
    if (x->nhdrs != y->nhdrs) return y->nhdrs - x->nhdrs;
    return x->order - y->order;
}

gw_router *gw_router_new(void)
{
    return calloc(1, sizeof(gw_router));
}

/* Leading literal characters of an anchored regex, so it can be indexed like a prefix. Stops at
 * the first metacharacter; a literal followed by a quantifier is not required, so it is dropped. */
static char *literal_prefix(const char *re, size_t *len)
{
    size_t n = 0;
    *len = 0;
    if (strchr(re, '|')) return NULL; /* an alternative may start with anything */
    while (re[n] && !strchr("\\.[](){}*+?|^$", re[n])) n++;
    if (n && re[n] && strchr("*?{", re[n])) n--;
    *len = n;
    return n ? strndup(re, n) : NULL;
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
        e->regex_priority = spec->regex_priority;
        e->hosts = spec->nhosts ? calloc(spec->nhosts, sizeof(host_pat)) : NULL;
        e->nhosts = spec->nhosts;
        for (int h = 0; h < spec->nhosts; h++) {
            const char *s = spec->hosts[h];
            host_pat *hp = &e->hosts[h];
            size_t n = strlen(s);
            if (n > 1 && s[0] == '*') { hp->wild = 1; s++; n--; }          /* "*.example.com" -> ".example.com" */
            else if (n > 1 && s[n - 1] == '*') { hp->wild = 2; n--; }       /* "api.*" -> "api." */
            hp->s = strndup(s, n);
            hp->with_port = memchr(s, ':', n) != NULL && s[0] != '[' ? 1 : (s[0] == '[' && strstr(s, "]:") != NULL);
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
                e->lit = literal_prefix(p + 1, &e->litlen);
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
    r->generic = malloc(sizeof(int) * (r->n ? r->n : 1));
    r->nslots = 16;
    while (r->nslots < (size_t)r->n * 2) r->nslots <<= 1;
    r->slots = calloc(r->nslots, sizeof(pslot));
    r->maxlen = 0;
    for (int i = 0; i < r->n; i++) {
        entry *e = &r->entries[i];
        size_t kl = e->prefix ? e->plen : e->litlen;
        if (kl > r->maxlen) r->maxlen = kl;
    }
    r->haslen = calloc(r->maxlen + 1, 1);
    if (!r->generic || !r->slots || !r->haslen) return -1;
    for (int i = 0; i < r->n; i++) {
        entry *e = &r->entries[i];
        const char *key = e->prefix ? e->prefix : e->lit;
        size_t kl = e->prefix ? e->plen : e->litlen;
        if (!key || kl == 0) { r->generic[r->ngeneric++] = i; continue; }
        uint64_t h = FNV_OFF;
        for (size_t k = 0; k < kl; k++) h = (h ^ (unsigned char)key[k]) * FNV_PRIME;
        pslot *sl = slot_find(r, h, key, (uint32_t)kl);
        if (sl->len == 0) {
            sl->h = h;
            sl->len = (uint32_t)kl;
            sl->key = key;
        }
        int *ni = realloc(sl->idx, sizeof(int) * (sl->n + 1));
        if (!ni) return -1;
        sl->idx = ni;
        sl->idx[sl->n++] = i;   /* i ascends, so each list stays sorted */
        r->haslen[kl] = 1;
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
        free(e->lit);
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
    for (size_t i = 0; r->slots && i < r->nslots; i++) free(r->slots[i].idx);
    free(r->slots);
    free(r->haslen);
    free(r->generic);
    free(r->entries);
    free(r);
}

static int host_match(const entry *e, const char *h, size_t hn, const char *hp_full, size_t hfn)
{
    for (int i = 0; i < e->nhosts; i++) {
        const host_pat *p = &e->hosts[i];
        if (p->with_port) {
            if (hfn == p->n && memcmp(hp_full, p->s, hfn) == 0) return 1;
            continue;
        }
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

/* All conditions of entry e but its prefix (already known to match when it has one). */
static int entry_match(entry *e, const gw_http_request *req, const char *host, size_t hn,
                       const char *hfull, size_t hfn, size_t *strip)
{
    if (e->nhosts && !host_match(e, host, hn, hfull, hfn)) return 0;
    *strip = e->plen;
    if (e->re) {
        int rc = pcre2_match(e->re, (PCRE2_SPTR)req->path.p, req->path.n, 0, 0, e->md, NULL);
        if (rc < 0) return 0;
        *strip = pcre2_get_ovector_pointer(e->md)[1];
    }
    if (e->nmethods) {
        int ok = 0;
        for (int m = 0; m < e->nmethods && !ok; m++)
            ok = strlen(e->methods[m]) == req->method.n && memcmp(e->methods[m], req->method.p, req->method.n) == 0;
        if (!ok) return 0;
    }
    for (int h = 0; h < e->nhdrs; h++)
        if (!header_match(&e->hdrs[h], req)) return 0;
    return 1;
}

#define MAX_CAND 256

gw_route *gw_router_match(gw_router *r, const gw_http_request *req, size_t *strip_len, const void **regex)
{
    /* Host without port, lowercased, bounded: hosts longer than 255 bytes match no host rule. */
    char host[256];
    size_t hn = 0;
    if (req->host.n < sizeof host) {
        if (req->host.n && req->host.p[0] == '[') {
            while (hn < req->host.n && req->host.p[hn] != ']') { host[hn] = (char)tolower((unsigned char)req->host.p[hn]); hn++; }
            if (hn < req->host.n) { host[hn] = ']'; hn++; }
        } else {
            for (size_t i = 0; i < req->host.n && req->host.p[i] != ':'; i++)
                host[hn++] = (char)tolower((unsigned char)req->host.p[i]);
        }
    }
    /* the Host with its port, lowercased, for "host:port" rules */
    char hfull[300];
    size_t hfn = 0;
    if (req->host.n < sizeof hfull)
        for (size_t i = 0; i < req->host.n; i++) hfull[hfn++] = (char)tolower((unsigned char)req->host.p[i]);
    const char *path = req->path.p;
    size_t pn = req->path.n;

    /* candidates: every entry whose prefix is a prefix of the path */
    int cand[MAX_CAND];
    int nc = 0, overflow = 0;
    uint64_t h = FNV_OFF;
    size_t lim = pn < r->maxlen ? pn : r->maxlen;
    for (size_t k = 0; k < lim && !overflow; k++) {
        h = (h ^ (unsigned char)path[k]) * FNV_PRIME;
        if (!r->haslen[k + 1]) continue;
        pslot *sl = slot_find(r, h, path, (uint32_t)(k + 1));
        if (sl->len == 0) continue;
        if (nc + sl->n > MAX_CAND) { overflow = 1; break; }
        memcpy(cand + nc, sl->idx, sizeof(int) * sl->n);
        nc += sl->n;
    }
    size_t strip = 0;
    if (overflow) {
        /* pathological config (hundreds of routes sharing one prefix): scan in order */
        for (int i = 0; i < r->n; i++) {
            entry *e = &r->entries[i];
            if (e->prefix && (pn < e->plen || memcmp(path, e->prefix, e->plen) != 0)) continue;
            if (entry_match(e, req, host, hn, hfull, hfn, &strip)) {
                if (strip_len) *strip_len = strip;
                if (regex) *regex = e->re;
                return e->route;
            }
        }
        return NULL;
    }
    /* insertion sort: a handful of candidates */
    for (int i = 1; i < nc; i++) {
        int v = cand[i], j = i - 1;
        while (j >= 0 && cand[j] > v) { cand[j + 1] = cand[j]; j--; }
        cand[j + 1] = v;
    }
    /* merge with the generic entries, lowest index (most specific) first */
    int a = 0, b = 0;
    while (a < nc || b < r->ngeneric) {
        int i;
        if (b >= r->ngeneric || (a < nc && cand[a] < r->generic[b])) i = cand[a++];
        else i = r->generic[b++];
        entry *e = &r->entries[i];
        if (entry_match(e, req, host, hn, hfull, hfn, &strip)) {
            if (strip_len) *strip_len = strip;
            if (regex) *regex = e->re;
            return e->route;
        }
    }
    return NULL;
}

/* gw.regex.check(pattern): true, or nil and PCRE2's message — config validation uses the same
 * compiler as the router, so a regex path that passes `gw check` also compiles at start. */
#include <lua.h>
#include <lauxlib.h>
static int push_compile_error(lua_State *L, int ec, PCRE2_SIZE eo)
{
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(ec, msg, sizeof msg);
    lua_pushnil(L);
    lua_pushfstring(L, "%s at offset %d", (char *)msg, (int)eo);
    return 2;
}

static int l_regex_check(lua_State *L)
{
    size_t n;
    const char *p = luaL_checklstring(L, 1, &n);
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)p, n, PCRE2_ANCHORED, &ec, &eo, NULL);
    if (re) { pcre2_code_free(re); lua_pushboolean(L, 1); return 1; }
    return push_compile_error(L, ec, eo);
}

/* gw.regex.match(pattern, subject): true when the (unanchored) regex matches somewhere in the
 * subject, false when not; nil and PCRE2's message when the pattern does not compile. The last
 * few compiled patterns are kept, so a plugin matching the same rules per request compiles once. */
#define RX_CACHE 16
static struct { char *pat; size_t len; pcre2_code *re; } rx_cache[RX_CACHE];
static unsigned rx_next;
static pcre2_match_data *rx_md;

static int l_regex_match(lua_State *L)
{
    size_t n, sn;
    const char *p = luaL_checklstring(L, 1, &n);
    const char *s = luaL_checklstring(L, 2, &sn);
    pcre2_code *re = NULL;
    for (int i = 0; i < RX_CACHE; i++)
        if (rx_cache[i].re && rx_cache[i].len == n && memcmp(rx_cache[i].pat, p, n) == 0) { re = rx_cache[i].re; break; }
    if (!re) {
        int ec;
        PCRE2_SIZE eo;
        re = pcre2_compile((PCRE2_SPTR)p, n, 0, &ec, &eo, NULL);
        if (!re) return push_compile_error(L, ec, eo);
        char *copy = malloc(n + 1);
        if (!copy) { pcre2_code_free(re); return luaL_error(L, "out of memory"); }
        memcpy(copy, p, n);
        copy[n] = 0;
        unsigned slot = rx_next++ % RX_CACHE;
        if (rx_cache[slot].re) { pcre2_code_free(rx_cache[slot].re); free(rx_cache[slot].pat); }
        rx_cache[slot].pat = copy; rx_cache[slot].len = n; rx_cache[slot].re = re;
    }
    if (!rx_md && !(rx_md = pcre2_match_data_create(1, NULL))) return luaL_error(L, "out of memory");
    int rc = pcre2_match(re, (PCRE2_SPTR)s, sn, 0, 0, rx_md, NULL);
    lua_pushboolean(L, rc >= 0);
    return 1;
}

/* Compiled regex objects: regex.compile(pattern [, flags]) -> object with :match(s) and :exec(s).
 * flags: "a" anchored at the subject's start, "i" caseless. The object owns its code and match
 * data; both are freed when it is collected. */
#define RX_MT "gw.regex.object"
typedef struct { pcre2_code *re; pcre2_match_data *md; } rx_obj;

static int l_regex_compile(lua_State *L)
{
    size_t n;
    const char *p = luaL_checklstring(L, 1, &n);
    const char *flags = luaL_optstring(L, 2, "");
    uint32_t opts = 0;
    for (const char *f = flags; *f; f++) {
        switch (*f) {
        case 'a': opts |= PCRE2_ANCHORED; break;
        case 'i': opts |= PCRE2_CASELESS; break;
        case 'm': opts |= PCRE2_MULTILINE; break;
        case 's': opts |= PCRE2_DOTALL; break;
        case 'x': opts |= PCRE2_EXTENDED; break;
        case 'u': opts |= PCRE2_UTF; break;
        case 'U': opts |= PCRE2_UNGREEDY; break;
        case 'D': opts |= PCRE2_DUPNAMES; break;
        default: return luaL_error(L, "gw.regex.compile: unknown flag '%c' (known: a, i, m, s, x, u, U, D)", *f);
        }
    }
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)p, n, opts, &ec, &eo, NULL);
    if (!re) return push_compile_error(L, ec, eo);
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) { pcre2_code_free(re); return luaL_error(L, "out of memory"); }
    rx_obj *o = lua_newuserdata(L, sizeof *o);
    o->re = re;
    o->md = md;
    luaL_getmetatable(L, RX_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int push_exec(lua_State *L, const pcre2_code *re, pcre2_match_data *md, const char *s, size_t sn, size_t from);

/* The captures of a route's regex path (as gw_router_match reported it) on the request path:
 * pushes the table :exec gives, or nil. */
int gw_router_push_captures(lua_State *L, const void *regex, const char *path, size_t n)
{
    if (!regex) { lua_pushnil(L); return 1; }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(regex, NULL);
    if (!md) return luaL_error(L, "out of memory");
    push_exec(L, regex, md, path, n, 0);
    lua_settop(L, lua_gettop(L) - (lua_isnil(L, -1) ? 0 : 2));   /* the captures only */
    pcre2_match_data_free(md);
    return 1;
}

static int l_rx_gc(lua_State *L)
{
    rx_obj *o = luaL_checkudata(L, 1, RX_MT);
    if (o->md) pcre2_match_data_free(o->md);
    if (o->re) pcre2_code_free(o->re);
    o->md = NULL;
    o->re = NULL;
    return 0;
}

static int l_rx_match(lua_State *L)
{
    rx_obj *o = luaL_checkudata(L, 1, RX_MT);
    size_t sn;
    const char *s = luaL_checklstring(L, 2, &sn);
    lua_pushboolean(L, pcre2_match(o->re, (PCRE2_SPTR)s, sn, 0, 0, o->md, NULL) >= 0);
    return 1;
}

/* :exec(s) -> nil when no match; else { [0] = whole match, [1..n] = groups (false when a group
 * did not take part), NAME = named groups }. */
static int l_rx_exec(lua_State *L)
{
    rx_obj *o = luaL_checkudata(L, 1, RX_MT);
    size_t sn;
    const char *s = luaL_checklstring(L, 2, &sn);
    lua_Integer init = luaL_optinteger(L, 3, 1);
    if (init < 1) init = 1;
    if ((size_t)(init - 1) > sn) { lua_pushnil(L); return 1; }
    return push_exec(L, o->re, o->md, s, sn, (size_t)(init - 1));
}

/* Matches from byte `from` and pushes the captures table (see :exec) with the match's first and
 * last positions (1-based, inclusive: to = from - 1 for an empty match), or nil. */
static int push_exec(lua_State *L, const pcre2_code *re, pcre2_match_data *md, const char *s, size_t sn, size_t from)
{
    int rc = pcre2_match(re, (PCRE2_SPTR)s, sn, from, 0, md, NULL);
    if (rc < 0) { lua_pushnil(L); return 1; }
    uint32_t ngroups = 0;
    pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &ngroups);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    lua_createtable(L, (int)ngroups, 1);
    for (uint32_t i = 0; i <= ngroups; i++) {
        if ((int)i < rc && ov[2 * i] != PCRE2_UNSET) lua_pushlstring(L, s + ov[2 * i], ov[2 * i + 1] - ov[2 * i]);
        else lua_pushboolean(L, 0);
        lua_rawseti(L, -2, (int)i);
    }
    uint32_t nnames = 0, esize = 0;
    PCRE2_SPTR table;
    pcre2_pattern_info(re, PCRE2_INFO_NAMECOUNT, &nnames);
    pcre2_pattern_info(re, PCRE2_INFO_NAMEENTRYSIZE, &esize);
    pcre2_pattern_info(re, PCRE2_INFO_NAMETABLE, &table);
    for (uint32_t i = 0; i < nnames; i++) {
        PCRE2_SPTR e = table + (size_t)i * esize;
        int g = (e[0] << 8) | e[1];
        lua_rawgeti(L, -1, g);
        lua_setfield(L, -2, (const char *)(e + 2));
    }
    lua_pushinteger(L, (lua_Integer)ov[0] + 1);
    lua_pushinteger(L, (lua_Integer)ov[1]);
    return 3;
}

int luaopen_gw_regex(lua_State *L)
{
    if (luaL_newmetatable(L, RX_MT)) {
        lua_pushcfunction(L, l_rx_gc);
        lua_setfield(L, -2, "__gc");
        lua_newtable(L);
        lua_pushcfunction(L, l_rx_match);
        lua_setfield(L, -2, "match");
        lua_pushcfunction(L, l_rx_exec);
        lua_setfield(L, -2, "exec");
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_regex_check);
    lua_setfield(L, -2, "check");
    lua_pushcfunction(L, l_regex_match);
    lua_setfield(L, -2, "match");
    lua_pushcfunction(L, l_regex_compile);
    lua_setfield(L, -2, "compile");
    return 1;
}
