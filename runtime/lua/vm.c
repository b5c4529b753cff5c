/* vm.c — one LuaJIT VM per process: standard libraries, package paths rooted at the gw home
 * (so `require "gw.config"` finds lua/gw/config.lua wherever gw is installed) and the C modules. */
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "gw.h"
#include "vm.h"

char gw_home[4096];

void gw_home_init(const char *argv0)
{
    const char *env = getenv("GW_HOME");
    if (env && *env) { snprintf(gw_home, sizeof gw_home, "%s", env); return; }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) { snprintf(exe, sizeof exe, "%s", argv0); n = (ssize_t)strlen(exe); }
    exe[n] = 0;
    /* bin/gw -> the directory above bin/ */
    char *dir = dirname(exe);
    char *top = dirname(dir);
    snprintf(gw_home, sizeof gw_home, "%s", top);
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int gw_vm_pcall(lua_State *L, int nargs, int nresults, const char *what)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    if (rc != 0) {
        gw_err("%s: %s", what, lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

lua_State *gw_vm_new(void)
{
    lua_State *L = luaL_newstate();
    if (!L) return NULL;
    luaL_openlibs(L);

    lua_getglobal(L, "package");
    /* gw's own modules come first, unless LUA_PATH is set: then what it names (an installed
     * rock tree, say) wins and gw's home is the fallback. */
    char own[5 * 4096 + 256];
    snprintf(own, sizeof own, "%s/lua/?.lua;%s/lua/?/init.lua;%s/?.lua;%s/kong-compat/?.lua;"
             "%s/kong-compat/?/init.lua;./?.lua;./?/init.lua", gw_home, gw_home, gw_home, gw_home, gw_home);
    lua_getfield(L, -1, "path");
    const char *old = lua_tostring(L, -1);
    if (getenv("LUA_PATH")) lua_pushfstring(L, "%s;%s", old, own);
    else lua_pushfstring(L, "%s;%s", own, old);
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
    lua_getfield(L, -1, "cpath");
    lua_pushfstring(L, "%s;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;/usr/lib/lua/5.1/?.so;/usr/local/lib/lua/5.1/?.so",
                    lua_tostring(L, -1));
    lua_setfield(L, -3, "cpath");
    lua_pop(L, 1);

    /* the C modules, loaded on first require */
    static const luaL_Reg modules[] = {
        { "gw.yaml", luaopen_gw_yaml }, { "gw.core", luaopen_gw_core }, { "gw.shared_c", luaopen_gw_shared_c },
        { "gw.regex", luaopen_gw_regex }, { "gw.test_c", luaopen_gw_test_c }, { "gw.http_c", luaopen_gw_http_c },
        { "gw.redis_c", luaopen_gw_redis_c }, { "gw.jwt", luaopen_gw_jwt },
        { "gw.accesslog", luaopen_gw_accesslog }, { NULL, NULL }
    };
    lua_getfield(L, -1, "preload");
    for (const luaL_Reg *m = modules; m->name; m++) {
        lua_pushcfunction(L, m->func);
        lua_setfield(L, -2, m->name);
    }
    lua_pop(L, 2);

    lua_pushstring(L, gw_home);
    lua_setglobal(L, "GW_HOME");
    return L;
}

int gw_vm_run_script(lua_State *L, const char *file, int argc, char **argv)
{
    lua_createtable(L, argc, 1);
    lua_pushstring(L, file);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
    if (luaL_loadfile(L, file) != 0) {
        fprintf(stderr, "gw: %s\n", lua_tostring(L, -1));
        return -1;
    }
    for (int i = 0; i < argc; i++) lua_pushstring(L, argv[i]);
    return gw_vm_pcall(L, argc, 0, file);
}
