-- GET /metrics on the admin API: Prometheus text that promtool accepts, with the request figures
-- summed over the workers (shared memory), labelled by service, route, method and status (never
-- the raw path), the upstream latency, bandwidth, process gauges, shared dicts, and the figures
-- of the bundled plugins (rate-limiting rejections, proxy-cache statuses, circuit states).
local helpers = require "spec.helpers"

-- the samples of a text exposition: { ["name{labels}"] = value }
local function samples(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, 1) ~= "#" then
      local k, v = line:match("^(%S+) (%S+)$")
      if not k then k, v = line:match("^(.-}) (%S+)$") end
      assert(k, "not a sample line: " .. line)
      out[k] = tonumber(v) or v
    end
  end
  return out
end

local function scrape()
  local admin = helpers.admin_client()
  local res = assert(admin:get("/metrics", { headers = { Authorization = "Bearer t0ken" } }))
  admin:close()
  local body = assert.res_status(200, res)
  assert.matches("^text/plain; version=0%.0%.4", res.headers["content-type"])
  return body, samples(body)
end

describe("/metrics #integration", function()
  local up, status_port

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "metrics" }
    status_port = helpers.get_free_port()
    helpers.start_gw{ config = {
      gw = { workers = 2, status_listen = "127.0.0.1:" .. status_port, admin_token = "t0ken" },
      services = {
        { name = "users", url = "http://127.0.0.1:" .. up[1],
          routes = { { name = "users-route", paths = { "/users" } } } },
        { name = "limited", url = "http://127.0.0.1:" .. up[1],
          routes = { { name = "limited-route", paths = { "/limited" } } },
          plugins = { { name = "rate-limiting", config = { minute = 2, limit_by = "service" } } } },
        { name = "cached", url = "http://127.0.0.1:" .. up[1],
          routes = { { name = "cached-route", paths = { "/cached" } } },
          plugins = { { name = "proxy-cache" } } },
        { name = "dead", url = "http://127.0.0.1:9", retries = 0,
          routes = { { name = "dead-route", paths = { "/dead" } } },
          plugins = { { name = "circuit-breaker", config = { min_requests = 2, failure_ratio = 0.5 } } } },
      },
    } }
    -- traffic, spread over both workers (a connection each)
    for i = 1, 10 do
      local c = helpers.proxy_client()
      assert.res_status(200, c:get("/users/" .. i))        -- ten raw paths, one route
      c:close()
    end
    local c = helpers.proxy_client()
    assert.res_status(201, c:post("/users/status/201", { body = "12345" }))
    for _ = 1, 3 do c:get("/limited/x") end
    for _ = 1, 2 do c:get("/cached/x") end
    for _ = 1, 3 do c:get("/dead/x") end
    assert.res_status(404, c:get("/nowhere"))
    c:close()
  end)
  lazy_teardown(helpers.stop_all)

  it("is valid Prometheus text (promtool check metrics)", function()
    local body = scrape()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(body)
    f:close()
    local p = assert(io.popen("promtool check metrics < " .. path .. " 2>&1; echo rc=$?"))
    local out = p:read("*a")
    p:close()
    os.remove(path)
    assert.matches("rc=0", out, 1, true)
  end)

  it("counts requests by service, route, method and status, summed over the workers", function()
    local _, s = scrape()
    assert.equal(10, s['gateway_requests_total{service="users",route="users-route",method="GET",status="200"}'])
    assert.equal(1, s['gateway_requests_total{service="users",route="users-route",method="POST",status="201"}'])
    assert.equal(1, s['gateway_requests_total{service="",route="",method="GET",status="404"}'])
    -- routes, never raw paths
    local _, s2 = scrape()
    for k in pairs(s2) do assert.not_matches("/users/", k, 1, true) end
  end)

  it("has a duration histogram whose count matches and whose buckets are cumulative", function()
    local _, s = scrape()
    local lbl = 'service="users",route="users-route",method="GET",status="200"'
    assert.equal(10, s["gateway_request_duration_seconds_count{" .. lbl .. "}"])
    assert.equal(10, s["gateway_request_duration_seconds_bucket{" .. lbl .. ',le="+Inf"}'])
    local sum = s["gateway_request_duration_seconds_sum{" .. lbl .. "}"]
    assert.is_true(sum > 0 and sum < 10)
    local prev = 0
    for _, le in ipairs{ "0.001", "0.005", "0.05", "0.5", "5", "30" } do
      local v = s["gateway_request_duration_seconds_bucket{" .. lbl .. ',le="' .. le .. '"}']
      assert.is_true(v >= prev, le)
      prev = v
    end
  end)

  it("has the upstream latency of proxied requests and the bytes both ways", function()
    local _, s = scrape()
    assert.equal(11, s['gateway_upstream_duration_seconds_count{service="users",route="users-route"}'])
    assert.is_true(s['gateway_bandwidth_bytes_total{service="users",route="users-route",direction="ingress"}'] > 11 * 20)
    assert.is_true(s['gateway_bandwidth_bytes_total{service="users",route="users-route",direction="egress"}'] > 11 * 100)
    -- a request gw answered itself did not go upstream
    assert.is_nil(s['gateway_upstream_duration_seconds_count{service="",route=""}'])
  end)

  it("shows the processes: workers, connections, Lua memory per worker, shared dicts", function()
    local _, s = scrape()
    assert.equal(2, s.gateway_workers)
    assert.is_true(s.gateway_connections_accepted_total >= 11)
    local lua = 0
    for k, v in pairs(s) do if k:find("^gateway_lua_memory_bytes{worker=") then lua = lua + 1; assert.is_true(v > 0) end end
    assert.equal(2, lua)
    assert.equal(1024 * 1024, s['gateway_shared_dict_capacity_bytes{dict="rate_limiting"}'])
    assert.is_true(s['gateway_shared_dict_entries{dict="rate_limiting"}'] >= 1)
  end)

  it("has the bundled plugins' figures", function()
    local _, s = scrape()
    assert.equal(1, s['gateway_rate_limiting_rejections_total{service="limited",route="limited-route"}'])
    assert.equal(1, s['gateway_proxy_cache_requests_total{service="cached",route="cached-route",status="Miss"}'])
    assert.equal(1, s['gateway_proxy_cache_requests_total{service="cached",route="cached-route",status="Hit"}'])
    assert.equal(1, s['gateway_circuit_breaker_state{name="dead",state="open"}'])
    assert.equal(0, s['gateway_circuit_breaker_state{name="dead",state="closed"}'])
  end)

  it("status_listen: /metrics and /status without the admin token, nothing else", function()
    local c = helpers.http_client("127.0.0.1", status_port)
    local res = assert(c:get("/metrics"))
    assert.matches("gateway_requests_total{", assert.res_status(200, res), 1, true)
    assert.res_status(200, c:get("/status"))
    assert.res_status(404, c:get("/config"))
    assert.res_status(405, c:post("/reload"))
    c:close()
    local admin = helpers.admin_client()
    assert.res_status(401, admin:get("/metrics"))
    admin:close()
  end)

  it("keeps counting across a reload (the table lives in the master's shared memory)", function()
    local _, before = scrape()
    local admin = helpers.admin_client()
    assert.res_status(200, admin:post("/reload", { headers = { Authorization = "Bearer t0ken" } }))
    admin:close()
    local c = helpers.proxy_client()
    assert.res_status(200, c:get("/users/after-reload"))
    c:close()
    local _, after = scrape()
    local k = 'gateway_requests_total{service="users",route="users-route",method="GET",status="200"}'
    assert.equal(before[k] + 1, after[k])
  end)
end)

describe("gw.metrics", function()
  local metrics = require "gw.metrics"

  it("refuses bad names, label counts, kinds and values", function()
    assert.has_error(function() metrics.counter("bad-name", "x") end)
    assert.has_error(function() metrics.counter("gateway_spec_ok_total", "x", { "le" }) end)
    local c = metrics.counter("gateway_spec_ok_total", "x", { "a" })
    assert.equal(c, metrics.counter("gateway_spec_ok_total", "x", { "a" }))
    assert.has_error(function() metrics.gauge("gateway_spec_ok_total", "x", { "a" }) end)
    assert.has_error(function() metrics.counter("gateway_spec_ok_total", "x", { "b" }) end)
    assert.has_error(function() c:inc(1, {}) end, "inc: expected 1 label value(s) (a)")
    assert.has_error(function() c:inc(-1, { "x" }) end, "inc: a counter only goes up")
    assert.is_nil(c.set)
    assert.is_nil(metrics.gauge("gateway_spec_g", "g").observe)
  end)
end)
