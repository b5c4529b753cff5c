/* fuzz_config.c — libFuzzer target for the YAML config loader: runtime/lua/yaml.c (YAML text ->
 * Lua values with line:col marks, and back with yaml.dump) and the whole config compile
 * (gw.config.load_string: schema, routes, plugins, upstreams) in gw's LuaJIT VM.
 * Bad input must give an error, never a crash or a raised Lua error:
 *   - yaml.load returns a value and its marks, or nil and "fuzz.yaml:LINE:COL: message";
 *   - a loaded value that yaml.dump can write loads back, to a value that dumps the same;
 *   - config.load_string returns a compiled config, or nil and a non-empty list of messages.
 * A Lua error from any of them (a bug in the loader) aborts with its traceback. */
#define GW_FUZZ_VM
#include "fuzz.h"

static const char driver[] =
    "local yaml, config = require('gw.yaml'), require('gw.config')\n"
    "return function(text)\n"
    "  local v, marks = yaml.load(text, 'fuzz.yaml')\n"
    "  if v == nil then\n"
    "    assert(type(marks) == 'string' and marks:find('^fuzz%.yaml:%d+:%d+: '), 'bad yaml error: ' .. tostring(marks))\n"
    "  else\n"
    "    assert(type(marks) == 'table', 'yaml.load: no marks')\n"
    "    local out, derr = yaml.dump(v)\n"
    "    if out then\n"
    "      local v2, e2 = yaml.load(out, 'dump')\n"
    "      assert(v2 ~= nil, 'yaml.dump wrote what yaml.load rejects: ' .. tostring(e2) .. '\\n' .. out)\n"
    "      local out2 = yaml.dump(v2)\n"
    "      assert(out2 == out, 'yaml.dump of what its output loads to differs:\\n' .. out .. '---\\n' .. tostring(out2))\n"
    "    else\n"
    "      assert(type(derr) == 'string', 'yaml.dump: no error message')\n"
    "    end\n"
    "  end\n"
    "  local compiled, errs = config.load_string(text, 'fuzz.yaml')\n"
    "  if compiled == nil then\n"
    "    assert(type(errs) == 'table' and #errs > 0, 'config rejected without a message')\n"
    "    for _, e in ipairs(errs) do assert(type(e) == 'string', 'config error is not a string') end\n"
    "  else\n"
    "    assert(type(compiled) == 'table' and compiled.hash, 'compiled config without a hash')\n"
    "  end\n"
    "end\n";

static lua_State *L;
static int fn_ref;
static unsigned runs;

static int traceback(lua_State *S)
{
    luaL_traceback(S, S, lua_tostring(S, 1), 1);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L) {
        L = fuzz_vm();
        if (luaL_loadbuffer(L, driver, sizeof driver - 1, "=fuzz_config") != 0 || lua_pcall(L, 0, 1, 0) != 0) {
            fprintf(stderr, "fuzz_config: %s\n", lua_tostring(L, -1));
            abort();
        }
        fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pushcfunction(L, traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, -3) != 0) {
        fprintf(stderr, "fuzz_config: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_pop(L, 1);
    if (++runs % 256 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
