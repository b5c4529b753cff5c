/* tls.h — TLS on both sides of the proxy (OpenSSL 3): HTTPS listeners with a certificate chosen
 * by SNI, client certificates, session tickets whose keys live in shared memory, and the client
 * contexts of https services (verification, CA bundles, client certificates). */
#ifndef GW_TLS_H
#define GW_TLS_H
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include "gen.h"

struct lua_State;
struct event_base;
struct gw_req;
struct gw_conn;

/* The TLS half of a generation, built with it (gen.c) in every worker and in the master's probe. */
typedef struct gw_tls_gen gw_tls_gen;

/* Builds the generation's TLS contexts from compiled.tls (the compiled table is at index idx) and
 * sets each https service's client context. 0 ok; -1 with a message. */
int gw_tls_gen_build(struct lua_State *L, int idx, gw_gen *g, char *err, size_t errlen);
void gw_tls_gen_free(gw_gen *g);

/* A new server-side SSL for a connection accepted on an ssl listener, or NULL (logged). */
SSL *gw_tls_accept(gw_gen *g, struct gw_conn *c);
/* A TLS connection's handshake failed or was cut: logs why. For a plain HTTP request sent to the
 * TLS port, answers 400 in clear text first. */
void gw_tls_handshake_failed(struct gw_conn *c);
/* Before closing a TLS connection gracefully: sends close_notify. */
void gw_tls_close_notify(struct gw_conn *c);

/* Over TLS, when some certificate asks for client certificates: a request whose Host selects
 * another certificate entry than the handshake's SNI did, where either of them verifies clients,
 * is answered 421 (returns 1). Without it a client could pass another host's verification by
 * naming a host without it in SNI and the other in Host. */
int gw_tls_misdirected(struct gw_req *r);

/* A route that needs https (protocols: [https]) or a verified client certificate: answers the
 * request (redirect, 426, 401, 403) and returns 1; 0 when the request may go on. */
int gw_tls_route_gate(struct gw_req *r);

/* Upstream: a client SSL for service s (verification host and SNI set), or NULL. `name` is the
 * upstream host without port (an IP literal too); SNI is sent unless it is an IP address. With
 * a target (not a per-request one), its last session is offered and new ones are kept there. */
SSL *gw_tls_upstream_ssl(const gw_service *s, const char *name, gw_target *t);
struct bufferevent;
/* Before freeing an upstream TLS bufferevent: close_notify (keeps its session resumable). */
void gw_tls_upstream_close(struct bufferevent *bev);
/* Why an upstream TLS bufferevent failed, for the log ("certificate verify failed: ..."). */
void gw_tls_upstream_error(struct bufferevent *bev, char *buf, size_t n);

/* Master: the session ticket keys in shared memory (before the first fork), then every applied
 * config: its rotation period (re)arms the rotation timer, and its TLS warnings are logged. */
int gw_tls_shm_init(void);
void gw_tls_master_apply(struct event_base *base, struct lua_State *L, int compiled_idx);
void gw_tls_rotate_keys(void);

/* FFI for gw.client.get_tls (lua/gw/init.lua) and the config compiler (lua/gw/config.lua) */
int gw_ffi_tls_str(int which, int i, const char **p, size_t *n);
int gw_ffi_tls_reused(void);
int gw_tls_check_cert(const char *cert, size_t cl, const char *key, size_t kl, char *msg, size_t ml,
                      double *times, char *subject, size_t sl);
int gw_tls_check_ca(const char *pem, size_t n, char *msg, size_t ml);
int gw_tls_check_ciphers(const char *list, int tls13, char *msg, size_t ml);
#endif
