-- rate-limiting, policy redis: real gw instances in front of a real redis-server (started here on
-- a fixed port, so it can be killed and brought back where the config points).
-- Counting tests use day windows (a window boundary mid-test would reset them).
local helpers = require "spec.helpers"
local socket = require "socket"

local YAML = [[
_format_version: "3.0"
gw:
  listen: ["127.0.0.1:{PROXY_PORT}"]
  admin_listen: "127.0.0.1:{ADMIN_PORT}"
  workers: 2

services:
  - name: echo
    url: echo://
    routes:
      - name: shared
        paths: ["/shared"]
        plugins:
          - name: rate-limiting
            config: { day: 10, limit_by: ip, policy: redis, redis_host: 127.0.0.1, redis_port: {REDIS} }
      - name: multi
        paths: ["/multi"]
        plugins:
          - name: rate-limiting
            config: { day: 3, month: 100, limit_by: header, header_name: X-Who, policy: redis,
                      redis_host: 127.0.0.1, redis_port: {REDIS} }
      - name: tolerant
        paths: ["/tolerant"]
        plugins:
          - name: rate-limiting
            config: { day: 1000, limit_by: ip, policy: redis, redis_host: 127.0.0.1, redis_port: {REDIS},
                      redis_timeout: 300 }
      - name: strict
        paths: ["/strict"]
        plugins:
          - name: rate-limiting
            config: { day: 1000, limit_by: ip, policy: redis, redis_host: 127.0.0.1, redis_port: {REDIS},
                      redis_timeout: 300, fault_tolerant: false }
      - name: back
        paths: ["/back"]
        plugins:
          - name: rate-limiting
            config: { day: 2, limit_by: ip, policy: redis, redis_host: 127.0.0.1, redis_port: {REDIS} }
      - name: sliding
        paths: ["/sliding"]
        plugins:
          - name: rate-limiting
            config: { second: 5, limit_by: ip, policy: redis, redis_host: 127.0.0.1, redis_port: {REDIS} }
      - name: open
        paths: ["/open"]
]]

local redis_port, redis_proc

local function start_redis()
  redis_proc = helpers.spawn{ kind = "redis-rl", marker = "redis-server",
    cmd = string.format("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no", redis_port) }
  assert(helpers.wait_until(function() return helpers.port_open(redis_port) end, 10))
end

local function stop_redis()
  helpers.stop_process(redis_proc, "KILL", 5)
  redis_proc = nil
end

local function redis_cli(...)
  local args = table.concat({ ... }, " ")
  local p = io.popen(string.format("redis-cli -p %d %s 2>&1", redis_port, args))
  local out = p:read("*a")
  p:close()
  return out
end

local function get_at(port, path, headers)
  local c = helpers.http_client("127.0.0.1", port)
  local res = c:get(path, { headers = headers })
  c:close()
  return res
end

describe("rate-limiting policy redis (integration)", function()
  local a_port, b_port, b_proc

  lazy_setup(function()
    redis_port = helpers.get_free_port()
    start_redis()
    local info = helpers.start_gw{ yaml = YAML, vars = { REDIS = redis_port } }
    a_port = info.proxy_port
    -- a second gw node with the same config
    b_port = helpers.get_free_port()
    local dir = helpers.tmpdir("gw-b")
    local text = YAML:gsub("{PROXY_PORT}", tostring(b_port)):gsub("{ADMIN_PORT}", tostring(helpers.get_free_port()))
      :gsub("{REDIS}", tostring(redis_port))
    helpers.write_file(dir .. "/gateway.yaml", text)
    b_proc = helpers.spawn{ kind = "gw-b", marker = dir, log = dir .. "/gw.log",
      cmd = string.format("%s run -c %s", helpers.gw_bin, dir .. "/gateway.yaml") }
    assert(helpers.wait_until(function() return helpers.port_open(b_port) end, 10))
  end)

  lazy_teardown(function()
    helpers.stop_process(b_proc, "TERM", 5)
    helpers.stop_all()
    if redis_proc then stop_redis() end
  end)

  it("two gw nodes share one limit exactly", function()
    local ok, refused = 0, 0
    for i = 1, 30 do
      local res = get_at(i % 2 == 0 and a_port or b_port, "/shared")
      if res.status == 200 then ok = ok + 1 elseif res.status == 429 then refused = refused + 1 end
    end
    assert.equal(10, ok)
    assert.equal(20, refused)
  end)

  it("the window slides: a burst at the end of one second still counts early in the next", function()
    -- wait for the last quarter of a second on Redis's clock, spend the limit there
    local function redis_now()
      local a, b = redis_cli("TIME"):match("(%d+)%s+(%d+)")
      return tonumber(a) + tonumber(b) / 1e6
    end
    local now = redis_now()
    local frac = now % 1
    socket.sleep(frac < 0.7 and (0.7 - frac) or (1.7 - frac))
    for _ = 1, 5 do assert.res_status(200, get_at(a_port, "/sliding")) end
    -- just after the boundary: a fixed window would start again at 0; the sliding count is
    -- still about 5 (the previous second weighs in almost fully)
    now = redis_now()
    socket.sleep(math.ceil(now) - now + 0.02)
    assert.res_status(429, get_at(b_port, "/sliding"))
    -- two seconds later the previous window no longer counts
    socket.sleep(2)
    assert.res_status(200, get_at(a_port, "/sliding"))
  end)

  it("counts every window in one step, refused requests not counted; headers", function()
    local res = get_at(a_port, "/multi", { ["X-Who"] = "h1" })
    assert.res_status(200, res)
    assert.equal("3", res.headers["x-ratelimit-limit-day"])
    assert.equal("2", res.headers["x-ratelimit-remaining-day"])
    assert.equal("100", res.headers["x-ratelimit-limit-month"])
    assert.equal("99", res.headers["x-ratelimit-remaining-month"])
    get_at(b_port, "/multi", { ["X-Who"] = "h1" })
    get_at(a_port, "/multi", { ["X-Who"] = "h1" })
    for _ = 1, 3 do
      res = get_at(b_port, "/multi", { ["X-Who"] = "h1" })
      local body = assert.res_status(429, res)
      assert.same({ message = "API rate limit exceeded" }, helpers.json_decode(body))
      assert.truthy(tonumber(res.headers["retry-after"]) > 0)
      assert.equal("0", res.headers["x-ratelimit-remaining-day"])
      assert.equal("97", res.headers["x-ratelimit-remaining-month"])   -- refused: not counted
    end
    assert.res_status(200, get_at(a_port, "/multi", { ["X-Who"] = "h2" }))
  end)

  it("Redis paused: latency bounded by redis_timeout, other requests not blocked", function()
    assert.res_status(200, get_at(a_port, "/tolerant"))
    assert.matches("OK", redis_cli("CLIENT", "PAUSE", "2500"))
    -- a request waiting for Redis...
    local s = assert(socket.connect("127.0.0.1", a_port))
    local t0 = socket.gettime()
    s:send("GET /tolerant HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    -- ...does not hold up the worker's other requests (with 2 workers, try a few)
    for _ = 1, 4 do
      local t1 = socket.gettime()
      assert.res_status(200, get_at(a_port, "/open"))
      assert.truthy(socket.gettime() - t1 < 0.2)
    end
    s:settimeout(5)
    local line = s:receive("*l")
    s:close()
    local dt = socket.gettime() - t0
    assert.matches("200", line)
    assert.truthy(dt >= 0.25 and dt < 1.0, "took " .. dt)
    -- strict: 500 within the timeout
    local t2 = socket.gettime()
    assert.res_status(500, get_at(a_port, "/strict"))
    assert.truthy(socket.gettime() - t2 < 1.0)
    helpers.sleep(2.6)
    assert.res_status(200, get_at(a_port, "/strict"))
  end)

  it("Redis killed mid-test: fault tolerant passes, strict 500; limiting resumes when it is back", function()
    assert.same({ 200, 200, 429 }, { get_at(a_port, "/back").status, get_at(b_port, "/back").status,
                                      get_at(a_port, "/back").status })
    stop_redis()
    for _ = 1, 3 do
      local t0 = socket.gettime()
      assert.res_status(200, get_at(a_port, "/tolerant"))
      assert.res_status(200, get_at(b_port, "/back"))     -- over the limit, but nothing to count with
      assert.res_status(500, get_at(a_port, "/strict"))
      assert.truthy(socket.gettime() - t0 < 1.0)
    end
    assert(helpers.wait_until(function()
      return helpers.gw_log():find("rate-limiting: redis", 1, true)
    end, 5))
    start_redis()   -- empty: counting starts over
    assert.same({ 200, 200, 429 }, { get_at(a_port, "/back").status, get_at(b_port, "/back").status,
                                      get_at(a_port, "/back").status })
    assert.res_status(200, get_at(a_port, "/strict"))
  end)
end)
