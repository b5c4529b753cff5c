/* router.h — building and querying a generation's router. */
#ifndef GW_ROUTER_H
#define GW_ROUTER_H
#include "gen.h"

typedef struct { const char *name; const char **values; int nvalues; } gw_route_header;
typedef struct {
    const char **hosts; int nhosts;
    const char **paths; int npaths;     /* "~regex" or prefix */
    const char **methods; int nmethods;
    gw_route_header *headers; int nheaders;
    int regex_priority;                 /* among regex paths, higher is tried first */
} gw_route_spec;

gw_router *gw_router_new(void);
int gw_router_add(gw_router *r, gw_route *route, const gw_route_spec *spec, char *err, size_t errlen);
int gw_router_finish(gw_router *r);
void gw_router_free(gw_router *r);
#endif
