/* jwt.c — gw.jwt: JSON Web Tokens (JWS compact serialization) on libjwt 1.10.
 *
 *   gw.jwt.decode(token)                     -> header, claims | nil, err   (no verification)
 *   gw.jwt.verify(token, alg, key)           -> claims, header | nil, err
 *   gw.jwt.sign(claims, alg, key [, header]) -> token | nil, err
 *   gw.jwt.base64url_encode(s) / base64url_decode(s)
 *   gw.jwt.algorithms                        -> { "HS256", ... } (the supported names)
 *
 * libjwt 1.10 trusts the token: jwt_decode() takes the algorithm from the token's own header
 * (matched case-insensitively), so with an RSA public key handed over as the key it verifies an
 * HS256 token whose HMAC secret is that PEM text, and its base64 decoder accepts '+', '/', '='
 * and stray bytes. So everything the token says is checked here first, strictly, and libjwt only
 * computes the signature:
 *   - the token: at most GW_JWT_MAX_TOKEN bytes, exactly 3 segments, base64url characters only,
 *     canonical (no padding, unused bits zero), header and payload JSON objects;
 *   - the algorithm is the caller's (pinned): the header's "alg" must equal it byte for byte,
 *     "none" in any letter case is refused, and so are a JWE ("enc"), "crit" and a "typ" that is
 *     not JWT;
 *   - the key must be of the kind the pinned algorithm needs: an HMAC secret that is not PEM
 *     text, an RSA public key of at least 2048 bits, an EC public key on the algorithm's curve.
 * After libjwt verified, the algorithm it used is compared with the pinned one again.
 * JSON is decoded with a private lua-cjson instance that refuses NaN/Infinity/hex numbers. */
#include <string.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/ec.h>
#include "vm.h"

#define GW_JWT_MAX_TOKEN 16384          /* bytes of a token (and of the JSON given to sign) */
#define GW_JWT_MAX_JSON (GW_JWT_MAX_TOKEN / 4 * 3 + 3)

enum { K_HMAC, K_RSA, K_EC };

static const struct gw_jwt_alg {
    const char *name;
    jwt_alg_t id;
    int kind;
    int nid;                            /* K_EC: the curve the key must be on */
} algs[] = {
    { "HS256", JWT_ALG_HS256, K_HMAC, 0 },
    { "HS384", JWT_ALG_HS384, K_HMAC, 0 },
    { "HS512", JWT_ALG_HS512, K_HMAC, 0 },
    { "RS256", JWT_ALG_RS256, K_RSA, 0 },
    { "RS384", JWT_ALG_RS384, K_RSA, 0 },
    { "RS512", JWT_ALG_RS512, K_RSA, 0 },
    { "ES256", JWT_ALG_ES256, K_EC, NID_X9_62_prime256v1 },
    { "ES384", JWT_ALG_ES384, K_EC, NID_secp384r1 },
    { "ES512", JWT_ALG_ES512, K_EC, NID_secp521r1 },
};
#define NALGS (sizeof algs / sizeof algs[0])

/* upvalues of every function: the cjson decode and encode functions */
#define DECODE lua_upvalueindex(1)
#define ENCODE lua_upvalueindex(2)

static int fail(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

/* The pinned algorithm, or NULL with *err set. */
static const struct gw_jwt_alg *find_alg(const char *name, const char **err)
{
    for (size_t i = 0; i < NALGS; i++)
        if (strcmp(algs[i].name, name) == 0) return &algs[i];
    *err = strcasecmp(name, "none") == 0 ? "alg none is refused" : "unsupported algorithm";
    return NULL;
}

/* ---- base64url (RFC 4648 §5, no padding), strict ---------------------------------------- */

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Decodes n characters into out (room for n*3/4 bytes). -1 on a character outside the alphabet,
 * an impossible length (n % 4 == 1) or non-zero unused bits (a non-canonical encoding). */
static long b64url_decode(const char *s, size_t n, unsigned char *out)
{
    if (n % 4 == 1) return -1;
    unsigned acc = 0;
    int bits = 0;
    long o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)s[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) return -1;
    return o;
}

static void b64url_push(lua_State *L, const unsigned char *s, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
        luaL_addchar(&b, tab[v >> 18]);
        luaL_addchar(&b, tab[(v >> 12) & 63]);
        luaL_addchar(&b, tab[(v >> 6) & 63]);
        luaL_addchar(&b, tab[v & 63]);
    }
    if (n - i == 1) {
        unsigned v = (unsigned)s[i] << 16;
        luaL_addchar(&b, tab[v >> 18]);
        luaL_addchar(&b, tab[(v >> 12) & 63]);
    } else if (n - i == 2) {
        unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8;
        luaL_addchar(&b, tab[v >> 18]);
        luaL_addchar(&b, tab[(v >> 12) & 63]);
        luaL_addchar(&b, tab[(v >> 6) & 63]);
    }
    luaL_pushresult(&b);
}

/* ---- parsing ---------------------------------------------------------------------------- */

typedef struct {
    const char *seg[3];
    size_t len[3];
    unsigned char head[GW_JWT_MAX_JSON], body[GW_JWT_MAX_JSON];
    long head_n, body_n;
} parsed_t;

/* Splits and checks the compact form; decodes header and payload into p. NULL or an error. */
static const char *parse(const char *tok, size_t len, parsed_t *p)
{
    if (len == 0) return "empty token";
    if (len > GW_JWT_MAX_TOKEN) return "token too large";
    size_t dots = 0, start = 0;
    int b64 = 0, other = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)tok[i];
        if (c == '.') {
            if (dots < 2) { p->seg[dots] = tok + start; p->len[dots] = i - start; }
            dots++;
            start = i + 1;
        } else if (b64_val(c) < 0) {
            if (c == '+' || c == '/' || c == '=') b64 = 1;
            else other = 1;
        }
    }
    if (dots == 4) return "a JWE (5 segments) is not accepted: expected a signed JWT (3 segments)";
    if (dots != 2) return "invalid token: expected 3 segments separated by '.'";
    p->seg[2] = tok + start;
    p->len[2] = len - start;
    if (b64) return "invalid token: base64 ('+', '/' or '=') instead of base64url";
    if (other) return "invalid token: character outside the base64url alphabet";
    if (p->len[0] == 0) return "invalid token: empty header";
    if (p->len[1] == 0) return "invalid token: empty payload";
    p->head_n = b64url_decode(p->seg[0], p->len[0], p->head);
    if (p->head_n < 0) return "invalid token: header is not canonical base64url";
    p->body_n = b64url_decode(p->seg[1], p->len[1], p->body);
    if (p->body_n < 0) return "invalid token: payload is not canonical base64url";
    return NULL;
}

static int is_json_object(const unsigned char *s, long n)
{
    if (memchr(s, 0, (size_t)n)) return 0;
    long i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
    return i < n && s[i] == '{';
}

/* Pushes the decoded JSON object, or returns an error (nothing pushed). */
static const char *push_object(lua_State *L, const unsigned char *s, long n, const char *what)
{
    if (!is_json_object(s, n))
        return strcmp(what, "header") == 0 ? "invalid token: header is not a JSON object"
                                           : "invalid token: payload is not a JSON object";
    lua_pushvalue(L, DECODE);
    lua_pushlstring(L, (const char *)s, (size_t)n);
    lua_call(L, 1, 1);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return strcmp(what, "header") == 0 ? "invalid token: header is not valid JSON"
                                           : "invalid token: payload is not valid JSON";
    }
    return NULL;
}

/* The string field k of the table at idx: its value, NULL when absent; *bad when present but
 * not a string. */
static const char *str_field(lua_State *L, int idx, const char *k, int *bad)
{
    lua_getfield(L, idx, k);
    const char *v = NULL;
    *bad = 0;
    if (lua_type(L, -1) == LUA_TSTRING) v = lua_tostring(L, -1);
    else if (!lua_isnil(L, -1)) *bad = 1;
    lua_pop(L, 1);              /* the string stays alive: it is held by the table */
    return v;
}

static int has_field(lua_State *L, int idx, const char *k)
{
    lua_getfield(L, idx, k);
    int r = !lua_isnil(L, -1);
    lua_pop(L, 1);
    return r;
}

/* ---- keys -------------------------------------------------------------------------------- */

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf; (void)size; (void)rwflag; (void)u;
    return -1;                  /* never prompt on the terminal: encrypted keys are refused */
}

/* Checks that key fits alg. pub: a public key (verify) or a private key (sign). */
static const char *check_key(const struct gw_jwt_alg *a, const char *key, size_t klen, int pub)
{
    if (klen == 0) return "empty key";
    if (klen > 65536) return "key too large";
    if (a->kind == K_HMAC) {
        /* an RS/ES key handed over as an HMAC secret: the RS256 -> HS256 confusion */
        if (memmem(key, klen, "-----BEGIN", 10))
            return "invalid key: a PEM key is not an HMAC secret";
        return NULL;
    }
    BIO *bio = BIO_new_mem_buf(key, (int)klen);
    if (!bio) return "out of memory";
    EVP_PKEY *pk = pub ? PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL)
                       : PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    const char *err = NULL;
    if (!pk) {
        err = pub ? "invalid key: expected a PEM public key" : "invalid key: expected an unencrypted PEM private key";
    } else if (a->kind == K_RSA) {
        if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) err = "invalid key: the algorithm needs an RSA key";
        else if (EVP_PKEY_get_bits(pk) < 2048) err = "invalid key: RSA keys must have at least 2048 bits";
    } else {
        char group[64];
        size_t glen = 0;
        if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC) err = "invalid key: the algorithm needs an EC key";
        else if (!EVP_PKEY_get_group_name(pk, group, sizeof group, &glen)
                 || (OBJ_sn2nid(group) != a->nid && EC_curve_nist2nid(group) != a->nid))
            err = a->nid == NID_secp384r1 ? "invalid key: ES384 needs a P-384 key"
                : a->nid == NID_secp521r1 ? "invalid key: ES512 needs a P-521 key"
                                          : "invalid key: ES256 needs a P-256 key";
    }
    EVP_PKEY_free(pk);
    ERR_clear_error();
    return err;
}

/* ---- gw.jwt.decode ----------------------------------------------------------------------- */

static int l_decode(lua_State *L)
{
    size_t len;
    if (lua_type(L, 1) != LUA_TSTRING) return fail(L, "token must be a string");
    const char *tok = lua_tolstring(L, 1, &len);
    parsed_t *p = lua_newuserdata(L, sizeof *p);     /* collected with the call, even on error */
    const char *err = parse(tok, len, p);
    if (err) return fail(L, err);
    if ((err = push_object(L, p->head, p->head_n, "header"))) return fail(L, err);
    if ((err = push_object(L, p->body, p->body_n, "payload"))) return fail(L, err);
    return 2;
}

/* ---- gw.jwt.verify ----------------------------------------------------------------------- */

static const char *check_header(lua_State *L, int h, const struct gw_jwt_alg *a)
{
    int bad;
    const char *alg = str_field(L, h, "alg", &bad);
    if (!alg) return "invalid token: header has no \"alg\" string";
    if (strcasecmp(alg, "none") == 0) return "alg none is refused";
    if (strcmp(alg, a->name) != 0) return "algorithm mismatch: the token's alg is not the expected one";
    if (has_field(L, h, "enc")) return "a JWE is not accepted: expected a signed JWT";
    if (has_field(L, h, "crit")) return "invalid token: \"crit\" header parameters are not supported";
    const char *typ = str_field(L, h, "typ", &bad);
    if (bad || (typ && strcasecmp(typ, "JWT") != 0)) return "invalid token: \"typ\" is not JWT";
    return NULL;
}

static int l_verify(lua_State *L)
{
    size_t len, klen;
    const char *alg = luaL_checkstring(L, 2);
    const char *key = luaL_checklstring(L, 3, &klen);
    if (lua_type(L, 1) != LUA_TSTRING) return fail(L, "token must be a string");
    const char *tok = lua_tolstring(L, 1, &len);
    lua_settop(L, 3);

    const char *err = NULL;
    const struct gw_jwt_alg *a = find_alg(alg, &err);
    if (!a) return fail(L, err);
    parsed_t *p = lua_newuserdata(L, sizeof *p);     /* 4 */
    if ((err = parse(tok, len, p))) return fail(L, err);
    if ((err = push_object(L, p->head, p->head_n, "header"))) return fail(L, err);   /* 5 */
    if ((err = check_header(L, 5, a))) return fail(L, err);
    if (p->len[2] == 0) return fail(L, "invalid token: empty signature");
    unsigned char *sig = p->head;                    /* the header's bytes are not needed any more */
    if (b64url_decode(p->seg[2], p->len[2], sig) < 0) return fail(L, "invalid token: signature is not canonical base64url");
    if ((err = check_key(a, key, klen, 1))) return fail(L, err);

    /* tok is NUL-terminated (a Lua string) and holds no NUL: parse() allowed base64url and '.' only */
    jwt_t *j = NULL;
    int rc = jwt_decode(&j, tok, (const unsigned char *)key, (int)klen);
    int ok = rc == 0 && j && jwt_get_alg(j) == a->id;
    if (ok) {
        const char *used = jwt_get_header(j, "alg");
        ok = used && strcmp(used, a->name) == 0;
    }
    if (j) jwt_free(j);
    ERR_clear_error();
    if (!ok) return fail(L, "invalid signature");

    if ((err = push_object(L, p->body, p->body_n, "payload"))) return fail(L, err);   /* 6 */
    lua_pushvalue(L, 5);
    return 2;
}

/* ---- gw.jwt.sign ------------------------------------------------------------------------- */

/* JSON text of the object at idx (a table, or a string holding JSON); NULL and *err otherwise. */
static const char *json_arg(lua_State *L, int idx, const char *what, const char **err)
{
    if (lua_istable(L, idx)) {
        lua_pushvalue(L, ENCODE);
        lua_pushvalue(L, idx);
        lua_call(L, 1, 1);
        lua_replace(L, idx);
    }
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (!s || lua_type(L, idx) != LUA_TSTRING) {
        *err = strcmp(what, "claims") == 0 ? "claims cannot be encoded as JSON" : "header cannot be encoded as JSON";
        return NULL;
    }
    if (n > GW_JWT_MAX_TOKEN / 2 || !is_json_object((const unsigned char *)s, (long)n)) {
        *err = strcmp(what, "claims") == 0 ? "claims must be a JSON object (at most 8 KiB)"
                                           : "header must be a JSON object (at most 8 KiB)";
        return NULL;
    }
    return s;
}

static int l_sign(lua_State *L)
{
    size_t klen;
    const char *alg = luaL_checkstring(L, 2);
    const char *key = luaL_checklstring(L, 3, &klen);
    if (!lua_istable(L, 1) && lua_type(L, 1) != LUA_TSTRING) luaL_typerror(L, 1, "table or string");
    if (!lua_isnoneornil(L, 4) && !lua_istable(L, 4)) luaL_typerror(L, 4, "table");
    lua_settop(L, 4);

    const char *err = NULL;
    const struct gw_jwt_alg *a = find_alg(alg, &err);
    if (!a) return fail(L, err);
    const char *claims = json_arg(L, 1, "claims", &err);
    if (!claims) return fail(L, err);
    const char *header = NULL;
    if (lua_istable(L, 4)) {
        lua_getfield(L, 4, "alg");
        int has_alg = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (has_alg) return fail(L, "header must not set alg: it is the alg argument");
        if (!(header = json_arg(L, 4, "header", &err))) return fail(L, err);
    }
    if ((err = check_key(a, key, klen, 0))) return fail(L, err);

    jwt_t *j = NULL;
    char *out = NULL;
    if (jwt_new(&j) != 0) return fail(L, "out of memory");
    if (jwt_set_alg(j, a->id, (const unsigned char *)key, (int)klen) != 0) err = "invalid key";
    else if (jwt_add_grants_json(j, claims) != 0) err = "claims must be a JSON object without duplicate keys";
    else if (header && jwt_add_headers_json(j, header) != 0) err = "header must be a JSON object without duplicate keys";
    else if (!(out = jwt_encode_str(j))) err = "signing failed";
    jwt_free(j);
    ERR_clear_error();
    if (err) return fail(L, err);
    lua_pushstring(L, out);
    free(out);
    return 1;
}

/* ---- base64url --------------------------------------------------------------------------- */

static int l_b64_encode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    b64url_push(L, (const unsigned char *)s, n);
    return 1;
}

static int l_b64_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char *out = lua_newuserdata(L, n / 4 * 3 + 3);
    long o = b64url_decode(s, n, out);
    if (o < 0) return fail(L, "invalid base64url");
    lua_pushlstring(L, (const char *)out, (size_t)o);
    return 1;
}

int luaopen_gw_jwt(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "decode", l_decode }, { "verify", l_verify }, { "sign", l_sign },
        { "base64url_encode", l_b64_encode }, { "base64url_decode", l_b64_decode },
        { NULL, NULL }
    };
    /* a private cjson instance: strict numbers, bounded depth */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson.safe");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "new");
    lua_call(L, 0, 1);
    lua_remove(L, -2);
    lua_getfield(L, -1, "decode_invalid_numbers");
    lua_pushboolean(L, 0);
    lua_call(L, 1, 0);
    lua_getfield(L, -1, "decode_max_depth");
    lua_pushinteger(L, 64);
    lua_call(L, 1, 0);
    lua_getfield(L, -1, "encode_invalid_numbers");
    lua_pushboolean(L, 0);
    lua_call(L, 1, 0);
    int cj = lua_gettop(L);

    lua_newtable(L);
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_getfield(L, cj, "decode");
        lua_getfield(L, cj, "encode");
        lua_pushcclosure(L, f->func, 2);
        lua_setfield(L, -2, f->name);
    }
    lua_createtable(L, (int)NALGS, 0);
    for (size_t i = 0; i < NALGS; i++) {
        lua_pushstring(L, algs[i].name);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "algorithms");
    lua_pushinteger(L, GW_JWT_MAX_TOKEN);
    lua_setfield(L, -2, "MAX_TOKEN");
    return 1;
}
