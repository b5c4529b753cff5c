/* gen.h — a generation: the C half of one compiled config (router, services, upstreams, limits).
 * Built in each worker from the Lua `compiled` table; the Lua half (plugin chains, plugin configs)
 * stays in the VM and is reached through registry refs. Requests keep their generation alive. */
#ifndef GW_GEN_H
#define GW_GEN_H
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "http_parser.h"

/* Request phases. A route's `phase_mask` has bit (1 << phase) set when a plugin of its chain
 * implements that phase; a phase whose bit is clear is never entered (no Lua call at all). */
enum gw_phase {
    GW_PHASE_INIT_WORKER = 0, GW_PHASE_REWRITE, GW_PHASE_ACCESS, GW_PHASE_BALANCER,
    GW_PHASE_HEADER_FILTER, GW_PHASE_BODY_FILTER, GW_PHASE_LOG, GW_PHASE_ADMIN, GW_PHASE_TIMER,
    GW_PHASE_COUNT
};
extern const char *gw_phase_names[GW_PHASE_COUNT];

typedef struct {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char *host;                 /* as written in config, for the Host header and logs */
    int port;
    int weight, current_weight; /* smooth weighted round-robin */
    int fails;                  /* consecutive failures (passive health) */
    uint64_t down_until_ms;     /* skipped until then */
    /* https: the last TLS session with this target (tls.c), resumed by the next connection
     * made under the same client context and server name */
    struct ssl_session_st *tls_sess;
    const void *tls_sess_ctx;
    char tls_sess_name[64];
} gw_target;

typedef struct {
    char *name;
    gw_target *targets;
    int ntargets;
    int passive_failures;       /* 0 = passive health off */
    int cooldown_ms;
} gw_upstream;

enum { GW_PROTO_HTTP = 0, GW_PROTO_HTTPS, GW_PROTO_ECHO };

typedef struct {
    char *name;
    int protocol;
    char *host;                 /* Host header sent upstream unless preserve_host */
    int port;
    char *path;                 /* prefix prepended to the upstream path, NULL when none */
    size_t path_len;
    int connect_timeout, write_timeout, read_timeout; /* ms */
    int retries;
    gw_upstream *upstream;      /* balancer: the named upstream, or a single implicit target */
    gw_upstream single;
    struct ssl_ctx_st *tls_ctx; /* https: the client context (verification, CAs, client cert) */
    int tls_verify;             /* https: check the upstream certificate and its name */
} gw_service;

typedef struct gw_route gw_route;

typedef struct gw_gen {
    int refs;                   /* the worker holds one; each request in flight holds one */
    int id;
    int lua_ref;                /* registry ref of the Lua compiled table */
    struct gw_router *router;
    gw_service *services;
    int nservices;
    gw_upstream *upstreams;
    int nupstreams;
    gw_route *fallback;         /* global plugins, used when no route matched */
    gw_route **routes;
    int nroutes;
    /* limits and timeouts */
    gw_http_limits limits;
    int64_t max_body_size;
    int metrics;                /* gw.metrics: record each request in the Prometheus table */
    int underscores_in_headers; /* gw.underscores_in_headers: keep request headers named with '_' */
    int client_header_timeout, client_body_timeout, keepalive_timeout, send_timeout;
    int client_body_min_rate;   /* bytes/s a request body must keep up after client_body ms; 0 off */
    int max_connections;        /* client connections per worker; past it new ones are refused */
    int ka_max_idle, ka_idle_timeout, ka_max_requests;
    struct gw_tls_gen *tls;     /* certificates, SNI table, upstream TLS contexts (tls.c) */
} gw_gen;

struct gw_route {
    int index;
    char *name;
    gw_service *service;
    int strip_path, preserve_host;
    unsigned phase_mask;
    int bf_count;               /* instances of the chain that run body_filter */
    int chain_ref;              /* registry ref to the plugin chain (array), LUA_NOREF if empty */
    int https_only;             /* protocols: [https]: a plain request is redirected (tls.c) */
    int https_redirect;         /* https_redirect_status_code: 426, 301, 302, 307, 308 */
    int require_client_cert;    /* a verified client certificate is needed (401 / 403) */
};

struct lua_State;
/* Builds a generation from the compiled table at the top of L's stack. NULL + message on error. */
gw_gen *gw_gen_build(struct lua_State *L, char *err, size_t errlen);
void gw_gen_release(gw_gen *g);
/* Frees a generation and drops its Lua refs (the compiled table and plugin chains). */
void gw_gen_free(struct lua_State *L, gw_gen *g);

/* Router */
typedef struct gw_router gw_router;
/* regex (may be NULL): set to the matched regex path's compiled code (pcre2_code *), or NULL when
 * the route matched by prefix or without a path. */
gw_route *gw_router_match(gw_router *r, const gw_http_request *req, size_t *prefix_len, const void **regex);

int gw_resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len);
#endif
