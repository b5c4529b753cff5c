/* shm.h — memory shared by the master and every worker: worker stats slots and the gw.shared
 * dicts. Created by the master before it forks, so it survives reloads and worker restarts. */
#ifndef GW_SHM_H
#define GW_SHM_H
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/types.h>

#define GW_MAX_WORKERS 64

/* One upstream target as a worker sees it (passive health is per worker). */
#define GW_HEALTH_MAX 128
typedef struct {
    char upstream[48];
    char target[64];            /* host:port */
    int fails;                  /* consecutive failures now */
    double down_until;          /* wall clock; skipped by the balancer until then */
} gw_target_health;

typedef struct {
    pid_t pid;
    int generation;
    double started;
    uint64_t connections;       /* open now */
    uint64_t accepted;
    uint64_t refused;           /* past gw.max_connections */
    uint64_t requests;
    uint64_t lua_kb;
    int nhealth;
    gw_target_health health[GW_HEALTH_MAX];   /* published every second by the worker */
    int ready;                  /* set by the worker once it accepts: the master drains the
                                   old set only when every new worker is ready */
    /* the watchdog (gw.worker_watchdog): the worker's loop stamps heartbeat_ms (CLOCK_MONOTONIC)
     * from a timer; a master that finds it stale sends GW_WATCHDOG_SIGNAL, whose handler writes
     * what the worker is running into wd_* and bumps wd_seq, then replaces the worker */
    volatile uint64_t heartbeat_ms;   /* 0: not watched */
    volatile int wd_seq;
    char wd_plugin[64], wd_phase[16], wd_route[96];
} gw_worker_stats;

#define GW_WATCHDOG_SIGNAL SIGUSR2

typedef struct {
    gw_worker_stats workers[GW_MAX_WORKERS * 2];   /* old generation drains beside the new one */
} gw_shm_stats;

extern gw_shm_stats *gw_stats;

/* TLS session ticket keys (tls.c): made and rotated by the master, read by every worker, so a
 * session resumes on any worker and across reloads. keys[cur] encrypts new tickets; it and the
 * one before it (cur - 1) decrypt. A rotation writes the slot after cur, then publishes it. */
#define GW_TICKET_KEYS 4
typedef struct {
    unsigned char name[16], aes[32], hmac[32];
    uint64_t serial;            /* 0: never written */
} gw_ticket_key;
typedef struct {
    uint32_t cur;               /* atomic */
    gw_ticket_key keys[GW_TICKET_KEYS];
} gw_ticket_keys;
int gw_shm_stats_init(void);

/* Shared dicts (shared.c). Created by the master from config.gw.shared_dicts before forking. */
typedef struct gw_dict gw_dict;
int gw_dict_create(const char *name, size_t bytes);   /* 0 ok, -1 error (logged) */
gw_dict *gw_dict_find(const char *name, size_t len);
struct evbuffer;
void gw_dicts_render_metrics(struct evbuffer *out);
#endif
