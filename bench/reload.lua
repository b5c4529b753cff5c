-- bench/reload.lua — reload timings (run: bin/gw lua bench/reload.lua):
--   * POST /config with 1,000 services and 5,000 routes: time for the POST, then time from its
--     answer until a route that only the new config has answers 200 (polled every 1 ms);
--   * while that happens, a client loops on an existing route: its slowest request during the
--     swap versus its median before it.
package.path = "spec/?.lua;" .. package.path
local helpers = require "spec.helpers"
local cjson = require "cjson"
local socket = require "socket"

local function big_config(tag, port, admin_port)
  local services = {}
  for i = 1, 1000 do
    local routes = {}
    for j = 1, 5 do routes[j] = { name = ("r%d-%d"):format(i, j), paths = { ("/s%d/r%d"):format(i, j) } } end
    services[i] = { name = "s" .. i, url = "echo://", routes = routes }
  end
  services[1].routes[1].paths = { "/s1/r1", "/" .. tag }
  return {
    _format_version = "3.0",
    gw = { listen = { "127.0.0.1:" .. port }, admin_listen = "127.0.0.1:" .. admin_port, workers = 1, error_log = "stderr" },
    services = services,
  }
end

local port, admin_port = helpers.get_free_port(), helpers.get_free_port()
local gw = helpers.start_gw{ config = big_config("first", port, admin_port) }
local c = helpers.proxy_client()
local lat = {}
for i = 1, 2000 do
  local t0 = socket.gettime()
  assert(c:get("/s500/r3").status == 200)
  lat[#lat + 1] = socket.gettime() - t0
end
table.sort(lat)
local median = lat[math.floor(#lat / 2) + 1]

local body = cjson.encode(big_config("second", port, admin_port))
-- the request loop runs in a forked process so it overlaps the swap
local loop_out = os.tmpname()
local loop = io.popen(("%s lua %s/bench/reload_loop.lua %d %s"):format(helpers.gw_bin, helpers.repo, port, loop_out), "r")
socket.sleep(0.3)
local admin = helpers.admin_client(30000)
local t0 = socket.gettime()
local res = admin:post("/config", { body = body, headers = { ["Content-Type"] = "application/json" } })
local t1 = socket.gettime()
assert(res.status == 201, res.body)
local probe = helpers.proxy_client()
while true do
  local r = probe:get("/second")
  if r and r.status == 200 then break end
  probe:close()
  probe = helpers.proxy_client()
  socket.sleep(0.001)
end
local t2 = socket.gettime()
loop:read("*a")
loop:close()
local worst = tonumber(helpers.read_file(loop_out))
os.remove(loop_out)
print(("config: 1,000 services, 5,000 routes (%d bytes of JSON)"):format(#body))
print(("POST /config answered in %.0f ms (parse, validate, compile, fork, new workers ready)"):format((t1 - t0) * 1000))
print(("new config served %.1f ms after the POST answered"):format((t2 - t1) * 1000))
print(("requests on an existing route: median %.2f ms before; slowest during the swap %.2f ms"):format(median * 1000, worst * 1000))
helpers.stop_all()
