/* metrics.c — the shared-memory metrics table (see metrics.h). */
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <event2/buffer.h>
#include "gw.h"
#include "conn.h"
#include "shm.h"
#include "metrics.h"

typedef struct {
    uint32_t state;             /* 0 free, 1 being written, 2 ready */
    uint32_t type;
    char name[96];
    char help[192];
    char labels[160];           /* label names joined with ',' */
} fam_t;

typedef struct {
    uint32_t state;             /* 0 free, 1 being written, 2 ready */
    uint32_t hash;
    uint32_t family;
    uint32_t keylen;
    char key[GW_MET_KEY];
    uint64_t count;             /* histogram: observations */
    uint64_t value;             /* double bits: counter / gauge value, histogram sum */
    uint64_t b[GW_MET_NB];      /* histogram: observations per bucket (not cumulative) */
} ser_t;

typedef struct {
    uint64_t dropped;           /* series refused because the table was full */
    fam_t fam[GW_MET_FAMILIES];
    ser_t ser[GW_MET_SERIES];
} table_t;

static table_t *T;
static const double BUCKETS[GW_MET_NB] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                           0.5, 1, 2.5, 5, 10, 30 };

/* the built-in families */
static int F_DURATION, F_REQUESTS, F_UPSTREAM, F_BANDWIDTH;


static int valid_name(const char *s, int label)
{
    if (!*s) return 0;
    for (const char *p = s; *p; p++) {
        int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
                 (!label && *p == ':') || (p > s && *p >= '0' && *p <= '9');
        if (!ok) return 0;
    }
    return 1;
}

static int valid_labels(const char *labels)
{
    char buf[160];
    if (strlen(labels) >= sizeof buf) return 0;
    if (!*labels) return 1;
    strcpy(buf, labels);
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (!valid_name(t, 1) || strcmp(t, "le") == 0) return 0;
    return labels[strlen(labels) - 1] != ',' && labels[0] != ',' && !strstr(labels, ",,");
}

static void wait_ready(uint32_t *state)
{
    while (__atomic_load_n(state, __ATOMIC_ACQUIRE) == 1) sched_yield();
}

int gw_metrics_family(const char *name, int type, const char *help, const char *labels)
{
    if (!T && gw_metrics_init() != 0) return -1;
    if (!valid_name(name, 0) || strlen(name) >= sizeof T->fam[0].name || !valid_labels(labels)) return -1;
    for (int i = 0; i < GW_MET_FAMILIES; i++) {
        fam_t *f = &T->fam[i];
        uint32_t st = __atomic_load_n(&f->state, __ATOMIC_ACQUIRE);
        if (st == 0) {
            uint32_t expect = 0;
            if (!__atomic_compare_exchange_n(&f->state, &expect, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                i--;            /* someone took it: look at it again */
                continue;
            }
            f->type = (uint32_t)type;
            snprintf(f->name, sizeof f->name, "%s", name);
            snprintf(f->help, sizeof f->help, "%s", help ? help : "");
            snprintf(f->labels, sizeof f->labels, "%s", labels);
            __atomic_store_n(&f->state, 2, __ATOMIC_RELEASE);
            return i;
        }
        wait_ready(&f->state);
        if (strcmp(f->name, name) == 0)
            return (f->type == (uint32_t)type && strcmp(f->labels, labels) == 0) ? i : -1;
    }
    return -1;
}

static uint32_t hash_key(int family, const char *key, size_t n)
{
    uint32_t h = 2166136261u ^ (uint32_t)family;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)key[i]) * 16777619u;
    return h ? h : 1;
}

int gw_metrics_series(int family, const char *key, size_t keylen)
{
    if (!T || family < 0 || family >= GW_MET_FAMILIES) return -1;
    if (keylen >= GW_MET_KEY) keylen = GW_MET_KEY - 1;
    uint32_t h = hash_key(family, key, keylen);
    for (uint32_t probe = 0; probe < GW_MET_SERIES; probe++) {
        uint32_t i = (h + probe) & (GW_MET_SERIES - 1);
        ser_t *s = &T->ser[i];
        uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
        if (st == 0) {
            uint32_t expect = 0;
            if (!__atomic_compare_exchange_n(&s->state, &expect, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                probe--;        /* taken meanwhile: compare with it */
                continue;
            }
            s->hash = h;
            s->family = (uint32_t)family;
            s->keylen = (uint32_t)keylen;
            memcpy(s->key, key, keylen);
            s->key[keylen] = 0;
            __atomic_store_n(&s->state, 2, __ATOMIC_RELEASE);
            return (int)i;
        }
        wait_ready(&s->state);
        if (s->hash == h && s->family == (uint32_t)family && s->keylen == keylen && memcmp(s->key, key, keylen) == 0)
            return (int)i;
    }
    __atomic_add_fetch(&T->dropped, 1, __ATOMIC_RELAXED);
    return -1;
}

static void add_double(uint64_t *bits, double v)
{
    uint64_t old = __atomic_load_n(bits, __ATOMIC_RELAXED), nv;
    do {
        double d;
        memcpy(&d, &old, sizeof d);
        d += v;
        memcpy(&nv, &d, sizeof nv);
    } while (!__atomic_compare_exchange_n(bits, &old, nv, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
}

void gw_metrics_add(int series, double v)
{
    if (T && series >= 0) add_double(&T->ser[series].value, v);
}

void gw_metrics_set(int series, double v)
{
    if (!T || series < 0) return;
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    __atomic_store_n(&T->ser[series].value, bits, __ATOMIC_RELAXED);
}

void gw_metrics_observe(int series, double v)
{
    if (!T || series < 0) return;
    ser_t *s = &T->ser[series];
    int b = 0;
    while (b < GW_MET_NB && v > BUCKETS[b]) b++;
    if (b < GW_MET_NB) __atomic_add_fetch(&s->b[b], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->count, 1, __ATOMIC_RELAXED);
    add_double(&s->value, v);
}

int gw_metrics_init(void)
{
    if (T) return 0;
    void *p = mmap(NULL, sizeof(table_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        gw_err("metrics: cannot map the table: %s", strerror(errno));
        return -1;
    }
    T = p;
    F_REQUESTS = gw_metrics_family("gateway_requests_total", GW_MET_COUNTER,
        "Requests answered, by service, route, method and status (the count of gateway_request_duration_seconds)",
        "service,route,method,status");
    F_DURATION = gw_metrics_family("gateway_request_duration_seconds", GW_MET_HISTOGRAM,
        "Time from the complete request head to the last byte of the response",
        "service,route,method,status");
    F_UPSTREAM = gw_metrics_family("gateway_upstream_duration_seconds", GW_MET_HISTOGRAM,
        "Time spent on the upstream: from the first connect attempt to the end of its response",
        "service,route");
    F_BANDWIDTH = gw_metrics_family("gateway_bandwidth_bytes_total", GW_MET_COUNTER,
        "Bytes received from clients (ingress) and sent to them (egress)",
        "service,route,direction");
    return 0;
}

/* ---- per request -------------------------------------------------------------------------- */

static const char *const METHODS[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS",
                                       "CONNECT", "TRACE" };
#define NMETHODS 9

typedef struct {
    const void *route, *svc, *gen;
    int method, status;
    int dur, up, in, out;       /* series */
} cache_ent;

#define CACHE 1024
static cache_ent cache[CACHE];

void gw_metrics_gen_changed(void) { memset(cache, 0, sizeof cache); }

static int join(char *buf, size_t cap, const char *const *vals, int n)
{
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        if (i && len < cap - 1) buf[len++] = '\x1f';
        for (const char *p = vals[i]; *p && len < cap - 1; p++) buf[len++] = *p == '\x1f' ? ' ' : *p;
    }
    buf[len] = 0;
    return (int)len;
}

static const char *svc_name(const gw_req *r) { return r->svc && r->svc->name ? r->svc->name : ""; }
static const char *route_name(const gw_req *r) { return r->route && r->route->name ? r->route->name : ""; }

void gw_metrics_request(gw_req *r)
{
    if (!T || !r->gen->metrics) return;
    int m = NMETHODS;
    for (int i = 0; i < NMETHODS; i++)
        if (strlen(METHODS[i]) == r->h.method.n && memcmp(METHODS[i], r->h.method.p, r->h.method.n) == 0) { m = i; break; }
    const void *route = r->route, *svc = r->svc;
    uintptr_t h = ((uintptr_t)route >> 4) * 31 + ((uintptr_t)svc >> 4) * 17 + (uintptr_t)m * 7 + (uintptr_t)r->status;
    cache_ent *e = &cache[h & (CACHE - 1)];
    if (e->route != route || e->svc != svc || e->gen != r->gen || e->method != m || e->status != r->status || !e->gen) {
        const char *sname = svc_name(r), *rname = route_name(r);
        char status[8], key[GW_MET_KEY];
        snprintf(status, sizeof status, "%d", r->status);
        const char *v4[4] = { sname, rname, m < NMETHODS ? METHODS[m] : "OTHER", status };
        int n = join(key, sizeof key, v4, 4);
        e->dur = gw_metrics_series(F_DURATION, key, (size_t)n);
        e->up = -2;             /* looked up with the first proxied request */
        const char *vi[3] = { sname, rname, "ingress" };
        n = join(key, sizeof key, vi, 3);
        e->in = gw_metrics_series(F_BANDWIDTH, key, (size_t)n);
        vi[2] = "egress";
        n = join(key, sizeof key, vi, 3);
        e->out = gw_metrics_series(F_BANDWIDTH, key, (size_t)n);
        e->route = route; e->svc = svc; e->gen = r->gen; e->method = m; e->status = r->status;
    }
    uint64_t now = gw_now_us();
    gw_metrics_observe(e->dur, (double)(now - r->start_us) / 1e6);
    if (r->up_start_us) {
        if (e->up == -2) {
            const char *v2[2] = { svc_name(r), route_name(r) };
            char key[GW_MET_KEY];
            int n = join(key, sizeof key, v2, 2);
            e->up = gw_metrics_series(F_UPSTREAM, key, (size_t)n);
        }
        uint64_t end = r->up_end_us ? r->up_end_us : now;
        gw_metrics_observe(e->up, (double)(end - r->up_start_us) / 1e6);
    }
    gw_metrics_add(e->in, (double)(r->head_len + (size_t)r->body_read));
    gw_metrics_add(e->out, (double)((int64_t)r->head_bytes + r->bytes_sent));
}

/* ---- rendering ---------------------------------------------------------------------------- */

static void put_escaped(struct evbuffer *out, const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = s[i] == '\\' ? "\\\\" : s[i] == '"' ? "\\\"" : s[i] == '\n' ? "\\n" : NULL;
        if (!rep) continue;
        evbuffer_add(out, s + start, i - start);
        evbuffer_add(out, rep, 2);
        start = i + 1;
    }
    evbuffer_add(out, s + start, n - start);
}

/* {a="x",b="y"[,le="..."]} from the family's label names and a series key */
static void put_labels(struct evbuffer *out, const fam_t *f, const ser_t *s, const char *le)
{
    if (!f->labels[0] && !le) return;
    evbuffer_add(out, "{", 1);
    const char *names = f->labels, *vals = s ? s->key : "";
    const char *vend = vals + (s ? s->keylen : 0);
    int first = 1;
    while (*names) {
        const char *ne = strchr(names, ',');
        size_t nn = ne ? (size_t)(ne - names) : strlen(names);
        const char *ve = memchr(vals, '\x1f', (size_t)(vend - vals));
        size_t vn = ve ? (size_t)(ve - vals) : (size_t)(vend - vals);
        if (!first) evbuffer_add(out, ",", 1);
        first = 0;
        evbuffer_add(out, names, nn);
        evbuffer_add(out, "=\"", 2);
        put_escaped(out, vals, vn);
        evbuffer_add(out, "\"", 1);
        names += nn + (ne ? 1 : 0);
        vals = ve ? ve + 1 : vend;
        if (!ne) break;
    }
    if (le) evbuffer_add_printf(out, "%sle=\"%s\"", first ? "" : ",", le);
    evbuffer_add(out, "}", 1);
}

static void put_number(struct evbuffer *out, double v)
{
    if (isnan(v)) evbuffer_add(out, "NaN", 3);
    else if (isinf(v)) evbuffer_add_printf(out, "%s", v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15) evbuffer_add_printf(out, "%.0f", v);
    else evbuffer_add_printf(out, "%.15g", v);
}

static double value_of(const ser_t *s)
{
    uint64_t bits = __atomic_load_n(&s->value, __ATOMIC_RELAXED);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static void put_help(struct evbuffer *out, const char *name, const char *help, const char *type)
{
    evbuffer_add_printf(out, "# HELP %s ", name);
    for (const char *p = help; *p; p++) {
        if (*p == '\\') evbuffer_add(out, "\\\\", 2);
        else if (*p == '\n') evbuffer_add(out, "\\n", 2);
        else evbuffer_add(out, p, 1);
    }
    evbuffer_add_printf(out, "\n# TYPE %s %s\n", name, type);
}

static void render_family(struct evbuffer *out, int fi, const int *order, const int *next)
{
    const fam_t *f = &T->fam[fi];
    int src = fi == F_REQUESTS ? F_DURATION : fi;   /* gateway_requests_total: the histogram's counts */
    static const char *const TYPES[] = { "", "counter", "gauge", "histogram" };
    put_help(out, f->name, f->help, TYPES[f->type]);
    for (int i = order[src]; i >= 0; i = next[i]) {
        const ser_t *s = &T->ser[i];
        if (fi == F_REQUESTS) {
            evbuffer_add(out, f->name, strlen(f->name));
            put_labels(out, f, s, NULL);
            evbuffer_add_printf(out, " %llu\n", (unsigned long long)__atomic_load_n(&s->count, __ATOMIC_RELAXED));
            continue;
        }
        if (f->type != GW_MET_HISTOGRAM) {
            evbuffer_add(out, f->name, strlen(f->name));
            put_labels(out, f, s, NULL);
            evbuffer_add(out, " ", 1);
            put_number(out, value_of(s));
            evbuffer_add(out, "\n", 1);
            continue;
        }
        uint64_t cum = 0;
        char le[32];
        for (int b = 0; b < GW_MET_NB; b++) {
            cum += __atomic_load_n(&s->b[b], __ATOMIC_RELAXED);
            snprintf(le, sizeof le, "%g", BUCKETS[b]);
            evbuffer_add_printf(out, "%s_bucket", f->name);
            put_labels(out, f, s, le);
            evbuffer_add_printf(out, " %llu\n", (unsigned long long)cum);
        }
        uint64_t count = __atomic_load_n(&s->count, __ATOMIC_RELAXED);
        if (count < cum) count = cum;   /* a concurrent observation between the two reads */
        evbuffer_add_printf(out, "%s_bucket", f->name);
        put_labels(out, f, s, "+Inf");
        evbuffer_add_printf(out, " %llu\n%s_sum", (unsigned long long)count, f->name);
        put_labels(out, f, s, NULL);
        evbuffer_add(out, " ", 1);
        put_number(out, value_of(s));
        evbuffer_add_printf(out, "\n%s_count", f->name);
        put_labels(out, f, s, NULL);
        evbuffer_add_printf(out, " %llu\n", (unsigned long long)count);
    }
}

void gw_metrics_render(struct evbuffer *out)
{
    if (!T) return;
    /* group the series by family in one pass: order[family] -> first series, next[series] */
    static int order[GW_MET_FAMILIES], next[GW_MET_SERIES];
    int last[GW_MET_FAMILIES];
    for (int i = 0; i < GW_MET_FAMILIES; i++) order[i] = last[i] = -1;
    for (int i = 0; i < GW_MET_SERIES; i++) {
        next[i] = -1;
        if (__atomic_load_n(&T->ser[i].state, __ATOMIC_ACQUIRE) != 2) continue;
        int f = (int)T->ser[i].family;
        if (last[f] < 0) order[f] = i; else next[last[f]] = i;
        last[f] = i;
    }
    for (int fi = 0; fi < GW_MET_FAMILIES; fi++) {
        if (__atomic_load_n(&T->fam[fi].state, __ATOMIC_ACQUIRE) != 2) break;
        render_family(out, fi, order, next);
    }

    /* process figures from the worker slots */
    uint64_t conns = 0, accepted = 0, refused = 0;
    int nworkers = 0;
    put_help(out, "gateway_lua_memory_bytes", "Lua VM memory of each worker", "gauge");
    for (int i = 0; gw_stats && i < GW_MAX_WORKERS * 2; i++) {
        gw_worker_stats *w = &gw_stats->workers[i];
        if (w->pid <= 0) continue;
        nworkers++;
        conns += w->connections;
        accepted += w->accepted;
        refused += w->refused;
        evbuffer_add_printf(out, "gateway_lua_memory_bytes{worker=\"%d\"} %llu\n", (int)w->pid,
                            (unsigned long long)w->lua_kb * 1024);
    }
    put_help(out, "gateway_connections_active", "Client connections open now", "gauge");
    evbuffer_add_printf(out, "gateway_connections_active %llu\n", (unsigned long long)conns);
    put_help(out, "gateway_connections_accepted_total", "Client connections accepted by the running workers", "counter");
    evbuffer_add_printf(out, "gateway_connections_accepted_total %llu\n", (unsigned long long)accepted);
    put_help(out, "gateway_connections_refused_total", "Client connections refused past gw.max_connections by the running workers", "counter");
    evbuffer_add_printf(out, "gateway_connections_refused_total %llu\n", (unsigned long long)refused);
    put_help(out, "gateway_workers", "Worker processes running (a reload runs the old set beside the new one while it drains)", "gauge");
    evbuffer_add_printf(out, "gateway_workers %d\n", nworkers);
    gw_dicts_render_metrics(out);
    put_help(out, "gateway_metrics_series_dropped_total", "Series not recorded because the metrics table was full", "counter");
    evbuffer_add_printf(out, "gateway_metrics_series_dropped_total %llu\n", (unsigned long long)__atomic_load_n(&T->dropped, __ATOMIC_RELAXED));
}
