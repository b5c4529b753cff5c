/* tls.c — TLS on both sides of the proxy, with OpenSSL 3.
 *
 * Downstream: every connection accepted on an ssl listener gets an SSL from the generation's base
 * context, which has no certificate. Its ClientHello callback reads the server name (SNI), looks
 * it up (exact name, then the wildcard of its parent, then the default certificate) and switches
 * the SSL to that certificate's context, which carries the certificate(s), the client CA store
 * and the client verification mode. The switch happens before session resumption is looked at,
 * so a session made under one certificate's settings (its session id context) never resumes
 * under another's. Session tickets are encrypted with keys that the master keeps in shared memory
 * and rotates: every worker, and every generation, uses the same keys.
 *
 * Upstream: each https service has a client context (built once per generation and shared by the
 * services with the same settings): verification against a CA bundle or the system store, the
 * verification depth, a client certificate. The name checked is the upstream host.
 *
 * The config compiler checks certificates, keys, CA bundles and cipher lists through the
 * gw_tls_check_* functions (FFI), so errors carry their position in the file. */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <event2/event.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <lua.h>
#include <lauxlib.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include "gw.h"
#include "tls.h"
#include "conn.h"
#include "shm.h"
#include "worker.h"

typedef struct { char *name; int srv; } sni_slot;

struct gw_tls_gen {
    SSL_CTX *base;              /* SSL_new for every connection; the ClientHello callback switches */
    SSL_CTX **srv;              /* one per compiled.tls.certificates entry */
    int nsrv;
    int default_srv;            /* -1: none, an unknown or absent SNI is refused */
    sni_slot *sni;              /* open addressing, power-of-two size */
    unsigned sni_mask;
    SSL_CTX **up;               /* upstream client contexts (compiled.tls.upstream) */
    int nup;
    int https_port;             /* the first ssl listener's port, for redirects */
    unsigned char *verifies;    /* per srv: it asks for client certificates */
    int any_verify;             /* some certificate does: Host must agree with SNI (421) */
};

/* ---- helpers ------------------------------------------------------------------------------ */

static int no_password(char *buf, int size, int rw, void *u)
{
    (void)buf; (void)size; (void)rw; (void)u;
    return 0;   /* encrypted keys are refused instead of prompting on a terminal */
}

/* The reason of the first OpenSSL error (or `dflt`), and the error queue emptied. */
static const char *ssl_reason(const char *dflt)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : dflt;
}

static unsigned hash_name(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static int lookup_sni(const gw_tls_gen *t, const char *name)
{
    if (!t->sni) return -1;
    for (unsigned i = hash_name(name) & t->sni_mask;; i = (i + 1) & t->sni_mask) {
        if (!t->sni[i].name) return -1;
        if (strcmp(t->sni[i].name, name) == 0) return t->sni[i].srv;
    }
}

static void add_sni(gw_tls_gen *t, const char *name, int srv)
{
    unsigned i = hash_name(name) & t->sni_mask;
    while (t->sni[i].name) {
        if (strcmp(t->sni[i].name, name) == 0) return;   /* the compiler refuses duplicates */
        i = (i + 1) & t->sni_mask;
    }
    t->sni[i].name = strdup(name);
    t->sni[i].srv = srv;
}

static int is_ip(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* ---- session tickets ------------------------------------------------------------------------ */

static gw_ticket_keys *tk;
static uint64_t tk_serial;

static void make_key(gw_ticket_key *k)
{
    if (RAND_bytes(k->name, sizeof k->name) != 1 || RAND_bytes(k->aes, sizeof k->aes) != 1 ||
        RAND_bytes(k->hmac, sizeof k->hmac) != 1)
        gw_err("TLS: cannot draw random bytes for a session ticket key");
    k->serial = ++tk_serial;
}

int gw_tls_shm_init(void)
{
    void *p = mmap(NULL, sizeof *tk, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return -1;
    tk = p;
    memset(tk, 0, sizeof *tk);
    make_key(&tk->keys[0]);
    __atomic_store_n(&tk->cur, 0, __ATOMIC_RELEASE);
    return 0;
}

void gw_tls_rotate_keys(void)
{
    if (!tk) return;
    uint32_t next = (__atomic_load_n(&tk->cur, __ATOMIC_ACQUIRE) + 1) % GW_TICKET_KEYS;
    make_key(&tk->keys[next]);
    __atomic_store_n(&tk->cur, next, __ATOMIC_RELEASE);
}

static int mac_params(EVP_MAC_CTX *hctx, unsigned char *key)
{
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, 32);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params);
}

/* enc: a new ticket under the current key. Decrypting: the current key (1) or the previous one
 * (2: the client gets a fresh ticket under the current key); 0 for an unknown key name (a full
 * handshake). */
static int ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *ectx,
                     EVP_MAC_CTX *hctx, int enc)
{
    (void)s;
    if (!tk) return 0;
    uint32_t cur = __atomic_load_n(&tk->cur, __ATOMIC_ACQUIRE) % GW_TICKET_KEYS;
    gw_ticket_key k;
    if (enc) {
        k = tk->keys[cur];
        if (!k.serial) return 0;
        memcpy(name, k.name, 16);
        if (RAND_bytes(iv, 16) != 1) return -1;
        if (EVP_EncryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1) return -1;
        return mac_params(hctx, k.hmac) == 1 ? 1 : -1;
    }
    for (int back = 0; back < 2; back++) {
        k = tk->keys[(cur + GW_TICKET_KEYS - back) % GW_TICKET_KEYS];
        if (!k.serial || memcmp(k.name, name, 16) != 0) continue;
        if (EVP_DecryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1) return -1;
        if (mac_params(hctx, k.hmac) != 1) return -1;
        return back ? 2 : 1;
    }
    return 0;
}

static struct event *rot_ev;
static int rot_ms;

static void rot_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev; (void)arg;
    gw_tls_rotate_keys();
    gw_info("TLS session ticket keys rotated");
}

void gw_tls_master_apply(struct event_base *base, lua_State *L, int idx)
{
    int ms = 3600000;
    lua_getfield(L, idx, "tls");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "ticket_rotation");
        if (lua_isnumber(L, -1) && lua_tointeger(L, -1) >= 1000) ms = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        /* the compiler's warnings (an expired certificate...): the config is accepted anyway */
        lua_getfield(L, -1, "warnings");
        int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            gw_warn("%s", lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (!tk || !base) return;
    if (!rot_ev) rot_ev = event_new(base, -1, EV_PERSIST, rot_cb, NULL);
    if (rot_ev && ms != rot_ms) {
        struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
        event_del(rot_ev);
        event_add(rot_ev, &tv);
        rot_ms = ms;
    }
}

/* ---- server contexts ------------------------------------------------------------------------ */

typedef struct {
    int min_version, max_version;
    const char *ciphers, *ciphersuites;
    int tickets;
    long session_timeout;       /* seconds: what the ticket keys' rotation guarantees */
} tls_settings;

static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg)
{
    (void)s; (void)arg;
    /* HTTP/1.1 only: a client that also offers h2 gets http/1.1; one that offers neither gets no
     * ALPN answer (the handshake goes on) */
    for (unsigned i = 0; i < inlen;) {
        unsigned l = in[i];
        if (i + 1 + l > inlen) break;
        if (l == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + l;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* verify: optional — the handshake goes on whatever the certificate; SSL_get_verify_result
 * keeps the outcome for gw.client.get_tls() and require_client_cert. */
static int verify_optional(int ok, X509_STORE_CTX *x)
{
    (void)ok; (void)x;
    return 1;
}

static SSL_CTX *server_ctx(const tls_settings *st, const unsigned char *sid, unsigned sidlen,
                           char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) { snprintf(err, errlen, "SSL_CTX_new: %s", ssl_reason("?")); return NULL; }
    /* OpenSSL 3 allows TLS 1.0 and 1.1 only at security level 0 */
    if (st->min_version < TLS1_2_VERSION) SSL_CTX_set_security_level(ctx, 0);
    SSL_CTX_set_min_proto_version(ctx, st->min_version);
    SSL_CTX_set_max_proto_version(ctx, st->max_version);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                             (st->tickets ? 0 : SSL_OP_NO_TICKET));
    /* idle keep-alive connections give their read and write buffers back */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(ctx, st->ciphers) != 1) {
        snprintf(err, errlen, "gw.ssl_ciphers: %s", ssl_reason("no usable cipher"));
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_set_ciphersuites(ctx, st->ciphersuites) != 1) {
        snprintf(err, errlen, "gw.ssl_ciphersuites: %s", ssl_reason("no usable cipher suite"));
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_dh_auto(ctx, 1);
    /* no per-process session cache: tickets (stateless, the keys are shared) resume sessions */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_timeout(ctx, st->session_timeout);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    SSL_CTX_set_session_id_context(ctx, sid, sidlen);
    return ctx;
}

/* Loads a PEM chain (leaf first) and its key into ctx. 0 ok; -1 with a message. */
static int use_pair(SSL_CTX *ctx, const char *cert, size_t cl, const char *key, size_t kl,
                    char *err, size_t errlen)
{
    BIO *b = BIO_new_mem_buf(cert, (int)cl);
    X509 *x = b ? PEM_read_bio_X509_AUX(b, NULL, no_password, NULL) : NULL;
    if (!x || SSL_CTX_use_certificate(ctx, x) != 1) {
        snprintf(err, errlen, "cannot use the certificate: %s", ssl_reason("?"));
        X509_free(x);
        BIO_free(b);
        return -1;
    }
    X509_free(x);
    X509 *ca;
    while ((ca = PEM_read_bio_X509(b, NULL, no_password, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            BIO_free(b);
            snprintf(err, errlen, "cannot use the certificate chain: %s", ssl_reason("?"));
            return -1;
        }
    }
    ERR_clear_error();          /* the end of the PEM data */
    BIO_free(b);
    b = BIO_new_mem_buf(key, (int)kl);
    EVP_PKEY *pk = b ? PEM_read_bio_PrivateKey(b, NULL, no_password, NULL) : NULL;
    BIO_free(b);
    if (!pk || SSL_CTX_use_PrivateKey(ctx, pk) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "cannot use the key: %s", ssl_reason("?"));
        EVP_PKEY_free(pk);
        return -1;
    }
    EVP_PKEY_free(pk);
    return 0;
}

/* Adds every certificate of a PEM bundle to ctx's verification store (and, for a server, to the
 * CA names sent in the CertificateRequest). Returns how many, or -1. */
static int use_ca(SSL_CTX *ctx, const char *pem, size_t n, int server)
{
    BIO *b = BIO_new_mem_buf(pem, (int)n);
    if (!b) return -1;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int count = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, no_password, NULL)) != NULL) {
        X509_STORE_add_cert(store, x);
        if (server) SSL_CTX_add_client_CA(ctx, x);
        X509_free(x);
        count++;
    }
    ERR_clear_error();
    BIO_free(b);
    return count;
}

static const char *lstr(lua_State *L, int idx, const char *k, size_t *n)
{
    lua_getfield(L, idx, k);
    const char *s = lua_isstring(L, -1) ? lua_tolstring(L, -1, n) : NULL;
    lua_pop(L, 1);   /* the compiled table keeps the string alive */
    if (!s && n) *n = 0;
    return s;
}

static int lint(lua_State *L, int idx, const char *k, int dflt)
{
    lua_getfield(L, idx, k);
    int v = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

/* One certificate entry of compiled.tls.certificates (at the top of the stack). */
static SSL_CTX *cert_ctx(lua_State *L, const tls_settings *st, const char *label, char *err, size_t errlen)
{
    int ci = lua_gettop(L);
    size_t cl, kl, acl, akl, cal;
    const char *cert = lstr(L, ci, "cert", &cl), *key = lstr(L, ci, "key", &kl);
    const char *acert = lstr(L, ci, "cert_alt", &acl), *akey = lstr(L, ci, "key_alt", &akl);
    const char *ca = lstr(L, ci, "client_ca", &cal);
    const char *verify = lstr(L, ci, "verify", NULL);
    int depth = lint(L, ci, "verify_depth", 3);
    if (!cert || !key) { snprintf(err, errlen, "%s: a certificate needs cert and key", label); return NULL; }
    /* the session id context names these settings: a session resumes only under the same
     * certificate, client CAs and verification mode, in whichever worker or generation */
    unsigned char sid[32];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned sl = 0;
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, cert, cl);
    if (ca) EVP_DigestUpdate(md, ca, cal);
    if (verify) EVP_DigestUpdate(md, verify, strlen(verify));
    EVP_DigestFinal_ex(md, sid, &sl);
    EVP_MD_CTX_free(md);
    char e2[512];
    SSL_CTX *ctx = server_ctx(st, sid, sl, err, errlen);
    if (!ctx) return NULL;
    if (use_pair(ctx, cert, cl, key, kl, e2, sizeof e2) != 0) {
        snprintf(err, errlen, "%s: %s", label, e2);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (acert && akey && use_pair(ctx, acert, acl, akey, akl, e2, sizeof e2) != 0) {
        snprintf(err, errlen, "%s (cert_alt): %s", label, e2);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (ca && verify && strcmp(verify, "off") != 0) {
        if (use_ca(ctx, ca, cal, 1) <= 0) {
            snprintf(err, errlen, "%s: client_ca holds no certificate", label);
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (strcmp(verify, "required") == 0)
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        else
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_optional);
        SSL_CTX_set_verify_depth(ctx, depth);
    }
    return ctx;
}

/* The server name of a ClientHello, lowercased, without a trailing dot; 0 when there is none. */
static int hello_name(SSL *s, char *name, size_t n)
{
    const unsigned char *p;
    size_t len;
    if (!SSL_client_hello_get0_ext(s, TLSEXT_TYPE_server_name, &p, &len) || len < 5) return 0;
    size_t list = ((size_t)p[0] << 8) | p[1];
    if (list + 2 != len || p[2] != TLSEXT_NAMETYPE_host_name) return 0;
    size_t nl = ((size_t)p[3] << 8) | p[4];
    if (nl == 0 || nl + 5 > len || nl >= n) return 0;
    for (size_t i = 0; i < nl; i++) {
        unsigned char ch = p[5 + i];
        if (ch == 0) return 0;
        name[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    if (name[nl - 1] == '.') nl--;
    name[nl] = 0;
    return nl > 0;
}

/* The certificate entry for a (lowercase) server name: exact, then the wildcard of its parent
 * (*.example.com stands for exactly one label), then the default; -1 for none. */
static int select_srv(const gw_tls_gen *t, const char *name)
{
    int idx = -1;
    if (name) {
        idx = lookup_sni(t, name);
        const char *dot = idx < 0 ? strchr(name, '.') : NULL;
        if (dot && dot[1]) {
            char wild[258];
            snprintf(wild, sizeof wild, "*%s", dot);
            idx = lookup_sni(t, wild);
        }
    }
    return idx >= 0 ? idx : t->default_srv;
}

static int client_hello_cb(SSL *s, int *al, void *arg)
{
    gw_tls_gen *t = arg;
    char name[256];
    int has = hello_name(s, name, sizeof name);
    int idx = select_srv(t, has ? name : NULL);
    gw_conn *c = SSL_get_app_data(s);
    if (c) c->tls_srv = idx;
    if (idx < 0) {
        gw_notice("TLS: no certificate for server name \"%s\" and no default certificate, client %s",
                  has ? name : "(none sent)", c ? c->peer_ip : "?");
        *al = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_CLIENT_HELLO_ERROR;
    }
    SSL_CTX *ctx = t->srv[idx];
    if (SSL_set_SSL_CTX(s, ctx) != ctx) { *al = SSL_AD_INTERNAL_ERROR; return SSL_CLIENT_HELLO_ERROR; }
    /* SSL_set_SSL_CTX takes the certificates and CA store; the verification mode is per SSL */
    SSL_set_verify(s, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
    SSL_set_verify_depth(s, SSL_CTX_get_verify_depth(ctx));
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* ---- upstream contexts ---------------------------------------------------------------------- */

/* A new session (after the handshake, or a TLS 1.3 ticket after it) of a connection to a
 * target: kept on the target for the next connection, replacing the one before. */
static int up_new_session(SSL *ssl, SSL_SESSION *sess)
{
    gw_target *t = SSL_get_app_data(ssl);
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!sni) sni = "";
    if (!t || strlen(sni) >= sizeof t->tls_sess_name) return 0;
    if (t->tls_sess) SSL_SESSION_free(t->tls_sess);
    t->tls_sess = sess;             /* returning 1: the reference is ours */
    t->tls_sess_ctx = SSL_get_SSL_CTX(ssl);
    strcpy(t->tls_sess_name, sni);
    return 1;
}

static SSL_CTX *client_ctx(lua_State *L, char *err, size_t errlen)
{
    int ui = lua_gettop(L);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) { snprintf(err, errlen, "SSL_CTX_new: %s", ssl_reason("?")); return NULL; }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* sessions are kept per target (up_new_session), none in OpenSSL's cache */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, up_new_session);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    lua_getfield(L, ui, "verify");
    int verify = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (verify) {
        size_t cal;
        const char *ca = lstr(L, ui, "ca", &cal);
        if (ca) {
            if (use_ca(ctx, ca, cal, 0) <= 0) {
                snprintf(err, errlen, "ca_certificates hold no certificate");
                SSL_CTX_free(ctx);
                return NULL;
            }
        } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
            gw_warn("TLS: cannot load the system CA store: %s", ssl_reason("?"));
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int depth = lint(L, ui, "depth", -1);
        if (depth >= 0) SSL_CTX_set_verify_depth(ctx, depth);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    size_t cl, kl;
    const char *cert = lstr(L, ui, "cert", &cl), *key = lstr(L, ui, "key", &kl);
    if (cert && key) {
        char e2[512];
        if (use_pair(ctx, cert, cl, key, kl, e2, sizeof e2) != 0) {
            snprintf(err, errlen, "client_certificate: %s", e2);
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    return ctx;
}

/* For an https service compiled without TLS settings (never by config.lua): no verification. */
static SSL_CTX *fallback_client_ctx(void)
{
    static SSL_CTX *ctx;
    if (!ctx) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (ctx) {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
            SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
            SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        }
    }
    return ctx;
}

SSL *gw_tls_upstream_ssl(const gw_service *s, const char *name, gw_target *t)
{
    SSL_CTX *ctx = s->tls_ctx ? s->tls_ctx : fallback_client_ctx();
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    if (!ssl) return NULL;
    int ip = is_ip(name);
    if (!ip && name[0]) SSL_set_tlsext_host_name(ssl, name);
    if (t && s->tls_ctx) {
        /* resumed only under the client context and server name it was made with: a session
         * verified for one name, or made with a client certificate, serves no other */
        SSL_set_app_data(ssl, t);
        if (t->tls_sess && t->tls_sess_ctx == ctx && strcmp(t->tls_sess_name, ip ? "" : name) == 0)
            SSL_set_session(ssl, t->tls_sess);
    }
    if (s->tls_verify && name[0]) {
        if (ip) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
        } else {
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            SSL_set1_host(ssl, name);
        }
    }
    return ssl;
}

/* Before an upstream TLS connection is freed: close_notify. It also keeps the connection's
 * session resumable: OpenSSL marks the session of a connection freed without it as bad. */
void gw_tls_upstream_close(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (!ssl || !SSL_is_init_finished(ssl)) return;
    ERR_clear_error();
    SSL_shutdown(ssl);
    ERR_clear_error();
}

/* Why a TLS bufferevent failed: a certificate verification failure when there was one, else
 * OpenSSL's reason, else the socket error. The bufferevent's error queue is emptied. */
static void bev_error(struct bufferevent *bev, SSL *ssl, char *buf, size_t n)
{
    unsigned long e, first = 0;
    while ((e = bufferevent_get_openssl_error(bev)) != 0) if (!first) first = e;
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (ssl && vr != X509_V_OK && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER))
        snprintf(buf, n, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
    else if (first && ERR_reason_error_string(first))
        snprintf(buf, n, "%s", ERR_reason_error_string(first));
    else if (EVUTIL_SOCKET_ERROR())
        snprintf(buf, n, "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    else
        snprintf(buf, n, "connection closed during the handshake");
}

void gw_tls_upstream_error(struct bufferevent *bev, char *buf, size_t n)
{
    bev_error(bev, bufferevent_openssl_get_ssl(bev), buf, n);
}

/* ---- building a generation ------------------------------------------------------------------ */

int gw_tls_gen_build(lua_State *L, int idx, gw_gen *g, char *err, size_t errlen)
{
    int top = lua_gettop(L);
    g->tls = NULL;
    lua_getfield(L, idx, "tls");
    if (!lua_istable(L, -1)) { lua_settop(L, top); return 0; }
    int ti = lua_gettop(L);
    gw_tls_gen *t = calloc(1, sizeof *t);
    if (!t) { snprintf(err, errlen, "out of memory"); lua_settop(L, top); return -1; }
    g->tls = t;
    t->default_srv = -1;
    t->https_port = lint(L, ti, "https_port", 443);
    tls_settings st = {
        .min_version = lint(L, ti, "min_version", TLS1_2_VERSION),
        .max_version = lint(L, ti, "max_version", TLS1_3_VERSION),
        .ciphers = lstr(L, ti, "ciphers", NULL),
        .ciphersuites = lstr(L, ti, "ciphersuites", NULL),
    };
    if (!st.ciphers) st.ciphers = "ECDHE+AESGCM:ECDHE+CHACHA20";
    if (!st.ciphersuites) st.ciphersuites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
    lua_getfield(L, ti, "session_tickets");
    st.tickets = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    st.session_timeout = lint(L, ti, "ticket_rotation", 3600000) / 1000;
    if (st.session_timeout < 1) st.session_timeout = 1;

    lua_getfield(L, ti, "certificates");
    int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    t->srv = calloc(n ? n : 1, sizeof *t->srv);
    t->verifies = calloc(n ? n : 1, 1);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        char label[256];
        size_t ll;
        const char *l = lstr(L, lua_gettop(L), "label", &ll);
        snprintf(label, sizeof label, "%s", l ? l : "certificate");
        const char *v = lstr(L, lua_gettop(L), "verify", NULL);
        if (v && strcmp(v, "off") != 0) t->verifies[i - 1] = 1, t->any_verify = 1;
        t->srv[i - 1] = cert_ctx(L, &st, label, err, errlen);
        lua_pop(L, 1);
        if (!t->srv[i - 1]) goto fail;
        t->nsrv = i;
    }
    lua_pop(L, 1);
    t->default_srv = lint(L, ti, "default", 0) - 1;
    if (t->default_srv >= t->nsrv) t->default_srv = -1;

    lua_getfield(L, ti, "snis");
    int ns = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    unsigned cap = 8;
    while (cap < (unsigned)ns * 2) cap <<= 1;
    t->sni = calloc(cap, sizeof *t->sni);
    t->sni_mask = cap - 1;
    for (int i = 1; i <= ns; i++) {
        lua_rawgeti(L, -1, i);
        const char *name = lstr(L, lua_gettop(L), "name", NULL);
        int srv = lint(L, lua_gettop(L), "certificate", 0) - 1;
        if (name && srv >= 0 && srv < t->nsrv) add_sni(t, name, srv);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    if (t->nsrv > 0) {
        static const unsigned char base_sid[] = "gw";
        t->base = server_ctx(&st, base_sid, 2, err, errlen);
        if (!t->base) goto fail;
        SSL_CTX_set_client_hello_cb(t->base, client_hello_cb, t);
    }

    lua_getfield(L, ti, "upstream");
    int nu = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    t->up = calloc(nu ? nu : 1, sizeof *t->up);
    for (int i = 1; i <= nu; i++) {
        lua_rawgeti(L, -1, i);
        char e2[600];
        t->up[i - 1] = client_ctx(L, e2, sizeof e2);
        lua_pop(L, 1);
        if (!t->up[i - 1]) { snprintf(err, errlen, "upstream TLS: %s", e2); goto fail; }
        t->nup = i;
    }
    lua_pop(L, 1);

    /* each https service: its client context */
    lua_getfield(L, idx, "services");
    for (int i = 0; i < g->nservices && lua_istable(L, -1); i++) {
        lua_rawgeti(L, -1, i + 1);
        if (lua_istable(L, -1)) {
            int k = lint(L, lua_gettop(L), "tls_ctx", 0);
            if (k >= 1 && k <= t->nup) g->services[i].tls_ctx = t->up[k - 1];
            lua_getfield(L, -1, "tls_verify");
            g->services[i].tls_verify = lua_toboolean(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_settop(L, top);
    return 0;
fail:
    lua_settop(L, top);
    gw_tls_gen_free(g);
    return -1;
}

static void drop_session(gw_target *t)
{
    if (t->tls_sess) SSL_SESSION_free(t->tls_sess);
    t->tls_sess = NULL;
}

void gw_tls_gen_free(gw_gen *g)
{
    gw_tls_gen *t = g ? g->tls : NULL;
    if (!t) return;
    for (int i = 0; i < t->nsrv; i++) SSL_CTX_free(t->srv[i]);
    free(t->srv);
    free(t->verifies);
    if (t->base) SSL_CTX_free(t->base);
    for (unsigned i = 0; t->sni && i <= t->sni_mask; i++) free(t->sni[i].name);
    free(t->sni);
    for (int i = 0; i < t->nup; i++) SSL_CTX_free(t->up[i]);
    free(t->up);
    for (int i = 0; i < g->nservices; i++) {
        gw_service *s = &g->services[i];
        s->tls_ctx = NULL;
        for (int k = 0; s->upstream == &s->single && k < s->single.ntargets; k++) drop_session(&s->single.targets[k]);
    }
    for (int i = 0; i < g->nupstreams; i++)
        for (int k = 0; k < g->upstreams[i].ntargets; k++) drop_session(&g->upstreams[i].targets[k]);
    free(t);
    g->tls = NULL;
}

/* ---- connections ---------------------------------------------------------------------------- */

SSL *gw_tls_accept(gw_gen *g, gw_conn *c)
{
    c->tls_srv = -1;
    if (!g->tls || !g->tls->base) {
        static uint64_t last;
        uint64_t now = gw_now_ms();
        if (now - last > 10000) {
            gw_err("TLS: a connection on an ssl listener, but this generation has no certificate");
            last = now;
        }
        return NULL;
    }
    SSL *ssl = SSL_new(g->tls->base);
    if (ssl) SSL_set_app_data(ssl, c);
    return ssl;
}

void gw_tls_handshake_failed(gw_conn *c)
{
    if (!c->ssl || !c->io) return;
    unsigned long e, first = 0;
    while ((e = bufferevent_get_openssl_error(gw_io_bev(c->io))) != 0) if (!first) first = e;
    if (first && ERR_GET_REASON(first) == SSL_R_HTTP_REQUEST) {
        /* plain HTTP to the TLS port: say so in clear text, as the client expects */
#define PLAIN_BODY "{\"message\":\"plain HTTP request sent to the HTTPS port\"}"
        static const char msg[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
            "Content-Length: 55\r\nConnection: close\r\nServer: gw\r\n\r\n" PLAIN_BODY;
        _Static_assert(sizeof PLAIN_BODY - 1 == 55, "Content-Length");
        ssize_t w = send(c->fd, msg, sizeof msg - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
        gw_info("TLS: plain HTTP request on the TLS port from %s", c->peer_ip);
        return;
    }
    if (SSL_is_init_finished(c->ssl)) return;
    /* the alert is sent; what the client sent after its handshake (its request, in TLS 1.3)
     * is dropped unread, so that closing does not reset the connection before the client
     * reads the alert */
    char junk[4096];
    for (int i = 0; i < 16 && recv(c->fd, junk, sizeof junk, MSG_DONTWAIT) > 0; i++) {}
    shutdown(c->fd, SHUT_WR);
    long vr = SSL_get_verify_result(c->ssl);
    if (vr != X509_V_OK)
        gw_info("TLS handshake with %s failed: client certificate verify failed: %s", c->peer_ip,
                X509_verify_cert_error_string(vr));
    else if (first && ERR_reason_error_string(first))
        gw_info("TLS handshake with %s failed: %s", c->peer_ip, ERR_reason_error_string(first));
}

void gw_tls_close_notify(gw_conn *c)
{
    if (!c->ssl || !SSL_is_init_finished(c->ssl)) return;
    ERR_clear_error();
    SSL_shutdown(c->ssl);
    ERR_clear_error();
}

/* ---- routes: https only, client certificates ------------------------------------------------ */

static int host_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == '_' || ch == ':' || ch == '[' || ch == ']'))
            return 0;
    }
    return n > 0;
}

int gw_tls_misdirected(gw_req *r)
{
    gw_conn *c = r->c;
    gw_tls_gen *t = r->gen->tls;
    if (!c->ssl || !t || !t->any_verify || !r->h.host.n) return 0;
    /* the Host without its port, lowercased; an IP literal selects the default like no SNI */
    char name[256];
    size_t n = 0;
    const char *p = r->h.host.p, *e = p + r->h.host.n;
    if (*p == '[') {
        n = 0;
    } else {
        while (p < e && *p != ':' && n + 1 < sizeof name) {
            char ch = *p++;
            name[n++] = ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
        }
        if (n && name[n - 1] == '.') n--;
    }
    name[n] = 0;
    unsigned char a4[16];
    int ip = n == 0 || inet_pton(AF_INET, name, a4) == 1;
    int want = select_srv(t, ip ? NULL : name);
    int have = c->tls_srv;
    if (want == have) return 0;
    /* only where client certificates are involved: another certificate entry may verify
     * differently, and the request must not reach its hosts past that verification */
    if ((want < 0 || !t->verifies[want]) && (have < 0 || !t->verifies[have])) return 0;
    gw_req_error(r, 421, "Misdirected Request: the Host does not match the TLS server name");
    return 1;
}

int gw_tls_route_gate(gw_req *r)
{
    gw_conn *c = r->c;
    gw_route *rt = r->route;
    if (rt->https_only && !c->ssl) {
        int code = rt->https_redirect ? rt->https_redirect : 426;
        /* the host without its port ([v6] kept whole) */
        gw_str h = r->h.host;
        size_t hn = h.n;
        if (hn && h.p[0] == '[') {
            const char *end = memchr(h.p, ']', hn);
            hn = end ? (size_t)(end - h.p) + 1 : 0;
        } else {
            const char *colon = memchr(h.p, ':', hn);
            if (colon) hn = (size_t)(colon - h.p);
        }
        if (code == 426 || !host_ok(h.p, hn)) {
            r->tls_upgrade = 1;
            gw_req_error(r, 426, "Please use HTTPS protocol");
            return 1;
        }
        int port = r->gen->tls ? r->gen->tls->https_port : 443;
        size_t cap = hn + r->h.path.n + r->h.query.n + 32;
        char *loc = gw_req_alloc(r, cap);
        if (!loc) { gw_req_error(r, 500, "An unexpected error occurred"); return 1; }
        int k = snprintf(loc, cap, "https://%.*s", (int)hn, h.p);
        if (port != 443) k += snprintf(loc + k, cap - k, ":%d", port);
        memcpy(loc + k, r->h.path.p, r->h.path.n);
        k += (int)r->h.path.n;
        if (r->h.query.n) {
            loc[k++] = '?';
            memcpy(loc + k, r->h.query.p, r->h.query.n);
            k += (int)r->h.query.n;
        }
        r->nrhdrs = 0;
        gw_req_set_header(r, r->rhdrs, &r->nrhdrs, "Location", 8, loc, (size_t)k, 1);
        static const char body[] = "{\"message\":\"Please use HTTPS protocol\"}";
        gw_req_respond_local(r, code, "application/json", body, sizeof body - 1);
        return 1;
    }
    if (rt->require_client_cert) {
        X509 *x = c->ssl ? SSL_get0_peer_certificate(c->ssl) : NULL;
        if (!x) {
            gw_req_error(r, 401, "A client certificate is required");
            return 1;
        }
        long vr = SSL_get_verify_result(c->ssl);
        if (vr != X509_V_OK) {
            char msg[256];
            snprintf(msg, sizeof msg, "The client certificate was not verified: %s", X509_verify_cert_error_string(vr));
            gw_req_error(r, 403, msg);
            return 1;
        }
    }
    return 0;
}

/* ---- gw.client.get_tls ---------------------------------------------------------------------- */

static char tls_buf[4096];

static int set_buf(const char **p, size_t *n, size_t len)
{
    if (len >= sizeof tls_buf) len = sizeof tls_buf - 1;
    *p = tls_buf;
    *n = len;
    return 0;
}

static int name_str(X509_NAME *nm, const char **p, size_t *n)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b) return 1;
    X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253);
    int len = BIO_read(b, tls_buf, sizeof tls_buf - 1);
    BIO_free(b);
    return set_buf(p, n, len > 0 ? (size_t)len : 0);
}

/* The i-th subject alternative name (from 0) as "DNS:...", "IP:...", "URI:...", "email:...". */
static int san_str(X509 *x, int i, const char **p, size_t *n)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (!gens) return 1;
    int rc = 1, k = 0;
    for (int j = 0; j < sk_GENERAL_NAME_num(gens) && rc; j++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, j);
        const char *prefix = NULL;
        const ASN1_STRING *s = NULL;
        switch (g->type) {
        case GEN_DNS: prefix = "DNS:"; s = g->d.dNSName; break;
        case GEN_EMAIL: prefix = "email:"; s = g->d.rfc822Name; break;
        case GEN_URI: prefix = "URI:"; s = g->d.uniformResourceIdentifier; break;
        case GEN_IPADD: prefix = "IP:"; s = g->d.iPAddress; break;
        default: continue;
        }
        if (k++ != i) continue;
        int len = ASN1_STRING_length(s);
        const unsigned char *d = ASN1_STRING_get0_data(s);
        if (g->type == GEN_IPADD) {
            char ip[INET6_ADDRSTRLEN] = "?";
            if (len == 4) inet_ntop(AF_INET, d, ip, sizeof ip);
            else if (len == 16) inet_ntop(AF_INET6, d, ip, sizeof ip);
            rc = set_buf(p, n, (size_t)snprintf(tls_buf, sizeof tls_buf, "IP:%s", ip));
        } else {
            rc = set_buf(p, n, (size_t)snprintf(tls_buf, sizeof tls_buf, "%s%.*s", prefix, len, (const char *)d));
        }
    }
    GENERAL_NAMES_free(gens);
    return rc;
}

/* which: 0 protocol, 1 cipher, 2 sni, 3 client_verify, 4 subject, 5 issuer, 6 fingerprint
 * (sha256 hex), 7 serial (hex), 8 the i-th SAN. -1: not a TLS connection; 1: absent. */
int gw_ffi_tls_str(int which, int i, const char **p, size_t *n)
{
    if (!gw_cur || !gw_cur->c->ssl) return -1;
    SSL *ssl = gw_cur->c->ssl;
    X509 *x = SSL_get0_peer_certificate(ssl);
    const char *s;
    switch (which) {
    case 0: s = SSL_get_version(ssl); break;
    case 1: s = SSL_get_cipher_name(ssl); break;
    case 2: s = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name); break;
    case 3: {
        if (!x) { s = "NONE"; break; }
        long vr = SSL_get_verify_result(ssl);
        if (vr == X509_V_OK) { s = "SUCCESS"; break; }
        return set_buf(p, n, (size_t)snprintf(tls_buf, sizeof tls_buf, "FAILED:%s", X509_verify_cert_error_string(vr)));
    }
    case 4: return x ? name_str(X509_get_subject_name(x), p, n) : 1;
    case 5: return x ? name_str(X509_get_issuer_name(x), p, n) : 1;
    case 6: {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        if (!x || X509_digest(x, EVP_sha256(), md, &len) != 1) return 1;
        for (unsigned k = 0; k < len; k++) snprintf(tls_buf + 2 * k, 3, "%02x", md[k]);
        return set_buf(p, n, 2 * (size_t)len);
    }
    case 7: {
        if (!x) return 1;
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        char *hex = bn ? BN_bn2hex(bn) : NULL;
        BN_free(bn);
        if (!hex) return 1;
        int len = snprintf(tls_buf, sizeof tls_buf, "%s", hex);
        OPENSSL_free(hex);
        return set_buf(p, n, (size_t)len);
    }
    case 8: return x ? san_str(x, i, p, n) : 1;
    default: return 1;
    }
    if (!s) return 1;
    *p = s;
    *n = strlen(s);
    return 0;
}

int gw_ffi_tls_reused(void)
{
    if (!gw_cur || !gw_cur->c->ssl) return -1;
    return SSL_session_reused(gw_cur->c->ssl) ? 1 : 0;
}

/* ---- checks for the config compiler --------------------------------------------------------- */

static double asn1_epoch(const ASN1_TIME *t)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
    return (double)timegm(&tm);
}

/* Checks a certificate chain (PEM, leaf first) and its key. Returns the key's type (> 0); -1 for
 * a certificate problem, -2 for a key problem, -3 when they do not match. times: not before,
 * not after (Unix time); subject: the leaf's subject (RFC 2253). */
int gw_tls_check_cert(const char *cert, size_t cl, const char *key, size_t kl, char *msg, size_t ml,
                      double *times, char *subject, size_t sl)
{
    ERR_clear_error();
    msg[0] = 0;
    if (subject && sl) subject[0] = 0;
    BIO *b = BIO_new_mem_buf(cert, (int)cl);
    X509 *x = b ? PEM_read_bio_X509_AUX(b, NULL, no_password, NULL) : NULL;
    if (!x) {
        snprintf(msg, ml, "not a PEM certificate (%s)", ssl_reason("no certificate found"));
        BIO_free(b);
        return -1;
    }
    X509 *extra;
    while ((extra = PEM_read_bio_X509(b, NULL, no_password, NULL)) != NULL) X509_free(extra);
    unsigned long e = ERR_peek_last_error();
    if (e && ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
        snprintf(msg, ml, "a certificate of the chain cannot be read (%s)", ssl_reason("?"));
        X509_free(x);
        BIO_free(b);
        return -1;
    }
    ERR_clear_error();
    BIO_free(b);
    if (subject && sl) {
        BIO *sb = BIO_new(BIO_s_mem());
        if (sb) {
            X509_NAME_print_ex(sb, X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
            int len = BIO_read(sb, subject, (int)sl - 1);
            subject[len > 0 ? len : 0] = 0;
            BIO_free(sb);
        }
    }
    if (times) {
        times[0] = asn1_epoch(X509_get0_notBefore(x));
        times[1] = asn1_epoch(X509_get0_notAfter(x));
    }
    if (!key) { X509_free(x); return 1; }
    b = BIO_new_mem_buf(key, (int)kl);
    EVP_PKEY *pk = b ? PEM_read_bio_PrivateKey(b, NULL, no_password, NULL) : NULL;
    BIO_free(b);
    if (!pk) {
        const char *why = ssl_reason("no key found");
        int encrypted = strstr(key, "ENCRYPTED") != NULL;
        snprintf(msg, ml, "%s", encrypted ? "an encrypted private key is not supported (remove its passphrase)" : "not a PEM private key");
        if (!encrypted) snprintf(msg + strlen(msg), ml - strlen(msg), " (%s)", why);
        X509_free(x);
        return -2;
    }
    int type = EVP_PKEY_get_base_id(pk);
    int match = X509_check_private_key(x, pk);
    ERR_clear_error();
    EVP_PKEY_free(pk);
    X509_free(x);
    if (match != 1) { snprintf(msg, ml, "the key does not match the certificate"); return -3; }
    return type > 0 ? type : 1;
}

/* A CA bundle: how many certificates it holds, or -1 with a message. */
int gw_tls_check_ca(const char *pem, size_t n, char *msg, size_t ml)
{
    ERR_clear_error();
    msg[0] = 0;
    BIO *b = BIO_new_mem_buf(pem, (int)n);
    if (!b) { snprintf(msg, ml, "out of memory"); return -1; }
    int count = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, no_password, NULL)) != NULL) { X509_free(x); count++; }
    unsigned long e = ERR_peek_last_error();
    BIO_free(b);
    if (count == 0 || (e && ERR_GET_REASON(e) != PEM_R_NO_START_LINE)) {
        snprintf(msg, ml, "not a PEM certificate bundle (%s)", ssl_reason("no certificate found"));
        return -1;
    }
    ERR_clear_error();
    return count;
}

/* A TLS 1.2 cipher list (tls13 = 0) or TLS 1.3 cipher suites (tls13 = 1): 0 ok, -1. */
int gw_tls_check_ciphers(const char *list, int tls13, char *msg, size_t ml)
{
    static SSL_CTX *probe;
    ERR_clear_error();
    msg[0] = 0;
    if (!probe) probe = SSL_CTX_new(TLS_server_method());
    if (!probe) { snprintf(msg, ml, "cannot create an SSL context"); return -1; }
    int ok = tls13 ? SSL_CTX_set_ciphersuites(probe, list) : SSL_CTX_set_cipher_list(probe, list);
    if (ok != 1) {
        snprintf(msg, ml, "%s", tls13 ? "no usable TLS 1.3 cipher suite in the list" : "no usable cipher in the list");
        ERR_clear_error();
        return -1;
    }
    return 0;
}
