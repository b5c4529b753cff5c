/* test_router.c — the router's precedence rules and its prefix index, against a linear reference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gen.h"
#include "router.h"

static int passed, failed;
#define CHECK(cond, ...) do { if (cond) passed++; else { failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

static gw_route routes[64];
static int next_priority;           /* regex_priority of the next add() */
static int nroutes;

static gw_route *add(gw_router *r, const char *name, const char **hosts, const char **paths, const char **methods,
                     const char *hname, const char *hval)
{
    gw_route *rt = &routes[nroutes++];
    memset(rt, 0, sizeof *rt);
    rt->name = (char *)name;
    gw_route_spec sp;
    memset(&sp, 0, sizeof sp);
    for (sp.hosts = hosts; hosts && hosts[sp.nhosts]; sp.nhosts++) ;
    for (sp.paths = paths; paths && paths[sp.npaths]; sp.npaths++) ;
    for (sp.methods = methods; methods && methods[sp.nmethods]; sp.nmethods++) ;
    gw_route_header rh = { hname, &hval, 1 };
    if (hname) { sp.headers = &rh; sp.nheaders = 1; }
    sp.regex_priority = next_priority;
    next_priority = 0;
    char err[256];
    int rc = gw_router_add(r, rt, &sp, err, sizeof err);
    CHECK(rc == 0, "add %s: %s", name, err);
    return rt;
}

static const char *match(gw_router *r, const char *method, const char *host, const char *path,
                         const char *hname, const char *hval, size_t *strip)
{
    gw_http_request req;
    memset(&req, 0, sizeof req);
    gw_header h[2];
    req.method.p = method; req.method.n = strlen(method);
    req.path.p = path; req.path.n = strlen(path);
    req.host.p = host; req.host.n = strlen(host);
    req.headers = h;
    if (hname) { h[0].name.p = hname; h[0].name.n = strlen(hname); h[0].value.p = hval; h[0].value.n = strlen(hval); req.nheaders = 1; }
    size_t s = 0;
    gw_route *rt = gw_router_match(r, &req, &s, NULL);
    if (strip) *strip = s;
    return rt ? rt->name : "none";
}

#define L(...) ((const char *[]){ __VA_ARGS__, NULL })

int main(void)
{
    gw_router *r = gw_router_new();
    add(r, "root", NULL, L("/"), NULL, NULL, NULL);
    add(r, "api", NULL, L("/api"), NULL, NULL, NULL);
    add(r, "api-users", NULL, L("/api/users"), NULL, NULL, NULL);
    add(r, "api-users-post", NULL, L("/api/users"), L("POST"), NULL, NULL);
    add(r, "host-exact", L("example.com"), L("/"), NULL, NULL, NULL);
    add(r, "host-wild", L("*.example.org"), L("/api"), NULL, NULL, NULL);
    add(r, "host-wild-suffix", L("api.*"), NULL, NULL, NULL, NULL);
    add(r, "regex", NULL, L("~/items/\\d+$"), NULL, NULL, NULL);
    add(r, "v2", NULL, L("/api/users"), NULL, "x-api-version", "2.0");
    add(r, "multi", NULL, L("/m1", "/m2/deeper"), NULL, NULL, NULL);
    add(r, "alt", NULL, L("~/alt-a|/alt-b"), NULL, NULL, NULL);
    add(r, "opt", NULL, L("~/opts?/x"), NULL, NULL, NULL);
    add(r, "with-port", L("ported.io:8443"), L("/"), NULL, NULL, NULL);
    add(r, "re-low", NULL, L("~/prio/.*"), NULL, NULL, NULL);
    next_priority = 5;
    add(r, "re-high", NULL, L("~/prio/x.*"), NULL, NULL, NULL);
    CHECK(gw_router_finish(r) == 0, "finish");
    size_t strip;

    CHECK(!strcmp(match(r, "GET", "x", "/", NULL, NULL, NULL), "root"), "root");
    CHECK(!strcmp(match(r, "GET", "x", "/apix", NULL, NULL, &strip), "api") && strip == 4, "plain prefix /api matches /apix");
    CHECK(!strcmp(match(r, "GET", "x", "/api/users/1", NULL, NULL, &strip), "api-users") && strip == 10, "longest prefix");
    CHECK(!strcmp(match(r, "POST", "x", "/api/users", NULL, NULL, NULL), "api-users-post"), "methods beat no methods");
    CHECK(!strcmp(match(r, "GET", "x", "/api/users", "X-Api-Version", "2.0", NULL), "v2"), "header condition (case-insensitive name)");
    CHECK(!strcmp(match(r, "GET", "x", "/api/users", "x-api-version", "1.0", NULL), "api-users"), "header value mismatch");
    CHECK(!strcmp(match(r, "GET", "EXAMPLE.com:8000", "/api/users", NULL, NULL, NULL), "host-exact"), "exact host beats longer path, port ignored");
    CHECK(!strcmp(match(r, "GET", "a.example.org", "/api/x", NULL, NULL, NULL), "host-wild"), "wildcard host");
    CHECK(!strcmp(match(r, "GET", "example.org", "/api/x", NULL, NULL, NULL), "api"), "*.example.org needs a subdomain");
    CHECK(!strcmp(match(r, "GET", "api.foo.io", "/zzz", NULL, NULL, NULL), "host-wild-suffix"), "rightmost wildcard host");
    CHECK(!strcmp(match(r, "GET", "x", "/items/42", NULL, NULL, &strip), "regex") && strip == 9, "regex");
    CHECK(!strcmp(match(r, "GET", "x", "/items/4a", NULL, NULL, NULL), "root"), "regex anchored at the end");
    CHECK(!strcmp(match(r, "GET", "x", "/m2/deeper/x", NULL, NULL, NULL), "multi"), "second path of a route");
    CHECK(!strcmp(match(r, "GET", "x", "/m2/deepe", NULL, NULL, NULL), "root"), "partial prefix does not match");
    CHECK(!strcmp(match(r, "GET", "x", "/alt-b", NULL, NULL, NULL), "alt"), "top-level alternation is not indexed by its first literal");
    CHECK(!strcmp(match(r, "GET", "x", "/opt/x", NULL, NULL, NULL), "opt"), "a quantified literal is optional");
    CHECK(!strcmp(match(r, "GET", "x", "/opts/x", NULL, NULL, NULL), "opt"), "a quantified literal may be present");
    CHECK(!strcmp(match(r, "GET", "ported.io:8443", "/a", NULL, NULL, NULL), "with-port"), "host:port rule matches that port");
    CHECK(strcmp(match(r, "GET", "ported.io:9000", "/a", NULL, NULL, NULL), "with-port") != 0, "host:port rule needs the port");
    CHECK(!strcmp(match(r, "GET", "x", "/prio/xyz", NULL, NULL, NULL), "re-high"), "higher regex_priority first");
    CHECK(!strcmp(match(r, "GET", "x", "/prio/abc", NULL, NULL, NULL), "re-low"), "lower regex_priority still matches");
    gw_router_free(r);

    /* index vs. linear reference on many routes sharing prefixes */
    gw_router *big = gw_router_new();
    nroutes = 0;
    static char names[40][32], paths[40][32];
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof names[i], "r%d", i);
        snprintf(paths[i], sizeof paths[i], "/p/%d%s", i % 7, i % 2 ? "/x" : "");
        const char *p[] = { paths[i], NULL };
        const char *m[] = { i % 3 ? "GET" : "POST", NULL };
        add(big, names[i], NULL, p, i % 5 ? NULL : m, NULL, NULL);
    }
    gw_router_finish(big);
    int agree = 1;
    for (int i = 0; i < 7 && agree; i++) {
        char path[32];
        snprintf(path, sizeof path, "/p/%d/x/y", i);
        const char *got = match(big, "GET", "h", path, NULL, NULL, NULL);
        /* reference: longest matching prefix, methods first, then config order */
        const char *want = "none";
        int best = -1, bestlen = -1, bestm = 0;
        for (int k = 0; k < 40; k++) {
            size_t pl = strlen(paths[k]);
            if (strncmp(path, paths[k], pl) != 0) continue;
            int hasm = k % 5 == 0;
            if (hasm && strcmp(k % 3 ? "GET" : "POST", "GET") != 0) continue;
            if ((int)pl > bestlen || ((int)pl == bestlen && hasm && !bestm)) { best = k; bestlen = (int)pl; bestm = hasm; }
        }
        if (best >= 0) want = names[best];
        agree = !strcmp(got, want);
        CHECK(agree, "%s: got %s want %s", path, got, want);
    }
    gw_router_free(big);

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
