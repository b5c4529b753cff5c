/* yaml.c — the gw.yaml Lua module: YAML text -> Lua values (plus a marks table giving the
 * line:col of every node by PATH, so config errors can point into the file) and Lua values ->
 * YAML text (yaml.dump, for GET /config). Parsing uses libyaml's event API and builds the Lua
 * values directly; no intermediate document tree.
 *
 *   yaml.load(text [, filename]) -> value, marks | nil, "FILE:LINE:COL: message"
 *   yaml.dump(value)             -> text | nil, message
 *   yaml.null                    -> lightuserdata NULL (the same value as cjson.null)
 *
 * PATH syntax: keys joined by ".", sequence items as "[i]" (0-based); the root is "".
 * Scalars follow the YAML 1.2 core schema (so `off`/`yes` stay strings). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>
#include "vm.h"

#define YAML_MAX_DEPTH 256
/* Aliases share Lua tables, but everything downstream (validation, deep copies, dumps) walks
 * the expanded tree: cap its size so a "billion laughs" document fails here instead. */
#define YAML_MAX_NODES 1000000

#define PARSER_MT "gw.yaml.parser"
#define BUF_MT "gw.yaml.buf"

/* ------------------------------------------------------------------------------------------ */
/* Loading                                                                                     */

/* Lives in a userdata so that a Lua error (out of memory) in the middle of a parse still frees
 * libyaml's state through __gc. */
typedef struct {
    yaml_parser_t parser;
    yaml_event_t event;
    int parser_ok;
    int have_event;
} yparser;

enum { K_SCALAR = 0, K_SEQ = 1, K_MAP = 2 };

typedef struct {
    lua_State *L;
    yparser *p;
    const char *file;
    const char *text;
    size_t len;
    int marks;       /* stack index of the marks table */
    int anchors;     /* stack index: anchor name -> value */
    int kinds;       /* stack index: anchor name -> K_* */
    int sizes;       /* stack index: anchor name -> expanded node count */
    long nodes;      /* expanded node count so far */
    char err[1024];
} loader;

static int parser_gc(lua_State *L)
{
    yparser *p = luaL_checkudata(L, 1, PARSER_MT);
    if (p->have_event) { yaml_event_delete(&p->event); p->have_event = 0; }
    if (p->parser_ok) { yaml_parser_delete(&p->parser); p->parser_ok = 0; }
    return 0;
}

static int fail(loader *c, const yaml_mark_t *m, const char *fmt, ...)
{
    int n = snprintf(c->err, sizeof c->err, "%s:%d:%d: ", c->file,
                     m ? (int)m->line + 1 : 1, m ? (int)m->column + 1 : 1);
    if (n < 0 || n >= (int)sizeof c->err) n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + n, sizeof c->err - n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Reader errors (bad UTF-8, ...) only carry a byte offset: turn it into line:col. */
static void offset_mark(loader *c, size_t off, yaml_mark_t *m)
{
    memset(m, 0, sizeof *m);
    for (size_t i = 0; i < off && i < c->len; i++) {
        if (c->text[i] == '\n') { m->line++; m->column = 0; }
        else m->column++;
    }
}

static int parser_fail(loader *c)
{
    yaml_parser_t *ps = &c->p->parser;
    const char *problem = ps->problem ? ps->problem : "invalid YAML";
    yaml_mark_t m = ps->problem_mark;
    if (ps->error == YAML_MEMORY_ERROR) return fail(c, NULL, "out of memory");
    if (ps->error == YAML_READER_ERROR) {
        offset_mark(c, ps->problem_offset, &m);
        return fail(c, &m, "%s", problem);
    }
    if (ps->context)
        return fail(c, &m, "%s (%s that started at line %d, column %d)", problem, ps->context,
                    (int)ps->context_mark.line + 1, (int)ps->context_mark.column + 1);
    return fail(c, &m, "%s", problem);
}

static int next_event(loader *c)
{
    yparser *p = c->p;
    if (p->have_event) { yaml_event_delete(&p->event); p->have_event = 0; }
    if (!yaml_parser_parse(&p->parser, &p->event)) return parser_fail(c);
    p->have_event = 1;
    return 0;
}

static void set_mark(loader *c, const yaml_mark_t *m)
{
    /* path is on the stack top */
    lua_State *L = c->L;
    lua_pushvalue(L, -1);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)m->line + 1);
    lua_setfield(L, -2, "line");
    lua_pushinteger(L, (lua_Integer)m->column + 1);
    lua_setfield(L, -2, "col");
    lua_rawset(L, c->marks);
}

static int is_null_word(const char *s, size_t n)
{
    return n == 0 || (n == 1 && s[0] == '~') ||
           (n == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

static int bool_word(const char *s, size_t n)
{
    if (n == 4 && (!memcmp(s, "true", 4) || !memcmp(s, "True", 4) || !memcmp(s, "TRUE", 4))) return 1;
    if (n == 5 && (!memcmp(s, "false", 5) || !memcmp(s, "False", 5) || !memcmp(s, "FALSE", 5))) return 0;
    return -1;
}

static int all_digits(const char *s, size_t n, int base)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        int ok = base == 16 ? ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F'))
               : base == 8 ? (ch >= '0' && ch <= '7') : (ch >= '0' && ch <= '9');
        if (!ok) return 0;
    }
    return 1;
}

/* YAML 1.2 core schema numbers. Returns 1 and sets *out when s is a number. */
static int number_word(const char *s, size_t n, double *out)
{
    char tmp[128];
    if (n == 0 || n >= sizeof tmp) return 0;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    const char *d = tmp;
    int neg = 0;
    if (*d == '+' || *d == '-') { neg = *d == '-'; d++; }
    size_t dn = strlen(d);
    if (dn == 4 && (!strcmp(d, ".inf") || !strcmp(d, ".Inf") || !strcmp(d, ".INF"))) {
        *out = neg ? -HUGE_VAL : HUGE_VAL;
        return 1;
    }
    if (d == tmp && (!strcmp(d, ".nan") || !strcmp(d, ".NaN") || !strcmp(d, ".NAN"))) {
        *out = NAN;
        return 1;
    }
    if (d == tmp && dn > 2 && d[0] == '0' && (d[1] == 'x' || d[1] == 'o')) {
        int base = d[1] == 'x' ? 16 : 8;
        if (!all_digits(d + 2, dn - 2, base)) return 0;
        errno = 0;
        unsigned long long v = strtoull(d + 2, NULL, base);
        *out = errno == ERANGE ? HUGE_VAL : (double)v;
        return 1;
    }
    if (all_digits(d, dn, 10)) {
        errno = 0;
        long long v = strtoll(tmp, NULL, 10);
        *out = errno == ERANGE ? strtod(tmp, NULL) : (double)v;
        return 1;
    }
    /* float: (\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
    const char *q = d;
    size_t intd = 0, fracd = 0;
    while (*q >= '0' && *q <= '9') { q++; intd++; }
    if (*q == '.') { q++; while (*q >= '0' && *q <= '9') { q++; fracd++; } }
    if (intd == 0 && fracd == 0) return 0;
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q == '+' || *q == '-') q++;
        if (!(*q >= '0' && *q <= '9')) return 0;
        while (*q >= '0' && *q <= '9') q++;
    }
    if (*q) return 0;
    *out = strtod(tmp, NULL);
    return 1;
}

static int tag_is(const yaml_char_t *tag, const char *name)
{
    static const char prefix[] = "tag:yaml.org,2002:";
    if (!tag) return 0;
    if (strncmp((const char *)tag, prefix, sizeof prefix - 1)) return 0;
    return strcmp((const char *)tag + sizeof prefix - 1, name) == 0;
}

/* Pushes the value of the scalar event; a null pushes yaml.null (lightuserdata NULL). */
static int push_scalar(loader *c)
{
    lua_State *L = c->L;
    yaml_event_t *e = &c->p->event;
    const char *s = (const char *)e->data.scalar.value;
    size_t n = e->data.scalar.length;
    const yaml_char_t *tag = e->data.scalar.tag;
    int plain = e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    double num;
    int b;

    if (tag && strcmp((const char *)tag, "!") != 0) {
        if (tag_is(tag, "str")) { lua_pushlstring(L, s, n); return 0; }
        if (tag_is(tag, "null")) { lua_pushlightuserdata(L, NULL); return 0; }
        if (tag_is(tag, "bool")) {
            if ((b = bool_word(s, n)) < 0) return fail(c, &e->start_mark, "invalid !!bool value");
            lua_pushboolean(L, b);
            return 0;
        }
        if (tag_is(tag, "int") || tag_is(tag, "float")) {
            if (!number_word(s, n, &num)) return fail(c, &e->start_mark, "invalid number");
            lua_pushnumber(L, num);
            return 0;
        }
        /* unknown tags: fall through to the untagged rules */
    } else if (tag || !plain) {
        lua_pushlstring(L, s, n);    /* quoted, block or "!"-tagged: always a string */
        return 0;
    }
    if (!plain) { lua_pushlstring(L, s, n); return 0; }
    if (is_null_word(s, n)) { lua_pushlightuserdata(L, NULL); return 0; }
    if ((b = bool_word(s, n)) >= 0) { lua_pushboolean(L, b); return 0; }
    if (number_word(s, n, &num)) { lua_pushnumber(L, num); return 0; }
    lua_pushlstring(L, s, n);
    return 0;
}

static int is_null(lua_State *L, int idx)
{
    return lua_islightuserdata(L, idx) && lua_touserdata(L, idx) == NULL;
}

static int parse_node(loader *c, int depth, int *kind, long *size);

/* Child path: parent path on the stack top; pushes the new path. */
static void push_key_path(lua_State *L, int parent, int key)
{
    size_t pl;
    const char *pp = lua_tolstring(L, parent, &pl);
    lua_pushvalue(L, key);
    const char *ks = lua_tostring(L, -1);   /* converts the copy only */
    if (!ks) ks = lua_toboolean(L, key) ? "true" : "false";
    if (pl == 0) lua_pushstring(L, ks);
    else lua_pushfstring(L, "%s.%s", pp, ks);
    lua_remove(L, -2);
}

static int count_node(loader *c, long n, const yaml_mark_t *m)
{
    c->nodes += n;
    if (c->nodes > YAML_MAX_NODES)
        return fail(c, m, "document too large (more than %d nodes after alias expansion)", YAML_MAX_NODES);
    return 0;
}

/* Stores the finished node (stack top) under its anchor, if it has one. */
static void store_anchor(loader *c, const char *anchor, int kind, long size)
{
    lua_State *L = c->L;
    if (!anchor) return;
    lua_pushstring(L, (const char *)anchor);
    lua_pushvalue(L, -2);
    lua_rawset(L, c->anchors);
    lua_pushstring(L, (const char *)anchor);
    lua_pushinteger(L, kind);
    lua_rawset(L, c->kinds);
    lua_pushstring(L, (const char *)anchor);
    lua_pushnumber(L, (lua_Number)size);
    lua_rawset(L, c->sizes);
}

/* Copies every key of the mapping on the stack top into table t that the mapping does not
 * override: explicit keys win over merged ones, earlier merges over later ones. */
static void merge_into(loader *c, int t, int seen)
{
    lua_State *L = c->L;
    int src = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, src)) {
        lua_pushvalue(L, -2);
        lua_rawget(L, seen);
        int explicit_key = !lua_isnil(L, -1);
        lua_pop(L, 1);
        lua_pushvalue(L, -2);
        lua_rawget(L, t);
        int present = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (!explicit_key && !present) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, t);
        } else {
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* The value of a "<<" key: a mapping, an alias of one, or a sequence of those. The current
 * event is the value's first event; the path of the mapping is at stack top. */
static int parse_merge(loader *c, int depth, int t, int seen, long *size)
{
    lua_State *L = c->L;
    yaml_event_t *e = &c->p->event;
    int kind;
    long sz;
    yaml_mark_t m = e->start_mark;
    if (e->type == YAML_SEQUENCE_START_EVENT) {
        if (depth + 1 > YAML_MAX_DEPTH) return fail(c, &m, "nesting too deep (max %d levels)", YAML_MAX_DEPTH);
        for (;;) {
            if (next_event(c)) return -1;
            if (c->p->event.type == YAML_SEQUENCE_END_EVENT) break;
            m = c->p->event.start_mark;
            lua_pushvalue(L, -1);
            if (parse_node(c, depth + 2, &kind, &sz)) return -1;
            lua_remove(L, -2);
            if (kind != K_MAP) return fail(c, &m, "merge key '<<' expects a mapping or a sequence of mappings");
            *size += sz;
            merge_into(c, t, seen);
        }
        return 0;
    }
    lua_pushvalue(L, -1);
    if (parse_node(c, depth + 1, &kind, &sz)) return -1;
    lua_remove(L, -2);
    if (kind != K_MAP) return fail(c, &m, "merge key '<<' expects a mapping or a sequence of mappings");
    *size += sz;
    merge_into(c, t, seen);
    return 0;
}

static int parse_mapping(loader *c, int depth, long *size)
{
    lua_State *L = c->L;
    int path = lua_gettop(L);
    const yaml_char_t *anchor = c->p->event.data.mapping_start.anchor;
    if (anchor) lua_pushstring(L, (const char *)anchor);
    else lua_pushnil(L);
    int aidx = lua_gettop(L);     /* the event is gone by the end: keep the name on the stack */
    lua_newtable(L);
    int t = lua_gettop(L);
    lua_newtable(L);                    /* seen: key -> line of its first occurrence */
    int seen = lua_gettop(L);
    int rc = -1;
    for (;;) {
        if (next_event(c)) goto out;
        yaml_event_t *e = &c->p->event;
        if (e->type == YAML_MAPPING_END_EVENT) break;
        yaml_mark_t km = e->start_mark;
        if (e->type == YAML_ALIAS_EVENT) { fail(c, &km, "aliases as mapping keys are not supported"); goto out; }
        if (e->type != YAML_SCALAR_EVENT) { fail(c, &km, "complex mapping keys are not supported"); goto out; }
        int merge = e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !e->data.scalar.tag &&
                    e->data.scalar.length == 2 && !memcmp(e->data.scalar.value, "<<", 2);
        if (merge) {
            if (next_event(c)) goto out;
            /* merged nodes get marks of their own under "PATH.<<", never overwriting PATH's */
            if (lua_objlen(L, path) == 0) lua_pushliteral(L, "<<");
            else lua_pushfstring(L, "%s.<<", lua_tostring(L, path));
            if (parse_merge(c, depth, t, seen, size)) goto out;
            lua_pop(L, 1);
            continue;
        }
        if (push_scalar(c)) goto out;
        int key = lua_gettop(L);
        if (is_null(L, key)) { fail(c, &km, "null mapping keys are not supported"); goto out; }
        if (lua_type(L, key) == LUA_TNUMBER && isnan(lua_tonumber(L, key))) {
            fail(c, &km, "NaN mapping keys are not supported");
            goto out;
        }
        lua_pushvalue(L, key);
        lua_rawget(L, seen);
        if (!lua_isnil(L, -1)) {
            int first = (int)lua_tointeger(L, -1);
            lua_pushvalue(L, key);
            fail(c, &km, "duplicate key '%s' (first defined at line %d)",
                 lua_isboolean(L, -1) ? (lua_toboolean(L, -1) ? "true" : "false") : lua_tostring(L, -1), first);
            goto out;
        }
        lua_pop(L, 1);
        lua_pushvalue(L, key);
        lua_pushinteger(L, (lua_Integer)km.line + 1);
        lua_rawset(L, seen);

        if (next_event(c)) goto out;
        push_key_path(L, path, key);
        int kind;
        long sz;
        if (parse_node(c, depth + 1, &kind, &sz)) goto out;
        *size += sz;
        lua_remove(L, -2);              /* the child path */
        if (is_null(L, -1)) lua_pop(L, 2);   /* null values leave the key out */
        else lua_rawset(L, t);
    }
    lua_pop(L, 1);                      /* seen */
    store_anchor(c, lua_tostring(L, aidx), K_MAP, *size);
    lua_remove(L, aidx);
    rc = 0;
out:
    return rc;
}

static int parse_sequence(loader *c, int depth, long *size)
{
    lua_State *L = c->L;
    int path = lua_gettop(L);
    const yaml_char_t *anchor = c->p->event.data.sequence_start.anchor;
    if (anchor) lua_pushstring(L, (const char *)anchor);
    else lua_pushnil(L);
    int aidx = lua_gettop(L);     /* the event is gone by the end: keep the name on the stack */
    lua_newtable(L);
    int t = lua_gettop(L);
    int rc = -1, i = 0;
    for (;;) {
        if (next_event(c)) goto out;
        if (c->p->event.type == YAML_SEQUENCE_END_EVENT) break;
        lua_pushfstring(L, "%s[%d]", lua_tostring(L, path), i);
        int kind;
        long sz;
        if (parse_node(c, depth + 1, &kind, &sz)) goto out;
        *size += sz;
        lua_remove(L, -2);
        lua_rawseti(L, t, ++i);         /* null items stay as yaml.null */
    }
    store_anchor(c, lua_tostring(L, aidx), K_SEQ, *size);
    lua_remove(L, aidx);
    rc = 0;
out:
    return rc;
}

/* Parses the node whose first event is current; its PATH is on the stack top. Pushes the value
 * (yaml.null for nulls). */
static int parse_node(loader *c, int depth, int *kind, long *size)
{
    lua_State *L = c->L;
    yaml_event_t *e = &c->p->event;
    yaml_mark_t m = e->start_mark;
    *kind = K_SCALAR;
    *size = 1;
    if (depth > YAML_MAX_DEPTH) return fail(c, &m, "nesting too deep (max %d levels)", YAML_MAX_DEPTH);
    luaL_checkstack(L, 16, "yaml nesting");
    set_mark(c, &m);
    switch (e->type) {
    case YAML_SCALAR_EVENT:
        if (push_scalar(c)) return -1;
        if (count_node(c, 1, &m)) return -1;
        store_anchor(c, (const char *)e->data.scalar.anchor, K_SCALAR, 1);
        return 0;
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)e->data.alias.anchor;
        lua_pushstring(L, name);
        lua_rawget(L, c->sizes);
        if (lua_isnil(L, -1)) return fail(c, &m, "unknown anchor '%s'", name);
        *size = (long)lua_tonumber(L, -1);
        lua_pop(L, 1);
        lua_pushstring(L, name);
        lua_rawget(L, c->kinds);
        *kind = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (count_node(c, *size, &m)) return -1;
        lua_pushstring(L, name);
        lua_rawget(L, c->anchors);
        if (lua_isnil(L, -1)) { lua_pop(L, 1); lua_pushlightuserdata(L, NULL); }
        return 0;
    }
    case YAML_SEQUENCE_START_EVENT:
        *kind = K_SEQ;
        if (count_node(c, 1, &m)) return -1;
        return parse_sequence(c, depth, size);
    case YAML_MAPPING_START_EVENT:
        *kind = K_MAP;
        if (count_node(c, 1, &m)) return -1;
        return parse_mapping(c, depth, size);
    default:
        return fail(c, &m, "unexpected YAML event");
    }
}

static int l_load(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    const char *file = luaL_optstring(L, 2, "<string>");
    lua_settop(L, 2);

    yparser *p = lua_newuserdata(L, sizeof *p);
    memset(p, 0, sizeof *p);
    luaL_getmetatable(L, PARSER_MT);
    lua_setmetatable(L, -2);

    loader c;
    memset(&c, 0, sizeof c);
    c.L = L;
    c.p = p;
    c.file = file;
    c.text = text;
    c.len = len;
    lua_newtable(L); c.marks = lua_gettop(L);
    lua_newtable(L); c.anchors = lua_gettop(L);
    lua_newtable(L); c.kinds = lua_gettop(L);
    lua_newtable(L); c.sizes = lua_gettop(L);

    if (!yaml_parser_initialize(&p->parser)) return luaL_error(L, "yaml: cannot initialize parser");
    p->parser_ok = 1;
    yaml_parser_set_input_string(&p->parser, (const unsigned char *)text, len);

    int rc = next_event(&c);                        /* STREAM_START */
    if (!rc) rc = next_event(&c);                   /* DOCUMENT_START or STREAM_END */
    if (!rc) {
        if (p->event.type == YAML_STREAM_END_EVENT) {
            lua_pushliteral(L, "");
            set_mark(&c, &p->event.start_mark);
            lua_pop(L, 1);
            lua_pushlightuserdata(L, NULL);         /* an empty document is a null */
        } else {
            rc = next_event(&c);                    /* the root node */
            if (!rc) {
                int kind;
                long sz;
                lua_pushliteral(L, "");
                rc = parse_node(&c, 1, &kind, &sz);
                if (!rc) {
                    lua_remove(L, -2);
                    rc = next_event(&c);            /* DOCUMENT_END */
                }
                if (!rc) rc = next_event(&c);       /* STREAM_END or another document */
                if (!rc && p->event.type != YAML_STREAM_END_EVENT)
                    rc = fail(&c, &p->event.start_mark, "multiple documents are not supported");
            }
        }
    }
    /* free libyaml's buffers now rather than at the next GC cycle */
    if (p->have_event) { yaml_event_delete(&p->event); p->have_event = 0; }
    yaml_parser_delete(&p->parser);
    p->parser_ok = 0;
    if (rc) {
        lua_pushnil(L);
        lua_pushstring(L, c.err);
        return 2;
    }
    lua_pushvalue(L, c.marks);
    return 2;
}

/* ------------------------------------------------------------------------------------------ */
/* Dumping                                                                                     */

typedef struct {
    char *data;
    size_t len, cap;
} ybuf;

typedef struct {
    lua_State *L;
    ybuf *b;
    int visiting;     /* stack index: tables on the current path (cycle detection) */
    char err[256];
} dumper;

static int buf_gc(lua_State *L)
{
    ybuf *b = luaL_checkudata(L, 1, BUF_MT);
    free(b->data);
    b->data = NULL;
    return 0;
}

static int put(dumper *d, const char *s, size_t n)
{
    ybuf *b = d->b;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *nd = realloc(b->data, cap);
        if (!nd) { snprintf(d->err, sizeof d->err, "out of memory"); return -1; }
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

static int puts_(dumper *d, const char *s) { return put(d, s, strlen(s)); }

static int indent(dumper *d, int n)
{
    static const char sp[] = "                                ";
    while (n > 0) {
        int k = n > 32 ? 32 : n;
        if (put(d, sp, (size_t)k)) return -1;
        n -= k;
    }
    return 0;
}

/* Length of a character at s[0..n) that a YAML reader refuses or takes for a line break (C1
 * controls U+0080..U+009F, U+2028, U+2029, U+FFFE, U+FFFF): written as a \u escape, in quotes.
 * 0 for any other byte. */
static int unprintable_utf8(const char *s, size_t n, unsigned *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n >= 2 && u[0] == 0xC2 && u[1] >= 0x80 && u[1] <= 0x9F) { *cp = u[1]; return 2; }
    if (n >= 3 && u[0] == 0xE2 && u[1] == 0x80 && (u[2] == 0xA8 || u[2] == 0xA9)) { *cp = 0x2000 + u[2] - 0x80; return 3; }
    if (n >= 3 && u[0] == 0xEF && u[1] == 0xBF && (u[2] == 0xBE || u[2] == 0xBF)) { *cp = 0xFFC0 + u[2] - 0x80; return 3; }
    return 0;
}

/* Would the loader read this plain text as something other than this string? */
static int needs_quotes(const char *s, size_t n)
{
    double num;
    if (n == 0 || is_null_word(s, n) || bool_word(s, n) >= 0 || number_word(s, n, &num)) return 1;
    /* YAML 1.1 readers take these as booleans: quote them for other tools' sake */
    static const char *const words[] = { "yes", "no", "on", "off", "y", "n", "Yes", "No", "On", "Off",
                                         "YES", "NO", "ON", "OFF", "Y", "N", NULL };
    for (int i = 0; words[i]; i++)
        if (strlen(words[i]) == n && !memcmp(words[i], s, n)) return 1;
    if (strchr("-?:,[]{}#&*!|>'\"%@` \t", s[0])) return 1;
    if (n == 2 && s[0] == '<' && s[1] == '<') return 1;   /* a plain << key is a merge */
    if (n >= 3 && !memcmp(s, "...", 3)) return 1;           /* at a line start: document end */
    if (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == ':') return 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        unsigned cp;
        if (ch < 0x20 || ch == 0x7f || unprintable_utf8(s + i, n - i, &cp)) return 1;
        if (ch == ':' && i + 1 < n && (s[i + 1] == ' ' || s[i + 1] == '\t')) return 1;
        if (ch == '#' && i > 0 && (s[i - 1] == ' ' || s[i - 1] == '\t')) return 1;
    }
    return 0;
}

static int dump_string(dumper *d, const char *s, size_t n)
{
    if (!needs_quotes(s, n)) return put(d, s, n);
    if (put(d, "\"", 1)) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[8];
        const char *out = NULL;
        switch (ch) {
        case '"': out = "\\\""; break;
        case '\\': out = "\\\\"; break;
        case '\n': out = "\\n"; break;
        case '\r': out = "\\r"; break;
        case '\t': out = "\\t"; break;
        case 0: out = "\\0"; break;
        default: {
            unsigned cp;
            int k = unprintable_utf8(s + i, n - i, &cp);
            if (k) { snprintf(esc, sizeof esc, "\\u%04x", cp); out = esc; i += k - 1; }
            else if (ch < 0x20 || ch == 0x7f) { snprintf(esc, sizeof esc, "\\x%02x", ch); out = esc; }
        }
        }
        if (out ? puts_(d, out) : put(d, (const char *)&s[i], 1)) return -1;
    }
    return put(d, "\"", 1);
}

static int dump_number(dumper *d, double x)
{
    char tmp[64];
    if (isnan(x)) return puts_(d, ".nan");
    if (isinf(x)) return puts_(d, x > 0 ? ".inf" : "-.inf");
    if (x == 0 && signbit(x)) return puts_(d, "-0.0");   /* "-0" would load as the integer 0 */
    if (x == floor(x) && fabs(x) < 1e17) snprintf(tmp, sizeof tmp, "%.0f", x);
    else {
        snprintf(tmp, sizeof tmp, "%.14g", x);
        if (strtod(tmp, NULL) != x) snprintf(tmp, sizeof tmp, "%.17g", x);
        if (!strpbrk(tmp, ".eEn")) strcat(tmp, ".0");
    }
    return puts_(d, tmp);
}

/* A scalar, or a table that is empty: written inline. */
static int dump_scalar(dumper *d, int idx)
{
    lua_State *L = d->L;
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return puts_(d, "null");
    case LUA_TBOOLEAN: return puts_(d, lua_toboolean(L, idx) ? "true" : "false");
    case LUA_TNUMBER: return dump_number(d, lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return dump_string(d, s, n);
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) return puts_(d, "null");
        /* fallthrough */
    default:
        snprintf(d->err, sizeof d->err, "cannot dump a %s value", luaL_typename(L, idx));
        return -1;
    }
}

/* 0: not a table or empty table (inline), 1: sequence, 2: mapping */
static int table_kind(lua_State *L, int idx)
{
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    if (lua_type(L, idx) != LUA_TTABLE) return 0;
    size_t n = lua_objlen(L, idx), count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) { count++; lua_pop(L, 1); }
    if (count == 0) return 0;
    if (count != n) return 2;
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        int nil = lua_isnil(L, -1);
        lua_pop(L, 1);
        if (nil) return 2;
    }
    return 1;
}

static int type_rank(lua_State *L, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: return 0;
    case LUA_TNUMBER: return 1;
    case LUA_TSTRING: return 2;
    default: return 3;
    }
}

static int key_less(lua_State *L)
{
    int ra = type_rank(L, 1), rb = type_rank(L, 2);
    if (ra != rb) { lua_pushboolean(L, ra < rb); return 1; }
    if (ra == 0) lua_pushboolean(L, !lua_toboolean(L, 1) && lua_toboolean(L, 2));
    else if (ra == 1) lua_pushboolean(L, lua_tonumber(L, 1) < lua_tonumber(L, 2));
    else if (ra == 2) {
        size_t la, lb;
        const char *a = lua_tolstring(L, 1, &la), *b = lua_tolstring(L, 2, &lb);
        int c = memcmp(a, b, la < lb ? la : lb);
        lua_pushboolean(L, c < 0 || (c == 0 && la < lb));
    } else lua_pushboolean(L, 0);
    return 1;
}

static int dump_block(dumper *d, int idx, int kind, int ind, int inline_first, int depth);

/* Writes the value at idx after "key:" or "-": inline scalars on the same line, blocks below
 * (mappings inside sequences start on the dash's line). */
static int dump_child(dumper *d, int idx, int ind, int in_seq, int depth)
{
    idx = idx < 0 ? lua_gettop(d->L) + idx + 1 : idx;
    int kind = table_kind(d->L, idx);
    if (kind == 0) {
        if (lua_type(d->L, idx) == LUA_TTABLE) return puts_(d, " {}\n");
        if (put(d, " ", 1) || dump_scalar(d, idx)) return -1;
        return put(d, "\n", 1);
    }
    if (in_seq) {
        if (put(d, " ", 1)) return -1;
        return dump_block(d, idx, kind, ind + 2, 1, depth + 1);
    }
    if (put(d, "\n", 1)) return -1;
    return dump_block(d, idx, kind, ind + 2, 0, depth + 1);
}

static int dump_block(dumper *d, int idx, int kind, int ind, int inline_first, int depth)
{
    lua_State *L = d->L;
    if (depth > YAML_MAX_DEPTH) { snprintf(d->err, sizeof d->err, "value nested too deep"); return -1; }
    luaL_checkstack(L, 16, "yaml.dump nesting");
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    lua_pushvalue(L, idx);
    lua_rawget(L, d->visiting);
    if (!lua_isnil(L, -1)) { snprintf(d->err, sizeof d->err, "cannot dump a cyclic table"); return -1; }
    lua_pop(L, 1);
    lua_pushvalue(L, idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, d->visiting);

    int first = 1;
    if (kind == 1) {
        int n = (int)lua_objlen(L, idx);
        for (int i = 1; i <= n; i++, first = 0) {
            if (!(first && inline_first) && indent(d, ind)) return -1;
            if (put(d, "-", 1)) return -1;
            lua_rawgeti(L, idx, i);
            if (dump_child(d, -1, ind, 1, depth)) return -1;
            lua_pop(L, 1);
        }
    } else {
        /* sorted keys, so the output is stable */
        lua_newtable(L);
        int keys = lua_gettop(L), n = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            int t = lua_type(L, -1);
            if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN) {
                snprintf(d->err, sizeof d->err, "cannot dump a %s key", luaL_typename(L, -1));
                return -1;
            }
            lua_pushvalue(L, -1);
            lua_rawseti(L, keys, ++n);
        }
        lua_getglobal(L, "table");
        lua_getfield(L, -1, "sort");
        lua_remove(L, -2);
        lua_pushvalue(L, keys);
        lua_pushcfunction(L, key_less);
        lua_call(L, 2, 0);
        for (int i = 1; i <= n; i++, first = 0) {
            if (!(first && inline_first) && indent(d, ind)) return -1;
            lua_rawgeti(L, keys, i);
            size_t start = d->b->len;
            if (dump_scalar(d, -1)) return -1;
            if (d->b->len - start > 1000) {
                /* an implicit key is at most 1024 characters (YAML 1.2, 7.4.2): "? key" has no limit */
                if (put(d, "  ", 2)) return -1;
                memmove(d->b->data + start + 2, d->b->data + start, d->b->len - 2 - start);
                memcpy(d->b->data + start, "? ", 2);
                if (put(d, "\n", 1) || indent(d, ind)) return -1;
            }
            if (put(d, ":", 1)) return -1;
            lua_rawget(L, idx);
            if (dump_child(d, -1, ind, 0, depth)) return -1;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pushvalue(L, idx);
    lua_pushnil(L);
    lua_rawset(L, d->visiting);
    return 0;
}

static int l_dump(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    ybuf *b = lua_newuserdata(L, sizeof *b);
    memset(b, 0, sizeof *b);
    luaL_getmetatable(L, BUF_MT);
    lua_setmetatable(L, -2);
    dumper d;
    memset(&d, 0, sizeof d);
    d.L = L;
    d.b = b;
    lua_newtable(L);
    d.visiting = lua_gettop(L);
    int kind = table_kind(L, 1), rc;
    if (kind == 0) {
        rc = lua_type(L, 1) == LUA_TTABLE ? puts_(&d, "{}") : dump_scalar(&d, 1);
        if (!rc) rc = put(&d, "\n", 1);
    } else {
        rc = dump_block(&d, 1, kind, 0, 0, 1);
    }
    if (rc) {
        free(b->data);
        b->data = NULL;
        lua_pushnil(L);
        lua_pushstring(L, d.err);
        return 2;
    }
    lua_pushlstring(L, b->data, b->len);
    free(b->data);      /* now rather than at the next GC cycle */
    b->data = NULL;
    return 1;
}

int luaopen_gw_yaml(lua_State *L)
{
    luaL_newmetatable(L, PARSER_MT);
    lua_pushcfunction(L, parser_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, BUF_MT);
    lua_pushcfunction(L, buf_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, l_load);
    lua_setfield(L, -2, "load");
    lua_pushcfunction(L, l_dump);
    lua_setfield(L, -2, "dump");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    return 1;
}
