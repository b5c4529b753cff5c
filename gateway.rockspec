-- gateway.rockspec — the Lua half of gw as a LuaRocks package: the gw.* runtime modules, the
-- spec helpers for plugin authors, and (copied with the rock) the bundled plugins and
-- examples. The C runtime (bin/gw) is built by `make`; `luarocks make` installs what Lua needs.
rockspec_format = "3.0"
package = "gateway"
version = "0.1.0-1"
source = { url = "git+file://." }
description = {
  summary = "gw: a Lua-scriptable API gateway runtime (C core, LuaJIT plugins)",
  detailed = "Lua modules of the gw gateway: the gw.* plugin API, config compiler, schema checker, plugin loader, CLI and the busted spec helpers used to test plugins.",
  license = "MIT",
}
dependencies = { "lua >= 5.1" }
build = {
  type = "builtin",
  modules = {
      ["gw.admin"] = "lua/gw/admin.lua",
      ["gw.auth"] = "lua/gw/auth.lua",
      ["gw.cli"] = "lua/gw/cli.lua",
      ["gw.config"] = "lua/gw/config.lua",
      ["gw.http"] = "lua/gw/http.lua",
      ["gw"] = "lua/gw/init.lua",
      ["gw.ip"] = "lua/gw/ip.lua",
      ["gw.json"] = "lua/gw/json.lua",
      ["gw.jsonschema"] = "lua/gw/jsonschema.lua",
      ["gw.metrics"] = "lua/gw/metrics.lua",
      ["gw.plugins"] = "lua/gw/plugins.lua",
      ["gw.redis"] = "lua/gw/redis.lua",
      ["gw.scaffold"] = "lua/gw/scaffold.lua",
      ["gw.schema"] = "lua/gw/schema.lua",
      ["gw.shared"] = "lua/gw/shared.lua",
      ["gw.test"] = "lua/gw/test.lua",
      ["gw.transform"] = "lua/gw/transform.lua",
      ["spec.helpers"] = "spec/helpers.lua",
  },
  copy_directories = { "plugins", "examples" },
}
