/* vm.h — creating a gw LuaJIT VM: package paths rooted at the gw home, the gw.* C modules preloaded. */
#ifndef GW_VM_H
#define GW_VM_H
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

extern char gw_home[4096];          /* directory holding lua/, plugins/, kong-compat/ */
void gw_home_init(const char *argv0);
lua_State *gw_vm_new(void);
/* Runs a chunk already on the stack top with a traceback handler; logs and returns -1 on error. */
int gw_vm_pcall(lua_State *L, int nargs, int nresults, const char *what);
/* Requires module `name` and calls its function `fn` with the string args; returns -1 on error. */
int gw_vm_run_script(lua_State *L, const char *file, int argc, char **argv);

int luaopen_gw_yaml(lua_State *L);
int luaopen_gw_core(lua_State *L);
int luaopen_gw_shared_c(lua_State *L);
int luaopen_gw_regex(lua_State *L);
int luaopen_gw_test_c(lua_State *L);
int luaopen_gw_http_c(lua_State *L);
int luaopen_gw_redis_c(lua_State *L);
int luaopen_gw_jwt(lua_State *L);
int luaopen_gw_accesslog(lua_State *L);
#endif
