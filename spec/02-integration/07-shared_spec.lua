-- 07-shared: gw.shared dicts (gw.shared_dicts in the config) seen by every worker: atomic incr
-- from many concurrent requests over two workers adds up exactly, a value set by one worker is
-- read by the other, and the contents survive a SIGHUP reload and a worker respawn.
local helpers = require "spec.helpers"

local FIXTURES = helpers.repo .. "/spec/fixtures/plugins"

local ROUTES = {
  { name = "incr", paths = { "/incr" }, plugins = { { name = "code", config = { access = [[
    local v, err = gw.shared.counters:incr(gw.request.get_query_arg("k") or "hits", 1, 0)
    gw.response.exit(200, { v = v, err = err, pid = gw.worker().pid })
  ]] } } } },
  { name = "set", paths = { "/set" }, plugins = { { name = "code", config = { access = [[
    local q = gw.request.get_query()
    assert(gw.shared[q.dict]:set(q.k, q.v))
    gw.response.exit(200, { pid = gw.worker().pid })
  ]] } } } },
  { name = "get", paths = { "/get" }, plugins = { { name = "code", config = { access = [[
    local q = gw.request.get_query()
    local d = gw.shared[q.dict]
    gw.response.exit(200, { exists = d ~= nil, v = d and d:get(q.k) or gw.json.null,
                            pid = gw.worker().pid })
  ]] } } } },
}

local function config(port, up, dicts)
  return {
    _format_version = "3.0",
    gw = { listen = { "127.0.0.1:" .. port }, admin_listen = "off", workers = 2, error_log = "stderr",
           plugins_path = { FIXTURES }, shared_dicts = dicts },
    services = { { name = "s", url = "http://127.0.0.1:" .. up, routes = ROUTES } },
  }
end

local function call(path)
  local c = helpers.proxy_client(5000)
  local res = assert(c:get(path))
  c:close()
  assert.res_status(200, res)
  return assert(helpers.json_decode(res.body))
end

-- `conns` connections, each with `per` pipelined requests, all sent before any is read.
local function hammer(path, conns, per)
  local clients, pids = {}, {}
  local req = "GET " .. path .. " HTTP/1.1\r\nHost: x\r\n\r\n"
  for i = 1, conns do
    clients[i] = helpers.proxy_client(10000)
    assert(clients[i]:raw(req:rep(per)))
  end
  local n = 0
  for i = 1, conns do
    for _ = 1, per do
      local res = assert(clients[i]:read_response())
      assert.res_status(200, res)
      local d = helpers.json_decode(res.body)
      assert.is_nil(d.err)
      pids[d.pid] = true
      n = n + 1
    end
    clients[i]:close()
  end
  return n, pids
end

describe("gw.shared across workers #integration", function()
  local up, port, info

  lazy_setup(function()
    up = helpers.start_mock_upstream({ name = "shared" })
    port = helpers.get_free_port()
    info = helpers.start_gw({ config = config(port, up[1], { counters = "1m", other = "64k" }) })
    helpers.wait_until(function() return #helpers.gw_worker_pids() == 2 end, 5)
  end)
  lazy_teardown(helpers.stop_all)

  it("incr from many concurrent requests on two workers adds up exactly", function()
    local n, pids = hammer("/incr?k=hits", 40, 25)
    assert.equal(1000, n)
    local served = 0
    for _ in pairs(pids) do served = served + 1 end
    assert.equal(2, served, "both workers should have served some of 40 connections")
    assert.equal(1000, call("/get?dict=counters&k=hits").v)
  end)

  it("a value set by one worker is read by the other", function()
    local d = call("/set?dict=other&k=greeting&v=hello")
    local setter = d.pid
    local other = helpers.wait_until(function()
      local g = call("/get?dict=other&k=greeting")
      return g.pid ~= setter and g
    end, 10, 0.01)
    assert.equal("hello", other.v)
  end)

  it("an unconfigured dict is nil", function()
    local d = call("/get?dict=nope&k=x")
    assert.is_false(d.exists)
  end)

  it("contents survive a SIGHUP reload; a dict added by the reload is there", function()
    local before = call("/get?dict=counters&k=hits").v
    assert.is_true(before >= 1000)
    local old = helpers.gw_worker_pids()
    helpers.write_file(info.config_file, helpers.json_encode(
      config(port, up[1], { counters = "1m", other = "64k", added = "64k" }), "  "))
    helpers.reload_gw()
    helpers.wait_until(function()
      local p = helpers.gw_worker_pids()
      return #p == 2 and p[1] ~= old[1] and p[1] ~= old[2] and p[2] ~= old[1] and p[2] ~= old[2]
    end, 5)
    local d = call("/get?dict=counters&k=hits")
    assert.equal(before, d.v)
    assert.equal("hello", call("/get?dict=other&k=greeting").v)
    local a = call("/get?dict=added&k=x")
    assert.is_true(a.exists)
    -- and the new generation keeps counting exactly
    local n = hammer("/incr?k=hits", 10, 10)
    assert.equal(before + n, call("/get?dict=counters&k=hits").v)
  end)

  it("contents survive a worker killed with SIGKILL", function()
    local before = call("/get?dict=counters&k=hits").v
    local pids = helpers.gw_worker_pids()
    helpers.execute("kill -9 " .. pids[1])
    helpers.wait_until(function()
      local p = helpers.gw_worker_pids()
      return #p == 2 and p[1] ~= pids[1] and p[2] ~= pids[1]
    end, 5)
    local n = hammer("/incr?k=hits", 10, 10)
    assert.equal(before + n, call("/get?dict=counters&k=hits").v)
  end)
end)
