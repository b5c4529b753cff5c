/* metrics.h — Prometheus metrics in shared memory: families (name, type, help, label names) and
 * series (a family's label values and their counters), written by every worker with atomic adds
 * and rendered by the master for GET /metrics. The table is created before the first fork and
 * outlives reloads and worker restarts, so counters never go backwards while gw runs.
 *
 * Per request a worker records one histogram observation (gateway_request_duration_seconds,
 * which also gives gateway_requests_total), the upstream latency and the bytes both ways; the
 * series of a (route, method, status) are found through a per-worker cache, so the hot path does
 * no hashing of label strings and no locking. */
#ifndef GW_METRICS_H
#define GW_METRICS_H
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct gw_req;

enum { GW_MET_COUNTER = 1, GW_MET_GAUGE, GW_MET_HISTOGRAM };

#define GW_MET_FAMILIES 256
#define GW_MET_SERIES 16384
#define GW_MET_KEY 224          /* label values, joined with \x1f */
#define GW_MET_NB 14            /* histogram buckets (+Inf is the count) */

int gw_metrics_init(void);      /* maps the table (once); 0 ok */

/* A family by name: registers it on first use. labels: label names joined with ','.
 * Returns its index, or -1 (bad name, other type or labels than registered, table full). */
int gw_metrics_family(const char *name, int type, const char *help, const char *labels);

/* A series of a family by its label values (joined with \x1f); created on first use. Returns
 * its index, or -1 when the table is full (counted in gateway_metrics_series_dropped_total). */
int gw_metrics_series(int family, const char *key, size_t keylen);

void gw_metrics_add(int series, double v);         /* counter */
void gw_metrics_set(int series, double v);         /* gauge */
void gw_metrics_observe(int series, double v);     /* histogram (seconds) */

/* One finished request: duration, upstream latency, bytes. Called before its log phase. */
void gw_metrics_request(struct gw_req *r);
void gw_metrics_gen_changed(void);                 /* drops the worker's series cache */

/* The whole Prometheus text exposition. */
void gw_metrics_render(struct evbuffer *out);

#endif
