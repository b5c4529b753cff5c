/* worker.h — a worker process: its loop, its Lua VM, its generation and its connections. */
#ifndef GW_WORKER_H
#define GW_WORKER_H
#include <event2/event.h>
#include <event2/listener.h>
#include <lua.h>
#include "gen.h"
#include "shm.h"

typedef struct gw_conn gw_conn;
typedef struct gw_pool gw_pool;

typedef struct gw_listen { int fd; int port; int ssl; } gw_listen;   /* ssl: an HTTPS listener */

struct gw_worker {
    struct event_base *base;
    lua_State *L;
    gw_gen *gen;
    int slot;
    struct event **lev;         /* one accept event per inherited listener */
    int nlev;
    int draining;
    struct event *drain_timer;
    int drain_ticks;            /* seconds spent draining: suspended timers are waited for 10 */
    gw_conn *live;              /* doubly linked list of open connections */
    gw_conn *free_conns;        /* recycled connection structs (no malloc per connection) */
    int nconns;
    gw_pool *pools;             /* upstream keep-alive pools, one per target address */
    uint64_t next_req_id;
    gw_worker_stats *stats;
};

extern struct gw_worker *gw_W;
int gw_worker_run(lua_State *L, int compiled_idx, gw_listen *ls, int nls, int slot);
int gw_worker_init(lua_State *L, int compiled_idx, gw_listen *ls, int nls, int slot);
void gw_worker_maybe_exit(void);
/* the plugin that runs (ffi.c: the runner's ids and their names), for the watchdog's report */
extern int gw_main_plugin_id;
const char *gw_plugin_name(int id);
#endif
