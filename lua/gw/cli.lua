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
  local runner = require("busted.runner")
  -- busted ends with os.exit(status); on failure under Lua 5.1 it raises error() instead,
  -- which means "exit 1" here.
  local ok = pcall(runner, { standalone = false })
  return ok and 0 or 1
end

return M
