-- Redis faults under gw.redis, through the rate-limiting plugin (policy redis): Redis killed,
-- paused (SIGSTOP) and slow. Each answer follows the plugin's documented fault policy
-- (plugins/rate-limiting/README.md): fault_tolerant lets the request through without the
-- rate-limit headers, otherwise 500 with a JSON body; either way within redis_timeout, never
-- hanging, and the counting comes back when Redis does.
local helpers = require "spec.helpers"
local socket = require "socket"
local cjson = require "cjson"

local TIMEOUT_MS = 400
local redis_port, redis_proc

local function start_redis(port)
  local dir = helpers.tmpdir("redis-faults")
  redis_proc = helpers.spawn{
    kind = "redis", marker = "redis-server", log = dir .. "/redis.log",
    cmd = string.format("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --daemonize no --dir %s",
      port, helpers.shell_quote(dir)),
  }
  helpers.wait_until(function() return helpers.port_open(port) end, 10)
end

local function redis_signal(sig)
  helpers.execute("kill -" .. sig .. " " .. redis_proc.pid)
end

local function rl_plugin(tolerant)
  return { name = "rate-limiting", config = { minute = 100000, limit_by = "ip", policy = "redis",
    redis_host = "127.0.0.1", redis_port = redis_port, redis_timeout = TIMEOUT_MS, fault_tolerant = tolerant } }
end

-- a request on a new connection: response, seconds
local function get(path)
  local c = helpers.proxy_client(10000)
  local t0 = socket.gettime()
  local res, err = c:get(path)
  c:close()
  return assert(res, err), socket.gettime() - t0
end

local function counted(res)
  return res.status == 200 and res.headers["x-ratelimit-remaining-minute"] ~= nil
end

local function fd_count(pid)
  local _, out = helpers.execute("ls /proc/" .. pid .. "/fd | wc -l")
  return tonumber(out:match("%d+"))
end

describe("Redis faults (rate-limiting, policy redis)", function()
  lazy_setup(function()
    redis_port = helpers.get_free_port()
    start_redis(redis_port)
    helpers.start_gw{ config = {
      services = { { name = "echo", url = "echo://", routes = {
        { name = "tolerant", paths = { "/tolerant" }, plugins = { rl_plugin(true) } },
        { name = "strict", paths = { "/strict" }, plugins = { rl_plugin(false) } },
        { name = "plain", paths = { "/plain" } },
      } } },
    } }
  end)
  lazy_teardown(function()
    if redis_proc then redis_signal("CONT"); helpers.stop_process(redis_proc, "KILL", 2) end
    helpers.stop_all()
  end)

  it("counts while Redis is healthy", function()
    assert.is_true(counted(get("/tolerant")))
    assert.is_true(counted(get("/strict")))
  end)

  describe("paused (SIGSTOP)", function()
    after_each(function() redis_signal("CONT") end)

    it("fault_tolerant: the request passes uncounted after at most redis_timeout", function()
      assert.is_true(counted(get("/tolerant")))   -- the pooled connection exists
      helpers.clean_gw_log()
      redis_signal("STOP")
      for _ = 1, 3 do
        local res, took = get("/tolerant")
        assert.equal(200, res.status)
        assert.is_nil(res.headers["x-ratelimit-remaining-minute"])
        assert(took >= TIMEOUT_MS / 1000 * 0.8 and took < TIMEOUT_MS / 1000 + 1.5, "took " .. took .. " s")
      end
      assert.matches("rate-limiting: redis: timeout (fault_tolerant: request let through)", helpers.gw_log(), 1, true)
    end)

    it("not fault_tolerant: 500 with a JSON body after at most redis_timeout", function()
      redis_signal("STOP")
      local res, took = get("/strict")
      assert.equal(500, res.status)
      assert.same({ message = "An unexpected error occurred" }, cjson.decode(res.body))
      assert(took < TIMEOUT_MS / 1000 + 1.5, "took " .. took .. " s")
    end)

    it("requests that do not use Redis are not held up meanwhile", function()
      redis_signal("STOP")
      -- one request waits for Redis while others are served
      local s = socket.tcp()
      s:settimeout(10)
      assert(s:connect("127.0.0.1", helpers.gw_info().proxy_port))
      assert(s:send("GET /strict HTTP/1.1\r\nHost: x\r\n\r\n"))
      local res, took = get("/plain")
      assert.equal(200, res.status)
      assert(took < TIMEOUT_MS / 1000, "a request without Redis took " .. took .. " s")
      local line = s:receive("*l")
      s:close()
      assert.equal("HTTP/1.1 500 Internal Server Error", line)
    end)

    it("recovers when Redis continues, without leaking connections", function()
      local pid = helpers.gw_worker_pids()[1]
      assert.is_true(counted(get("/tolerant")))
      local base = fd_count(pid)
      redis_signal("STOP")
      for _ = 1, 5 do assert.equal(200, get("/tolerant").status) end
      redis_signal("CONT")
      helpers.wait_until(function() return counted(get("/tolerant")) end, 5)
      assert.is_true(counted(get("/strict")))
      -- each timed-out call retired its connection: one live connection again, not five
      helpers.wait_until(function() return fd_count(pid) <= base end, 5)
    end)
  end)

  it("slow (paused for less than redis_timeout): the request waits and is counted", function()
    assert.is_true(counted(get("/tolerant")))
    -- resumed 150 ms later by a background shell, while the request waits for the answer
    helpers.execute(string.format("kill -STOP %d; (sleep 0.15; kill -CONT %d) >/dev/null 2>&1 &",
      redis_proc.pid, redis_proc.pid))
    local res, took = get("/tolerant")
    assert.is_true(counted(res))
    assert(took >= 0.1, "took " .. took .. " s: the pause did not happen")
  end)

  describe("killed", function()
    it("fault_tolerant passes at once, strict answers 500; counting resumes when Redis is back", function()
      assert.is_true(counted(get("/tolerant")))
      helpers.clean_gw_log()
      helpers.stop_process(redis_proc, "KILL", 2)
      for _ = 1, 3 do
        local res, took = get("/tolerant")
        assert.equal(200, res.status)
        assert.is_nil(res.headers["x-ratelimit-remaining-minute"])
        assert(took < TIMEOUT_MS / 1000 + 1, "took " .. took .. " s")
        res = get("/strict")
        assert.equal(500, res.status)
        assert.same({ message = "An unexpected error occurred" }, cjson.decode(res.body))
      end
      assert.matches("rate-limiting: redis: ", helpers.gw_log(), 1, true)
      start_redis(redis_port)
      helpers.wait_until(function() return counted(get("/tolerant")) end, 5)
      assert.is_true(counted(get("/strict")))
    end)
  end)
end)
