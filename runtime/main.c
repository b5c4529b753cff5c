/* main.c — the gw command line: run, check, test, lua, new-plugin, reload, version. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gw.h"
#include "master.h"
#include "vm.h"
#include "io.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: gw run [-c FILE]        start the gateway (default FILE: gateway.yaml)\n"
        "       gw check FILE           validate a config file, print every error\n"
        "       gw reload [-c FILE]     ask the running gw (its admin API) to reload FILE from disk\n"
        "       gw new-plugin NAME [--dir DIR]  scaffold a plugin with passing specs\n"
        "       gw test [BUSTED ARGS]   run busted specs inside gw's LuaJIT\n"
        "       gw lua FILE [ARGS]      run a Lua script inside gw's LuaJIT\n"
        "       gw version\n");
}

/* Calls a function of a Lua module (gw.cli) with the remaining arguments; its integer result is
 * the exit code. Commands written in Lua stay short and testable. */
static int lua_command(const char *fn, int argc, char **argv)
{
    lua_State *L = gw_vm_new();
    if (!L) { fprintf(stderr, "gw: cannot create Lua VM\n"); return 1; }
    lua_createtable(L, argc, 0);
    for (int i = 0; i < argc; i++) { lua_pushstring(L, argv[i]); lua_rawseti(L, -2, i + 1); }
    lua_setglobal(L, "arg");
    lua_getglobal(L, "require");
    lua_pushstring(L, "gw.cli");
    if (gw_vm_pcall(L, 1, 1, "gw.cli") != 0) return 1;
    lua_getfield(L, -1, fn);
    lua_createtable(L, argc, 0);
    for (int i = 0; i < argc; i++) { lua_pushstring(L, argv[i]); lua_rawseti(L, -2, i + 1); }
    if (gw_vm_pcall(L, 1, 1, fn) != 0) return 1;
    int rc = (int)lua_tointeger(L, -1);
    lua_close(L);
    return rc;
}

int main(int argc, char **argv)
{
    gw_io_mem_init();   /* before anything of libevent */
    gw_home_init(argv[0]);
    const char *cmd = argc > 1 ? argv[1] : "run";
    if (argc > 1 && argv[1][0] == '-') cmd = "run";
    else if (argc > 1) { argc--; argv++; }

    if (strcmp(cmd, "run") == 0 || strcmp(cmd, "start") == 0) {
        const char *file = "gateway.yaml";
        for (int i = 1; i < argc; i++) {
            if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) file = argv[++i];
            else { usage(stderr); return 2; }
        }
        return gw_master_run(file);
    }
    if (strcmp(cmd, "check") == 0) return lua_command("check", argc - 1, argv + 1);
    if (strcmp(cmd, "test") == 0) return lua_command("test", argc - 1, argv + 1);
    if (strcmp(cmd, "new-plugin") == 0) return lua_command("new_plugin", argc - 1, argv + 1);
    if (strcmp(cmd, "reload") == 0) return lua_command("reload", argc - 1, argv + 1);
    if (strcmp(cmd, "lua") == 0) {
        if (argc < 2) { usage(stderr); return 2; }
        lua_State *L = gw_vm_new();
        return gw_vm_run_script(L, argv[1], argc - 2, argv + 2) == 0 ? 0 : 1;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "-v") == 0) { printf("gw %s\n", GW_VERSION); return 0; }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "-h") == 0) { usage(stdout); return 0; }
    fprintf(stderr, "gw: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
