-- Starts spec/fixtures/bff_upstream.py (order, customer and inventory backends) for the
-- aggregator specs, the way spec.helpers starts the mock upstream: helpers.spawn, then wait for
-- its "ready" line. helpers.stop_all stops it too (it stops every spawned process).
local helpers = require "spec.helpers"

local M = {}

local SCRIPT = helpers.repo .. "/spec/fixtures/bff_upstream.py"

local function python()
  local f = io.open("/usr/bin/python3", "rb")
  if f then f:close() return "/usr/bin/python3" end
  return "python3"
end

--- Starts one fixture process serving `roles` (default orders, customers, inventory, all), each
-- on a free port. Returns { ROLE = port, ... } and the process.
function M.start(roles)
  roles = roles or { "orders", "customers", "inventory", "all" }
  local last
  for _ = 1, 3 do                      -- a port taken between get_free_port and bind: retry
    local ports, args = {}, { helpers.shell_quote(python()), helpers.shell_quote(SCRIPT) }
    for _, role in ipairs(roles) do
      ports[role] = helpers.get_free_port()
      args[#args + 1] = "--port " .. role .. "=" .. ports[role]
    end
    local proc = helpers.spawn{ kind = "bff", cmd = table.concat(args, " "), marker = "bff_upstream.py" }
    local ok = pcall(helpers.wait_until, function()
      local log = helpers.read_file(proc.log) or ""
      if log:find("ready\n", 1, true) then return true end
      if not helpers.pid_alive(proc.pid) then error("exited") end
    end, 10, 0.02)
    if ok then return ports, proc end
    last = helpers.tail(proc.log)
    helpers.stop_process(proc, "KILL", 2)
  end
  error("bff_upstream.py did not start; log:\n" .. tostring(last), 2)
end

--- Stops a fixture process started by M.start.
function M.stop(proc)
  helpers.stop_process(proc, "TERM", 5)
end

--- The fixture's request counts by path (a fresh connection; /stats itself is not counted).
function M.counts(port, reset)
  local c = helpers.http_client("127.0.0.1", port, 5000)
  local res = assert(c:get(reset and "/stats/reset" or "/stats"))
  c:close()
  return assert(helpers.json_decode(res.body)).requests
end

return M
