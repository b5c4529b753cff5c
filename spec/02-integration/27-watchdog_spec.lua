-- The worker watchdog (gw.worker_watchdog): a worker whose event loop has not turned for N
-- seconds — here a plugin stuck in an endless loop in access — is reported with its plugin, phase
-- and route, killed and replaced by the master; the other worker keeps serving meanwhile.
local helpers = require "spec.helpers"
local socket = require "socket"

local PLUGINS = helpers.repo .. "/spec/fixtures/watchdog-plugins"

local function config(watchdog)
  return {
    gw = { workers = 2, worker_watchdog = watchdog, plugins_path = { PLUGINS } },
    services = {
      { name = "echo", url = "echo://", routes = {
        { name = "spinning", paths = { "/spin" }, plugins = { { name = "spin" } } },
        { name = "ok", paths = { "/ok" } },
      } },
    },
  }
end

-- one request on a new connection; the status or nil, err
local function get(path, timeout)
  local ok, c = pcall(helpers.proxy_client, timeout or 3000)
  if not ok then return nil, c end
  local res, err = c:get(path)
  c:close()
  if not res then return nil, err end
  return res.status
end

-- sends a request and leaves the connection open without reading
local function send_only(path)
  local s = socket.tcp()
  s:settimeout(15)
  assert(s:connect("127.0.0.1", helpers.gw_info().proxy_port))
  assert(s:send("GET " .. path .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
  return s
end

-- a request keeps its worker busy for `seconds`; `after` seconds later no worker was replaced
local function busy_and_kept(seconds, after)
  local before = helpers.gw_worker_pids()
  helpers.clean_gw_log()
  assert.equal(200, get("/spin?busy=" .. seconds, (seconds + 10) * 1000))
  socket.sleep(after)
  assert.same(before, helpers.gw_worker_pids())
  assert.is_nil(helpers.gw_log():find("stalled", 1, true))
end

-- gw with two workers and the watchdog at `watchdog` seconds
local function start(watchdog)
  helpers.start_gw{ config = config(watchdog) }
  helpers.wait_until(function() return #helpers.gw_worker_pids() == 2 end, 10)
end

local function has(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

describe("worker watchdog", function()
  lazy_teardown(helpers.stop_all)

  describe("with gw.worker_watchdog = 2", function()
    lazy_setup(function() start(2) end)

    it("replaces a worker stuck in a plugin, logs plugin, phase and route, and keeps serving", function()
      local before = helpers.gw_worker_pids()
      helpers.clean_gw_log()
      local t0 = socket.gettime()
      local stuck = send_only("/spin?spin=1")
      -- the other worker answers meanwhile (a connection the stuck worker holds is its own)
      socket.sleep(0.3)
      local served = 0
      for _ = 1, 10 do
        if get("/ok", 3000) == 200 then served = served + 1 end
      end
      assert.equal(10, served)
      local line = helpers.wait_until(function()
        return helpers.gw_log():match("worker (%d+) stalled for [%d.]+s in plugin spin %(phase access%) on route spinning; replacing it")
      end, 15)
      local elapsed = socket.gettime() - t0
      assert(elapsed >= 2, "reported after " .. elapsed .. " s, before the 2 s watchdog")
      local dead = tonumber(line)
      assert.is_true(has(before, dead))
      -- the stuck request's connection dies with its worker: closed, no response
      local data, err, partial = stuck:receive("*a")
      stuck:close()
      assert.equal("", data or partial or "", "the stuck request got bytes: " .. tostring(err))
      -- replaced: a new pid in its place, the other worker untouched
      local after = helpers.wait_until(function()
        local p = helpers.gw_worker_pids()
        return #p == 2 and not has(p, dead) and p
      end, 10)
      for _, p in ipairs(before) do
        if p ~= dead then assert.is_true(has(after, p), "the healthy worker was replaced too") end
      end
      assert.matches("worker " .. dead .. " died on signal 9, respawning", helpers.gw_log(), 1, true)
      -- and gw keeps serving, on both workers
      for _ = 1, 20 do assert.equal(200, get("/ok")) end
    end)

    it("leaves a worker that is busy for less than the watchdog alone", function()
      busy_and_kept(1, 2.5)
    end)
  end)

  describe("with gw.worker_watchdog = 0 (off)", function()
    lazy_setup(function() start(0) end)

    it("does not replace a worker that is busy for 3 s (longer than the 2 s watchdog above)", function()
      busy_and_kept(3, 0.3)
    end)
  end)

  describe("a plugin stuck in init_worker", function()
    lazy_setup(function()
      local cfg = config(1)
      cfg.gw.workers = 1
      cfg.services[1].routes[2].plugins = { { name = "spin-init" } }
      helpers.start_gw{ config = cfg, env = { GW_SPIN_INIT = "1" } }
    end)

    it("is reported with its phase and no route, and replaced each period; gw still stops", function()
      local first = helpers.wait_until(function() return helpers.gw_worker_pids()[1] end, 5)
      local line = helpers.wait_until(function()
        return helpers.gw_log():match("worker (%d+) stalled for [%d.]+s in plugin spin%-init %(phase init_worker%); replacing it")
      end, 10)
      assert.equal(first, tonumber(line))
      helpers.wait_until(function()
        local p = helpers.gw_worker_pids()[1]
        return p and p ~= first
      end, 5)
      -- a stuck worker never runs its SIGTERM handler: the watchdog still ends it, and the master
      local t0 = socket.gettime()
      assert.is_true(helpers.stop_gw("TERM", 10))
      assert(socket.gettime() - t0 < 5, "stopping took " .. (socket.gettime() - t0) .. " s")
    end)
  end)

  it("rejects a negative or fractional watchdog", function()
    for _, v in ipairs({ "-1", "1.5", '"x"' }) do
      local rc, out = helpers.gw_check("_format_version: \"3.0\"\ngw:\n  worker_watchdog: " .. v .. "\n")
      assert.are_not.equal(0, rc)
      assert.matches("gw.worker_watchdog", out, 1, true)
    end
  end)
end)
