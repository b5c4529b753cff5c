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

--- The seed's getOrderDetails as a mapping: { order: { ...order, customer: { name, email },
-- items: items.map(item => ({ ...item, availableQuantity: item.inventory })) } }.
M.SEED_RESPONSE = {
  order = {
    ["$merge"] = "$(calls.order.body)",
    customer = { name = "$(calls.customer.body.name)", email = "$(calls.customer.body.email)" },
    items = { ["$each"] = "$(calls.items.body)", ["$as"] = "item",
              ["$map"] = { ["$merge"] = "$(item)", availableQuantity = "$(item.inventory)" } },
  },
}

--- Points the example backends of a config text (127.0.0.1:9101 orders, :9102 customers,
-- :9103 inventory) at the fixture's ports; each must appear exactly once.
function M.substitute_ports(text, ports)
  for port, role in pairs{ [9101] = "orders", [9102] = "customers", [9103] = "inventory" } do
    local n
    text, n = text:gsub("127%.0%.0%.1:" .. port .. "/", "127.0.0.1:" .. ports[role] .. "/")
    assert(n == 1, "127.0.0.1:" .. port .. " appears " .. n .. " times")
  end
  return text
end

--- GET through a client: status, decoded JSON body, response.
function M.get(client, path)
  local res = assert(client:get(path))
  return res.status, require("cjson").decode(res.body), res
end

return M
