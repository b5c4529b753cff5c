/* router_bench.c — router lookup time with 10,000 routes (the figure: median < 1 µs).
 * Routes look like a real fleet: /api/v{1,2}/svcN/resourceM prefixes, a tenth with hosts, a tenth
 * with methods, some regex routes. Lookups use paths that hit routes deep in the table and paths
 * that match nothing. Prints the median and p99 over batches of 1000 lookups. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "gen.h"
#include "router.h"

#define NROUTES 10000
#define NPATHS 4096

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int nroutes = argc > 1 ? atoi(argv[1]) : NROUTES;
    gw_router *r = gw_router_new();
    gw_route *routes = calloc(nroutes, sizeof(gw_route));
    char (*paths)[64] = calloc(nroutes, 64);
    char (*hosts)[64] = calloc(nroutes, 64);
    char err[256];
    for (int i = 0; i < nroutes; i++) {
        gw_route_spec sp;
        memset(&sp, 0, sizeof sp);
        const char *p[1], *h[1], *m[2] = { "GET", "POST" };
        if (i % 50 == 49) snprintf(paths[i], 64, "~/api/v%d/re%d/\\d+$", 1 + i % 2, i);
        else snprintf(paths[i], 64, "/api/v%d/svc%d/res%d", 1 + i % 2, i / 10, i % 10);
        p[0] = paths[i];
        sp.paths = p; sp.npaths = 1;
        if (i % 10 == 3) { snprintf(hosts[i], 64, "tenant%d.example.com", i); h[0] = hosts[i]; sp.hosts = h; sp.nhosts = 1; }
        if (i % 10 == 7) { sp.methods = m; sp.nmethods = 2; }
        routes[i].index = i;
        if (gw_router_add(r, &routes[i], &sp, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); return 1; }
    }
    gw_router_finish(r);

    static char reqpaths[NPATHS][96];
    static gw_http_request reqs[NPATHS];
    srand(42);
    int expect_hit = 0;
    for (int k = 0; k < NPATHS; k++) {
        int i = rand() % nroutes;
        if (k % 8 == 7) snprintf(reqpaths[k], 96, "/nothing/here/%d", k);
        else if (i % 50 == 49) snprintf(reqpaths[k], 96, "/api/v%d/re%d/%d", 1 + i % 2, i, k);
        else { snprintf(reqpaths[k], 96, "/api/v%d/svc%d/res%d/item/%d", 1 + i % 2, i / 10, i % 10, k); expect_hit++; }
        memset(&reqs[k], 0, sizeof reqs[k]);
        reqs[k].method.p = "GET"; reqs[k].method.n = 3;
        reqs[k].path.p = reqpaths[k]; reqs[k].path.n = strlen(reqpaths[k]);
        reqs[k].host.p = "api.example.com"; reqs[k].host.n = 15;
    }
    int batches = 2000, per = 1000, hits = 0;
    double *t = malloc(sizeof(double) * batches);
    for (int b = 0; b < batches; b++) {
        double t0 = now_ns();
        for (int j = 0; j < per; j++) {
            size_t strip;
            gw_route *rt = gw_router_match(r, &reqs[(b * per + j) % NPATHS], &strip, NULL);
            hits += rt != NULL;
        }
        t[b] = (now_ns() - t0) / per;
    }
    qsort(t, batches, sizeof(double), cmpd);
    printf("routes: %d  lookups: %d  hits: %d\n", nroutes, batches * per, hits);
    printf("median: %.0f ns/lookup  p99: %.0f ns/lookup\n", t[batches / 2], t[batches * 99 / 100]);
    gw_router_free(r);
    return 0;
}
