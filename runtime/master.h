/* master.h — the master process: config, listeners, workers, reloads, the admin API. */
#ifndef GW_MASTER_H
#define GW_MASTER_H
#include <signal.h>
#include <lua.h>
int gw_master_run(const char *config_file);
/* Applies the compiled config at the top of the master's Lua stack: forks a new set of workers,
 * then drains the old ones. 0 ok, -1 error (message in err). */
int gw_master_apply(lua_State *L, char *err, size_t errlen);
int luaopen_gw_master(lua_State *L);
/* The signals master and workers take through their loops (blocked in a new worker until its
 * own handlers are in place). */
void gw_loop_signals(sigset_t *set);
void gw_reopen_error_log(void);
#endif
