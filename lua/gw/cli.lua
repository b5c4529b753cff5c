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
  for _, w in ipairs(compiled.tls and compiled.tls.warnings or {}) do io.stderr:write("warning: ", w, "\n") end
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
  -- which means "exit 1" here. The exit closes the VM first (LuaJIT's os.exit(code, true)):
  -- __gc frees what C libraries allocated for Lua objects, so leak checkers see none of it.
  local exit = os.exit
  os.exit = function(code, close) return exit(code, close == nil or close) end
  local ok = pcall(runner, { standalone = false })
  return ok and 0 or 1
end

--- gw reload [-c FILE]: POST /reload to the admin API named in FILE (default gateway.yaml), as
-- SIGHUP does. Prints `reloaded: generation N`, or the errors of a rejected reload (exit 1);
-- exit 1 too when gw is not reachable.
function M.reload(args)
  local file = "gateway.yaml"
  if args[1] == "-c" or args[1] == "--config" then file = args[2] end
  if not file then io.stderr:write("usage: gw reload [-c FILE]\n") return 2 end
  local compiled, errs = require("gw.config").load_file(file)
  if not compiled then
    for _, e in ipairs(errs) do io.stderr:write(e, "\n") end
    return 1
  end
  local a = compiled.gw.admin_listen
  if not a then io.stderr:write("gw reload: ", file, " has no admin_listen (send SIGHUP to the master instead)\n") return 1 end
  local host = (a.host == "0.0.0.0" or a.host == "::" or a.host == "[::]") and "127.0.0.1" or a.host:gsub("^%[(.*)%]$", "%1")
  local socket = require "socket"
  local sock = socket.tcp()
  sock:settimeout(60)
  local ok, err = sock:connect(host, a.port)
  if not ok then io.stderr:write("gw reload: cannot reach the admin API at ", host, ":", a.port, ": ", err, "\n") return 1 end
  local auth = compiled.gw.admin_token and ("Authorization: Bearer " .. compiled.gw.admin_token .. "\r\n") or ""
  sock:send("POST /reload HTTP/1.1\r\nHost: " .. host .. "\r\nContent-Length: 0\r\n" .. auth .. "Connection: close\r\n\r\n")
  local resp = sock:receive("*a") or ""
  sock:close()
  local status = tonumber(resp:match("^HTTP/1%.%d (%d+)"))
  local body = resp:match("\r\n\r\n(.*)$") or ""
  -- one line a person can read (the JSON's key order is not stable); the raw body otherwise
  local j = require("cjson.safe").decode(body)
  if status == 200 and type(j) == "table" and j.generation then
    io.stdout:write("reloaded: generation ", tostring(j.generation), "\n")
    return 0
  end
  if type(j) == "table" and type(j.message) == "string" then
    io.stderr:write("gw reload: ", j.message, type(j.errors) == "table" and ":" or "", "\n")
    if type(j.errors) == "table" then
      for _, e in ipairs(j.errors) do io.stderr:write(tostring(e), "\n") end
    end
  else
    io.stderr:write("gw reload: ", tostring(status or "no answer"), " ", body, "\n")
  end
  return 1
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
