-- circuit-breaker in a running gw (two workers) against a real mock upstream: /status/500 fails,
-- /delay/MS times out. The mock's /stats shows the upstream is never touched while open.
local helpers = require "spec.helpers"
local cjson = require "cjson"

describe("circuit-breaker (integration)", function()
  local up, client, admin, dead

  -- requests the mock saw, not counting the /stats requests that asked
  local asked = 0
  local function hits()
    local n = helpers.mock_stats(up[1]).requests - asked
    asked = asked + 1
    return n
  end

  local function get(path, headers)
    return assert(client:get(path, { headers = headers }))
  end

  local function log_has(text)
    return helpers.wait_until(function()
      return (helpers.gw_log() or ""):find(text, 1, true) ~= nil
    end, 5)
  end

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "cb-up" }
    local base = "http://127.0.0.1:" .. up[1]
    local function svc(name, config, extra)
      local s = { name = name, url = base, routes = { { paths = { "/" .. name } } },
                  plugins = { { name = "circuit-breaker", config = config } } }
      for k, v in pairs(extra or {}) do s[k] = v end
      return s
    end
    dead = helpers.get_free_port()          -- nothing listens there: connect errors (502)
    helpers.start_gw{ config = {
      gw = { workers = 2, shared_dicts = { circuit_breaker = "1m" } },
      upstreams = {
        { name = "pool", targets = { { target = "127.0.0.1:" .. up[1] }, { target = "127.0.0.1:" .. dead } } },
      },
      services = {
        { name = "pertarget", url = "http://pool", retries = 0, routes = { { paths = { "/pertarget" } } },
          plugins = { { name = "circuit-breaker", config = { per_target = true, consecutive_failures = 2, timeout = 60 } } } },
        svc("trip", { min_requests = 3, failure_ratio = 0.5, timeout = 1, max_requests = 2 }),
        svc("halfopen", { consecutive_failures = 2, timeout = 1, max_requests = 2 }),
        svc("cached", { consecutive_failures = 2, timeout = 60, fallback_cache = true,
                        fallback_status = 502, fallback_body = "down", fallback_headers = { ["Content-Type"] = "text/plain" } }),
        svc("slow", { consecutive_failures = 2, timeout = 60, failure_statuses = { 599 } }, { read_timeout = 200 }),
        svc("workers", { consecutive_failures = 3, timeout = 60 }),
        svc("interval", { min_requests = 2, failure_ratio = 1, interval = 1, timeout = 60 }),
        svc("consec", { consecutive_failures = 2, min_requests = 100, timeout = 60 }),
      },
    } }
    client = helpers.proxy_client()
    admin = helpers.admin_client()
  end)

  lazy_teardown(function() helpers.stop_all() end)

  it("trips after min_requests at the failure ratio, then never touches the upstream", function()
    assert.res_status(200, get("/trip/ok"))
    assert.res_status(500, get("/trip/status/500"))
    assert.res_status(500, get("/trip/status/500"))     -- 3 requests, 2/3 failed >= 0.5: open
    assert.is_true(log_has("circuit trip: closed -> open"))
    local before = hits()
    for _ = 1, 10 do
      local res = get("/trip/ok")
      assert.equal("service unavailable: circuit open", cjson.decode(assert.res_status(503, res)).message)
      assert.equal("open", assert.response(res).has.header("X-Circuit-Breaker"))
    end
    assert.equal(before, hits())
  end)

  it("goes half-open after timeout, lets max_requests through, closes on their success", function()
    helpers.sleep(1.1)
    local before = hits()
    assert.res_status(200, get("/trip/ok"))
    assert.res_status(200, get("/trip/ok"))
    assert.is_true(log_has("circuit trip: open -> half_open"))
    assert.is_true(log_has("circuit trip: half_open -> closed"))
    assert.equal(before + 2, hits())
    assert.res_status(200, get("/trip/ok"))
  end)

  it("in half-open lets only max_requests in at once, and reopens on a failure", function()
    assert.res_status(500, get("/halfopen/status/500"))
    assert.res_status(500, get("/halfopen/status/500"))
    assert.res_status(503, get("/halfopen/ok"))
    helpers.sleep(1.1)
    -- three at once while half-open: two reach the upstream, the third gets the fallback
    local cs = {}
    for i = 1, 3 do
      cs[i] = helpers.proxy_client()
      assert(cs[i]:raw("GET /halfopen/delay/400 HTTP/1.1\r\nHost: x\r\n\r\n"))
      helpers.sleep(0.05)
    end
    local statuses = {}
    for i = 1, 3 do
      local res = assert(cs[i]:read_response())
      statuses[#statuses + 1] = res.status
      cs[i]:close()
    end
    table.sort(statuses)
    assert.same({ 200, 200, 503 }, statuses)
    assert.is_true(log_has("circuit halfopen: half_open -> closed"))
    -- trip again, wait, and fail the probe: open again
    assert.res_status(500, get("/halfopen/status/500"))
    assert.res_status(500, get("/halfopen/status/500"))
    helpers.sleep(1.1)
    assert.res_status(500, get("/halfopen/status/500"))
    assert.is_true(log_has("circuit halfopen: half_open -> open"))
    local before = hits()
    assert.res_status(503, get("/halfopen/ok"))
    assert.equal(before, hits())
  end)

  it("serves the last good response of that path while open, the static fallback otherwise", function()
    local good = assert.res_status(200, get("/cached/page?x=1"))
    assert.res_status(500, get("/cached/status/500"))
    assert.res_status(500, get("/cached/status/500"))
    local before = hits()
    local res = get("/cached/page?x=1")
    assert.equal(good, assert.res_status(200, res))
    assert.equal("open", assert.response(res).has.header("X-Circuit-Breaker"))
    assert.equal("application/json", assert.response(res).has.header("Content-Type"))
    res = get("/cached/never-seen")
    assert.equal("down", assert.res_status(502, res))
    assert.equal("text/plain", assert.response(res).has.header("Content-Type"))
    assert.equal("open", assert.response(res).has.header("X-Circuit-Breaker"))
    assert.equal(before, hits())
  end)

  it("resets the counts every interval while closed", function()
    assert.res_status(500, get("/interval/status/500"))
    helpers.sleep(1.2)
    assert.res_status(500, get("/interval/status/500"))   -- a new interval: 1 request, not 2
    assert.res_status(500, get("/interval/status/500"))   -- 2 of 2 failed: open
    assert.res_status(503, get("/interval/ok"))
  end)

  it("a success breaks a run of consecutive failures", function()
    assert.res_status(500, get("/consec/status/500"))
    assert.res_status(200, get("/consec/ok"))
    assert.res_status(500, get("/consec/status/500"))
    assert.res_status(200, get("/consec/ok"))
    assert.res_status(500, get("/consec/status/500"))
    assert.res_status(500, get("/consec/status/500"))
    assert.res_status(503, get("/consec/ok"))
  end)

  it("answers HEAD from the cached GET while open", function()
    local res = assert(client:send{ method = "HEAD", path = "/cached/page?x=1" })
    assert.res_status(200, res)
    assert.equal("open", assert.response(res).has.header("X-Circuit-Breaker"))
  end)

  it("counts gw's 504 for an upstream timeout as a failure", function()
    assert.res_status(504, get("/slow/delay/1000"))
    assert.res_status(504, get("/slow/delay/1000"))
    assert.is_true(log_has("circuit slow: closed -> open"))
    assert.res_status(503, get("/slow/ok"))
  end)

  it("is one circuit across the two workers", function()
    assert.equal(2, #helpers.gw_worker_pids())
    -- each failure on a new connection: the workers take turns accepting, all count together
    for _ = 1, 3 do
      local c = helpers.proxy_client()
      assert.res_status(500, assert(c:get("/workers/status/500", { headers = { Connection = "close" } })))
      c:close()
    end
    local before = hits()
    for _ = 1, 20 do
      local c = helpers.proxy_client()
      assert.res_status(503, assert(c:get("/workers/ok", { headers = { Connection = "close" } })))
      c:close()
    end
    assert.equal(before, hits())
  end)

  it("per_target: the target that fails is cut off, the other keeps serving", function()
    local n502 = 0
    for _ = 1, 40 do
      local res = get("/pertarget/ok")
      if res.status == 502 then n502 = n502 + 1 else assert.res_status(200, res) end
    end
    assert.equal(2, n502)                    -- two connect errors open that target's circuit
    assert.is_true(log_has("circuit pertarget@127.0.0.1:" .. dead .. ": closed -> open"))
    local body = cjson.decode(assert.res_status(200, assert(admin:get("/circuit-breakers"))))
    local by = {}
    for _, c in ipairs(body.data) do by[c.name] = c end
    assert(by["pertarget@127.0.0.1:" .. dead], cjson.encode(body))
    assert.equal("open", by["pertarget@127.0.0.1:" .. dead].state)
    assert.equal("closed", by["pertarget@127.0.0.1:" .. up[1]].state)
  end)

  it("shows every circuit in the admin API", function()
    local body = cjson.decode(assert.res_status(200, assert(admin:get("/circuit-breakers"))))
    local by = {}
    for _, c in ipairs(body.data) do by[c.name] = c end
    assert.equal("closed", by.trip.state)
    assert.equal("open", by.cached.state)
    assert.equal("open", by.workers.state)
    assert.equal("circuit_breaker", by.workers.dict)
    assert.is_true(by.workers.generation >= 1)
  end)
end)
