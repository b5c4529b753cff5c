-- gw.cli — the commands of the gw binary that are written in Lua: check, test, new-plugin.
local M = {}

--- gw check FILE: prints every error of the config, exit 1 when there is one.
function M.check(args)
  local file = args[1]
  if not file then
    io.stderr:write("usage: gw check FILE\n")
    return 2
  end
  local config = require("gw.config")
  local compiled, errs = config.load_file(file)
  if not compiled then
    for _, e in ipairs(errs) do io.stderr:write(e, "\n") end
    return 1
  end
  io.stdout:write(file, ": ok\n")
  return 0
end

--- gw test [busted args]: busted inside gw's own LuaJIT VM.
function M.test(args)
  _G.arg = args
  arg[0] = "gw test"
  require("gw")        -- the global gw.* API, as plugins see it
  require("gw.test")   -- gw.test.context for handler unit tests
  local runner = require("busted.runner")
  -- busted ends with os.exit(status); on failure under Lua 5.1 it raises error() instead,
  -- which means "exit 1" here.
  local ok = pcall(runner, { standalone = false })
  return ok and 0 or 1
end

--- gw new-plugin NAME [--dir DIR]: scaffolds a plugin with passing specs.
function M.new_plugin(args)
  local name, dir = nil, nil
  local i = 1
  while args[i] do
    if args[i] == "--dir" then dir = args[i + 1]; i = i + 2
    else name = name or args[i]; i = i + 1 end
  end
  if not name then
    io.stderr:write("usage: gw new-plugin NAME [--dir DIR]\n")
    return 2
  end
  local root, err = require("gw.scaffold").new_plugin(name, dir)
  if not root then
    io.stderr:write("gw new-plugin: ", err, "\n")
    return 1
  end
  io.stdout:write("created ", root, "/{handler.lua,schema.lua,README.md,spec/}\n",
                  "test it:  gw test ", root, "/spec\n")
  return 0
end

return M
