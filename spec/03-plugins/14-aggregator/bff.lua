-- Starts spec/fixtures/bff_upstream.py (order, customer and inventory backends) for the
-- aggregator specs with helpers.start_fixture (free ports, up once it prints "ready");
-- helpers.stop_all stops it too (it stops every spawned process).
local helpers = require "spec.helpers"

local M = {}

--- Starts one fixture process serving `roles` (default orders, customers, inventory, all), each
-- on a free port. Returns { ROLE = port, ... } and the process.
function M.start(roles)
  roles = roles or { "orders", "customers", "inventory", "all" }
  local list, proc = helpers.start_fixture{ script = "spec/fixtures/bff_upstream.py", kind = "bff", ports = #roles,
    args = function(p)
      local args = {}
      for i, role in ipairs(roles) do args[#args + 1] = "--port"; args[#args + 1] = role .. "=" .. p[i] end
      return args
    end }
  local ports = {}
  for i, role in ipairs(roles) do ports[role] = list[i] end
  return ports, proc
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
