/* accesslog.c — one line per request, in a format made of literal text and $variables (nginx's
 * log_format habit). A format starting with '{' is JSON: string values are JSON-escaped and an
 * absent number is null. Lines gather in a per-worker buffer written every 100 ms or every
 * 64 KiB, never from the request's own path; a regular file gets whole writes (O_APPEND keeps
 * the workers' lines apart), a pipe or terminal gets writes of whole lines of at most PIPE_BUF
 * bytes. SIGUSR1 reopens the file (logrotate's postrotate). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <lua.h>
#include <lauxlib.h>
#include "gw.h"
#include "conn.h"
#include "metrics.h"
#include "accesslog.h"

enum {
    V_LIT = 0, V_TIME_ISO, V_MSEC, V_REQUEST_ID, V_REMOTE_ADDR, V_REMOTE_PORT, V_METHOD, V_REQUEST_URI,
    V_URI, V_ARGS, V_PROTOCOL, V_STATUS, V_BYTES_SENT, V_BODY_BYTES_SENT, V_REQUEST_LENGTH, V_ROUTE,
    V_SERVICE, V_CONSUMER, V_UPSTREAM_ADDR, V_REQUEST_TIME, V_LATENCY, V_UPSTREAM_LATENCY,
    V_GATEWAY_LATENCY, V_HTTP, V_SENT_HTTP,
};

static const struct { const char *name; int id; int number; } VARS[] = {
    { "time_iso8601", V_TIME_ISO, 0 }, { "msec", V_MSEC, 1 }, { "request_id", V_REQUEST_ID, 0 },
    { "remote_addr", V_REMOTE_ADDR, 0 }, { "remote_port", V_REMOTE_PORT, 1 },
    { "request_method", V_METHOD, 0 }, { "request_uri", V_REQUEST_URI, 0 }, { "uri", V_URI, 0 },
    { "args", V_ARGS, 0 }, { "server_protocol", V_PROTOCOL, 0 }, { "status", V_STATUS, 1 },
    { "bytes_sent", V_BYTES_SENT, 1 }, { "body_bytes_sent", V_BODY_BYTES_SENT, 1 },
    { "request_length", V_REQUEST_LENGTH, 1 }, { "route", V_ROUTE, 0 }, { "service", V_SERVICE, 0 },
    { "consumer", V_CONSUMER, 0 }, { "upstream_addr", V_UPSTREAM_ADDR, 0 },
    { "request_time", V_REQUEST_TIME, 1 }, { "latency_ms", V_LATENCY, 1 },
    { "upstream_latency_ms", V_UPSTREAM_LATENCY, 1 }, { "gateway_latency_ms", V_GATEWAY_LATENCY, 1 },
};
#define NVARS (sizeof VARS / sizeof VARS[0])

typedef struct { int id; int number; const char *s; size_t n; } seg;

static struct {
    int fd;
    int regular;                /* a regular file: one write per flush */
    char path[4096];            /* "" for stdout */
    int json;
    seg *segs;
    int nsegs;
    char *fmt;                  /* segs point into it */
    struct evbuffer *buf;
    struct event *timer;
} L = { .fd = -1 };

/* Parses fmt into segments. Returns 0, or -1 with err. */
static int parse(const char *fmt, seg **out, int *nout, char *err, size_t errlen)
{
    size_t len = strlen(fmt);
    seg *s = calloc(len + 1, sizeof *s);
    int n = 0;
    const char *p = fmt, *lit = fmt;
    while (*p) {
        if (*p != '$') { p++; continue; }
        const char *v = p + 1;
        const char *e = v;
        while ((*e >= 'a' && *e <= 'z') || (*e >= '0' && *e <= '9') || *e == '_') e++;
        if (e == v) { p++; continue; }     /* a lone '$' is text */
        if (p > lit) s[n++] = (seg){ V_LIT, 0, lit, (size_t)(p - lit) };
        size_t vn = (size_t)(e - v);
        int found = 0;
        for (size_t i = 0; i < NVARS; i++)
            if (strlen(VARS[i].name) == vn && memcmp(VARS[i].name, v, vn) == 0) {
                s[n++] = (seg){ VARS[i].id, VARS[i].number, NULL, 0 };
                found = 1;
                break;
            }
        if (!found && vn > 5 && memcmp(v, "http_", 5) == 0) {
            s[n++] = (seg){ V_HTTP, 0, v + 5, vn - 5 };
            found = 1;
        } else if (!found && vn > 10 && memcmp(v, "sent_http_", 10) == 0) {
            s[n++] = (seg){ V_SENT_HTTP, 0, v + 10, vn - 10 };
            found = 1;
        }
        if (!found) {
            snprintf(err, errlen, "unknown variable $%.*s", (int)vn, v);
            free(s);
            return -1;
        }
        p = lit = e;
    }
    if (p > lit) s[n++] = (seg){ V_LIT, 0, lit, (size_t)(p - lit) };
    *out = s;
    *nout = n;
    return 0;
}

/* gw.accesslog.check(format): true, or nil and a message (the config compiler uses it). */
static int l_check(lua_State *Ls)
{
    const char *fmt = luaL_checkstring(Ls, 1);
    seg *s;
    int n;
    char err[256];
    if (parse(fmt, &s, &n, err, sizeof err) != 0) {
        lua_pushnil(Ls);
        lua_pushstring(Ls, err);
        return 2;
    }
    free(s);
    lua_pushboolean(Ls, 1);
    return 1;
}

int luaopen_gw_accesslog(lua_State *Ls)
{
    lua_newtable(Ls);
    lua_pushcfunction(Ls, l_check);
    lua_setfield(Ls, -2, "check");
    return 1;
}

static int open_target(void)
{
    if (!L.path[0]) {
        L.fd = 1;
    } else {
        int fd = open(L.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            gw_err("cannot open access_log %s: %s", L.path, strerror(errno));
            return -1;
        }
        L.fd = fd;
    }
    struct stat st;
    L.regular = fstat(L.fd, &st) == 0 && S_ISREG(st.st_mode);
    return 0;
}

void gw_accesslog_flush(void)
{
    if (!L.buf || L.fd < 0) return;
    size_t left = evbuffer_get_length(L.buf);
    while (left > 0) {
        size_t chunk = left;
        if (!L.regular && chunk > PIPE_BUF) {
            /* whole lines of at most PIPE_BUF bytes: writes of other processes cannot split them */
            const char *data = (const char *)evbuffer_pullup(L.buf, PIPE_BUF);
            size_t k = PIPE_BUF;
            while (k > 0 && data[k - 1] != '\n') k--;
            chunk = k ? k : PIPE_BUF;
        }
        const char *data = (const char *)evbuffer_pullup(L.buf, (ssize_t)chunk);
        ssize_t w = write(L.fd, data, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            gw_warn("access_log: write failed: %s (%zu bytes dropped)", w < 0 ? strerror(errno) : "no progress", left);
            evbuffer_drain(L.buf, left);
            return;
        }
        evbuffer_drain(L.buf, (size_t)w);
        left -= (size_t)w;
    }
}

static void flush_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev; (void)arg;
    gw_accesslog_flush();
}

int gw_accesslog_open(struct event_base *base, const char *target, const char *format)
{
    if (!target || !*target || strcmp(target, "off") == 0) return 0;
    char err[256];
    L.fmt = strdup(format);     /* the segments point into it */
    if (!L.fmt || parse(L.fmt, &L.segs, &L.nsegs, err, sizeof err) != 0) {
        gw_err("access_log_format: %s", err);
        return -1;
    }
    L.json = format[0] == '{';
    snprintf(L.path, sizeof L.path, "%s", strcmp(target, "stdout") == 0 ? "" : target);
    if (open_target() != 0) return -1;
    L.buf = evbuffer_new();
    L.timer = event_new(base, -1, 0, flush_cb, NULL);
    return 0;
}

void gw_accesslog_reopen(void)
{
    if (!L.buf) return;
    gw_accesslog_flush();
    if (!L.path[0]) return;
    int old = L.fd;
    if (open_target() != 0) { L.fd = old; return; }
    close(old);
    gw_notice("access_log %s reopened", L.path);
}

/* ---- one line ----------------------------------------------------------------------------- */

/* The line is built in a growable byte array and handed to the evbuffer in one piece. */
static struct { char *p; size_t n, cap; } lb;

static void lb_add(const char *s, size_t n)
{
    if (lb.n + n > lb.cap) {
        size_t cap = lb.cap ? lb.cap : 1024;
        while (cap < lb.n + n) cap *= 2;
        char *p = realloc(lb.p, cap);
        if (!p) return;
        lb.p = p;
        lb.cap = cap;
    }
    memcpy(lb.p + lb.n, s, n);
    lb.n += n;
}

static void lb_int(long long v)
{
    char tmp[24];
    int i = sizeof tmp;
    int neg = v < 0;
    unsigned long long u = neg ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do { tmp[--i] = (char)('0' + u % 10); u /= 10; } while (u);
    if (neg) tmp[--i] = '-';
    lb_add(tmp + i, sizeof tmp - (size_t)i);
}

/* microseconds as milliseconds with three decimals */
static void lb_ms(uint64_t us)
{
    char tmp[8];
    lb_int((long long)(us / 1000));
    tmp[0] = '.';
    tmp[1] = (char)('0' + us / 100 % 10);
    tmp[2] = (char)('0' + us / 10 % 10);
    tmp[3] = (char)('0' + us % 10);
    lb_add(tmp, 4);
}

static void put_str(const char *s, size_t n)
{
    if (!L.json) { lb_add(s, n); return; }
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        lb_add(s + start, i - start);
        if (c == '"') lb_add("\\\"", 2);
        else if (c == '\\') lb_add("\\\\", 2);
        else if (c == '\n') lb_add("\\n", 2);
        else if (c == '\r') lb_add("\\r", 2);
        else if (c == '\t') lb_add("\\t", 2);
        else {
            char u[8];
            snprintf(u, sizeof u, "\\u%04x", c);
            lb_add(u, 6);
        }
        start = i + 1;
    }
    lb_add(s + start, n - start);
}

static void put_cstr(const char *s) { if (s) put_str(s, strlen(s)); }

static void put_none(int number)
{
    if (number && L.json) lb_add("null", 4);
    else if (!L.json) lb_add("-", 1);
}

/* "2026-11-28T02:00:09.813Z": the part up to the seconds is made once per second */
static void put_time_iso(void)
{
    static time_t cached_sec = -1;
    static char prefix[64];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (tv.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        snprintf(prefix, sizeof prefix, "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_sec = tv.tv_sec;
    }
    lb_add(prefix, 20);
    int ms = (int)(tv.tv_usec / 1000);
    char t[4] = { (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z' };
    lb_add(t, 4);
}

/* The value of header `name` (as written in the format: '_' matches '-'), or NULL. */
static const gw_str *find_header(const gw_header *h, int n, const char *name, size_t nl)
{
    for (int i = 0; i < n; i++) {
        if (h[i].name.n != nl) continue;
        size_t k = 0;
        for (; k < nl; k++) {
            char a = (char)tolower((unsigned char)h[i].name.p[k]), b = name[k];
            if (a != b && !(a == '-' && b == '_')) break;
        }
        if (k == nl) return &h[i].value;
    }
    return NULL;
}

void gw_accesslog_request(gw_req *r)
{
    if (!L.buf) return;
    uint64_t now = gw_now_us();
    uint64_t total = now - r->start_us;
    uint64_t up = r->up_start_us ? (r->up_end_us ? r->up_end_us : now) - r->up_start_us : 0;
    lb.n = 0;
    for (int i = 0; i < L.nsegs; i++) {
        const seg *s = &L.segs[i];
        switch (s->id) {
        case V_LIT: lb_add(s->s, s->n); break;
        case V_TIME_ISO: put_time_iso(); break;
        case V_MSEC: {
            struct timeval tv;
            gettimeofday(&tv, NULL);
            lb_ms((uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000);   /* seconds.milliseconds */
            break;
        }
        case V_REQUEST_ID: put_cstr(r->id_str); break;
        case V_REMOTE_ADDR: put_cstr(r->c->peer_ip); break;
        case V_REMOTE_PORT: lb_int(r->c->peer_port); break;
        case V_METHOD: put_str(r->h.method.p, r->h.method.n); break;
        case V_REQUEST_URI: put_str(r->h.target.p, r->h.target.n); break;
        case V_URI: put_str(r->h.path.p, r->h.path.n); break;
        case V_ARGS: put_str(r->h.query.p, r->h.query.n); break;
        case V_PROTOCOL: put_cstr(r->h.version == 10 ? "HTTP/1.0" : "HTTP/1.1"); break;
        case V_STATUS: lb_int(r->status); break;
        case V_BYTES_SENT: lb_int((long long)((int64_t)r->head_bytes + r->bytes_sent)); break;
        case V_BODY_BYTES_SENT: lb_int((long long)r->bytes_sent); break;
        case V_REQUEST_LENGTH: lb_int((long long)((int64_t)r->head_len + r->body_read)); break;
        case V_ROUTE: put_cstr(r->route ? r->route->name : NULL); break;
        case V_SERVICE: put_cstr(r->svc ? r->svc->name : NULL); break;
        case V_CONSUMER: put_cstr(r->consumer); break;
        case V_UPSTREAM_ADDR:
            if (r->target) { put_cstr(r->target->host); lb_add(":", 1); lb_int(r->target->port); }
            break;
        case V_REQUEST_TIME: lb_ms(total / 1000); break;
        case V_LATENCY: lb_ms(total); break;
        case V_UPSTREAM_LATENCY: if (r->up_start_us) lb_ms(up); else put_none(1); break;
        case V_GATEWAY_LATENCY: lb_ms(total - up); break;
        case V_HTTP: {
            const gw_str *v = find_header(r->h.headers, r->h.nheaders, s->s, s->n);
            if (v) put_str(v->p, v->n); else put_none(0);
            break;
        }
        case V_SENT_HTTP: {
            const gw_str *v = find_header(r->rhdrs, r->nrhdrs, s->s, s->n);
            if (v) put_str(v->p, v->n); else put_none(0);
            break;
        }
        }
    }
    lb_add("\n", 1);
    evbuffer_add(L.buf, lb.p, lb.n);
    if (evbuffer_get_length(L.buf) >= 64 * 1024) gw_accesslog_flush();
    else if (!evtimer_pending(L.timer, NULL)) {
        struct timeval tv = { 0, 100000 };
        evtimer_add(L.timer, &tv);
    }
}
