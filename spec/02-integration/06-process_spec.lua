-- 06-process: the master and its workers — worker count, respawn after a crash, reloads
-- (SIGHUP) of edited, broken and plugin-changing configs, graceful (SIGQUIT) and fast (SIGTERM)
-- stops, and config errors from `gw check` and from a refused start.
local helpers = require "spec.helpers"
local socket = require "socket"

local FIXTURES = helpers.repo .. "/spec/fixtures/plugins"

local PID_HEADER = [[gw.response.set_header("X-Pid", gw.worker().pid)
gw.response.set_header("X-Generation", gw.worker().generation)]]

-- A config table with fixed ports, so it can be rewritten for a reload.
local function config(port, opts)
  opts = opts or {}
  return {
    _format_version = "3.0",
    gw = { listen = { "127.0.0.1:" .. port }, admin_listen = opts.admin and ("127.0.0.1:" .. opts.admin) or "off", workers = opts.workers or 1,
           error_log = "stderr", plugins_path = opts.plugins_path or { FIXTURES } },
    services = { { name = "s", url = "http://127.0.0.1:" .. opts.up, routes = opts.routes or {
      { name = "one", paths = { "/one" } },
    } } },
    plugins = { { name = "code", config = { header_filter = PID_HEADER } } },
  }
end

local function write_config(info, cfg)
  helpers.write_file(info.config_file, helpers.json_encode(cfg, "  ") .. "\n")
end

local function get(path, headers)
  local c = helpers.proxy_client(5000)
  local res, err = c:get(path, { headers = headers })
  c:close()
  return res, err
end

local function contains(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

describe("master and workers #integration", function()
  local up

  lazy_setup(function()
    up = helpers.start_mock_upstream({ name = "proc" })
  end)
  lazy_teardown(helpers.stop_all)

  describe("workers", function()
    it("workers: 2 starts two worker processes, each serving", function()
      local port = helpers.get_free_port()
      local info = helpers.start_gw({ config = config(port, { up = up[1], workers = 2 }) })
      local pids = helpers.wait_until(function()
        local p = helpers.gw_worker_pids()
        return #p == 2 and p
      end, 5)
      assert.equal(2, #pids)
      for _, pid in ipairs(pids) do assert.is_true(helpers.pid_alive(pid)) end
      -- the pid answering is one of them (X-Pid from a header_filter in the worker)
      local res = assert(get("/one"))
      assert.res_status(200, res)
      assert.is_true(contains(pids, tonumber(res.headers["x-pid"])))
      assert.is_false(contains(pids, info.pid))
    end)

    it("a worker killed with SIGKILL is logged and respawned; the new one serves", function()
      local port = helpers.get_free_port()
      helpers.start_gw({ config = config(port, { up = up[1], workers = 2 }) })
      local pids = helpers.wait_until(function()
        local p = helpers.gw_worker_pids()
        return #p == 2 and p
      end, 5)
      local victim, survivor = pids[1], pids[2]
      helpers.execute("kill -9 " .. victim)
      assert.logfile().has.line("worker " .. victim .. " died on signal 9, respawning", true, 5)
      local now = helpers.wait_until(function()
        local p = helpers.gw_worker_pids()
        return #p == 2 and not contains(p, victim) and p
      end, 5)
      assert.is_true(contains(now, survivor))
      local fresh = now[1] == survivor and now[2] or now[1]
      -- the respawned worker accepts requests too
      helpers.wait_until(function()
        local res = get("/one")
        return res and res.status == 200 and tonumber(res.headers["x-pid"]) == fresh
      end, 10, 0.01)
    end)

    it("the master's admin listener keeps answering after workers are forked and respawned", function()
      local port, admin = helpers.get_free_port(), helpers.get_free_port()
      helpers.start_gw({ config = config(port, { up = up[1], workers = 2, admin = admin }) })
      local function admin_answers()
        local c = helpers.http_client("127.0.0.1", admin, 2000)
        local res, err = c:get("/")
        c:close()
        return res ~= nil, err
      end
      local pids = helpers.wait_until(function()
        local p = helpers.gw_worker_pids()
        return #p == 2 and p
      end, 5)
      assert.is_true(admin_answers())
      helpers.execute("kill -9 " .. pids[1])
      helpers.wait_until(function()
        local p = helpers.gw_worker_pids()
        return #p == 2 and not contains(p, pids[1])
      end, 5)
      assert.is_true(admin_answers())
      helpers.reload_gw()
      assert.logfile().has.line("generation 2 started", true, 5)
      assert.is_true(admin_answers())
    end)

    it("workers exit when the master is killed", function()
      local port = helpers.get_free_port()
      local info = helpers.start_gw({ config = config(port, { up = up[1], workers = 2 }) })
      local pids = helpers.wait_until(function()
        local p = helpers.gw_worker_pids()
        return #p == 2 and p
      end, 5)
      helpers.execute("kill -9 " .. info.pid)
      helpers.wait_until(function()
        return not helpers.pid_alive(pids[1]) and not helpers.pid_alive(pids[2])
      end, 5)
    end)
  end)

  describe("reload (SIGHUP)", function()
    local port, info

    before_each(function()
      port = helpers.get_free_port()
      info = helpers.start_gw({ config = config(port, { up = up[1], workers = 2 }) })
      helpers.wait_until(function() return #helpers.gw_worker_pids() == 2 end, 5)
    end)

    it("serves an edited config; the old workers exit", function()
      local old = helpers.gw_worker_pids()
      assert.res_status(404, assert(get("/two")))
      write_config(info, config(port, { up = up[1], workers = 2, routes = {
        { name = "two", paths = { "/two" } },
      } }))
      helpers.reload_gw()
      helpers.wait_until(function()
        local res = get("/two")
        return res and res.status == 200
      end, 5)
      helpers.wait_until(function()
        return not helpers.pid_alive(old[1]) and not helpers.pid_alive(old[2])
      end, 5)
      local now = helpers.wait_until(function()
        local p = helpers.gw_worker_pids()
        return #p == 2 and p
      end, 5)
      assert.is_false(contains(now, old[1]) or contains(now, old[2]))
      -- the old route is gone everywhere
      for _ = 1, 10 do assert.res_status(404, assert(get("/one"))) end
      assert.logfile().has.line("generation 2 started (2 workers)", true)
    end)

    it("a request in flight finishes on the old generation", function()
      local old = helpers.gw_worker_pids()
      local c = helpers.proxy_client(5000)
      assert(c:raw("GET /one/delay/1000 HTTP/1.1\r\nHost: x\r\n\r\n"))
      socket.sleep(0.2)
      write_config(info, config(port, { up = up[1], workers = 2, routes = {
        { name = "two", paths = { "/two" } },
      } }))
      helpers.reload_gw()
      local res, err = c:read_response()
      assert(res, "no response (" .. tostring(err) .. "); gw log:\n" .. helpers.gw_log())
      assert.res_status(200, res)
      assert.equal(1000, helpers.json_decode(res.body).delayed_ms)
      assert.is_true(contains(old, tonumber(res.headers["x-pid"])))
      assert.equal("close", res.headers["connection"])  -- its worker is draining
      c:close()
      helpers.wait_until(function()
        return not helpers.pid_alive(old[1]) and not helpers.pid_alive(old[2])
      end, 5)
    end)

    it("a broken config is refused with FILE:LINE:COL errors; the old config keeps serving", function()
      local old = helpers.gw_worker_pids()
      helpers.write_file(info.config_file, table.concat({
        '_format_version: "3.0"',
        "gw:",
        '  listen: ["127.0.0.1:' .. port .. '"]',
        "  workers: 2",
        "services:",
        "  - name: s",
        "    url: http://127.0.0.1:" .. up[1],
        "    routes:",
        '      - paths: ["/two", "nope"]',
        "",
      }, "\n"))
      helpers.reload_gw()
      assert.logfile().has.line("reload rejected, the running config stays", true, 5)
      assert.logfile().has.line(info.config_file .. ':9:25: services[0].routes[0].paths[1]: must start with "/" or "~"', true)
      for _ = 1, 5 do
        local res = assert(get("/one"))
        assert.res_status(200, res)
        assert.is_true(contains(old, tonumber(res.headers["x-pid"])))
      end
      assert.res_status(404, assert(get("/two")))
      assert.same(old, helpers.gw_worker_pids())
    end)

    it("a plugin edited on disk runs its new code after SIGHUP", function()
      local dir = helpers.tmpdir("plugins")
      helpers.execute("mkdir -p " .. helpers.shell_quote(dir .. "/editable"))
      local function write_plugin(version)
        helpers.write_file(dir .. "/editable/handler.lua", ([[
          return { PRIORITY = 10, access = function()
            gw.service.request.set_header("X-Plugin-Version", "%s")
          end }
        ]]):format(version))
      end
      write_plugin("v1")
      local routes = { { name = "one", paths = { "/one" }, plugins = { { name = "editable" } } } }
      write_config(info, config(port, { up = up[1], workers = 2, routes = routes,
                                        plugins_path = { FIXTURES, dir } }))
      helpers.reload_gw()
      helpers.wait_until(function()
        local res = get("/one")
        return res and res.status == 200 and helpers.json_decode(res.body).headers["x-plugin-version"] == "v1"
      end, 5)
      write_plugin("v2")
      helpers.reload_gw()
      helpers.wait_until(function()
        local res = get("/one")
        return res and res.status == 200 and helpers.json_decode(res.body).headers["x-plugin-version"] == "v2"
      end, 5)
      -- once the old generation is gone, every request runs v2
      helpers.wait_until(function() return #helpers.gw_worker_pids() == 2 end, 5)
      for _ = 1, 10 do
        local res = assert(get("/one"))
        assert.equal("v2", helpers.json_decode(res.body).headers["x-plugin-version"])
      end
    end)

    it("a plugin that no longer loads is refused like any config error", function()
      local dir = helpers.tmpdir("plugins")
      helpers.execute("mkdir -p " .. helpers.shell_quote(dir .. "/editable"))
      helpers.write_file(dir .. "/editable/handler.lua", "return { PRIORITY = 1, access = function() end }\n")
      local routes = { { name = "one", paths = { "/one" }, plugins = { { name = "editable" } } } }
      write_config(info, config(port, { up = up[1], workers = 2, routes = routes,
                                        plugins_path = { FIXTURES, dir } }))
      helpers.reload_gw()
      assert.logfile().has.line("generation 2 started", true, 5)
      helpers.write_file(dir .. "/editable/handler.lua", "return { PRIORITY = 1, access = function( end }\n")
      helpers.reload_gw()
      assert.logfile().has.line("editable/handler%.lua:1: .*expected near 'end'", false, 5)
      assert.res_status(200, assert(get("/one")))
    end)
  end)

  describe("stopping", function()
    it("SIGQUIT drains: a request in flight completes, then gw exits", function()
      local port = helpers.get_free_port()
      local info = helpers.start_gw({ config = config(port, { up = up[1], workers = 2 }) })
      local workers = helpers.wait_until(function()
        local p = helpers.gw_worker_pids()
        return #p == 2 and p
      end, 5)
      local c = helpers.proxy_client(5000)
      assert(c:raw("GET /one/delay/1000 HTTP/1.1\r\nHost: x\r\n\r\n"))
      socket.sleep(0.2)
      local t0 = socket.gettime()
      helpers.signal_gw("QUIT")
      local res, err = c:read_response()
      assert(res, "no response (" .. tostring(err) .. "); gw log:\n" .. helpers.gw_log())
      assert.res_status(200, res)
      assert.equal("close", res.headers["connection"])
      assert.is_true(socket.gettime() - t0 >= 0.6)
      c:close()
      helpers.wait_until(function() return not helpers.pid_alive(info.pid) end, 5)
      for _, pid in ipairs(workers) do assert.is_false(helpers.pid_alive(pid)) end
      assert.logfile().has.line("graceful stop (SIGQUIT)", true)
      assert.logfile().has.line("gw stopped", true)
    end)

    it("SIGHUP during a graceful stop starts no new workers", function()
      local port = helpers.get_free_port()
      local info = helpers.start_gw({ config = config(port, { up = up[1] }) })
      local c = helpers.proxy_client(5000)
      assert(c:raw("GET /one/delay/800 HTTP/1.1\r\nHost: x\r\n\r\n"))
      socket.sleep(0.2)
      helpers.signal_gw("QUIT")
      socket.sleep(0.1)
      helpers.reload_gw()
      local res, err = c:read_response()
      assert(res, "no response (" .. tostring(err) .. "); gw log:\n" .. helpers.gw_log())
      assert.res_status(200, res)
      c:close()
      helpers.wait_until(function() return not helpers.pid_alive(info.pid) end, 5)
      assert.logfile().has.line("SIGHUP ignored: gw is stopping", true)
      assert.logfile().has_no.line("generation 2 started", true)
    end)

    it("SIGQUIT with idle keep-alive connections still exits", function()
      local port = helpers.get_free_port()
      local info = helpers.start_gw({ config = config(port, { up = up[1] }) })
      local c = helpers.proxy_client(5000)
      assert.res_status(200, assert(c:get("/one")))
      helpers.signal_gw("QUIT")
      helpers.wait_until(function() return not helpers.pid_alive(info.pid) end, 5)
      c:close()
    end)

    it("SIGTERM stops at once, without waiting for requests in flight", function()
      local port = helpers.get_free_port()
      local info = helpers.start_gw({ config = config(port, { up = up[1], workers = 2 }) })
      local c = helpers.proxy_client(5000)
      assert(c:raw("GET /one/delay/3000 HTTP/1.1\r\nHost: x\r\n\r\n"))
      socket.sleep(0.2)
      local t0 = socket.gettime()
      helpers.signal_gw("TERM")
      helpers.wait_until(function() return not helpers.pid_alive(info.pid) end, 5, 0.01)
      assert.is_true(socket.gettime() - t0 < 1, "took " .. (socket.gettime() - t0) .. " s")
      local res = c:read_response()
      assert.is_nil(res)
      c:close()
      assert.logfile().has.line("stopping (SIGTERM)", true)
    end)
  end)

  describe("config errors", function()
    local BAD = table.concat({
      '_format_version: "3.0"',
      "gw:",
      '  listen: ["127.0.0.1:{PROXY_PORT}"]',
      "services:",
      "  - name: s",
      "    url: http://127.0.0.1:9",
      "    routes:",
      '      - paths: ["/ok", "bad"]',
      "  - name: s",
      "    url: ftp://x",
      "",
    }, "\n")
    local EXPECTED = {
      ':8:24: services[0].routes[0].paths[1]: must start with "/" or "~"',
      ':9:11: services[1].name: duplicate name "s" (also used by services[0])',
      ':10:10: services[1].url: unsupported url scheme "ftp" (expected http, https or echo)',
    }

    it("`gw check` prints FILE:LINE:COL: PATH: message lines and exits 1", function()
      local rc, out, file = helpers.gw_check(BAD, { vars = { PROXY_PORT = helpers.get_free_port() } })
      assert.equal(1, rc)
      for _, e in ipairs(EXPECTED) do
        assert.truthy(out:find(file .. e, 1, true), "missing: " .. file .. e .. "\nin:\n" .. out)
      end
      local ok_rc, ok_out, ok_file = helpers.gw_check(BAD:gsub(', "bad"', ""):gsub("  %- name: s\n    url: ftp://x\n", ""),
        { vars = { PROXY_PORT = helpers.get_free_port() } })
      assert.equal(0, ok_rc, ok_out)
      assert.equal(ok_file .. ": ok\n", ok_out)
    end)

    it("gw refuses to start with a bad config: non-zero exit, the same messages, nothing listening", function()
      local port = helpers.get_free_port()
      local dir = helpers.tmpdir("bad")
      local file = dir .. "/gateway.yaml"
      helpers.write_file(file, (BAD:gsub("{PROXY_PORT}", tostring(port))))
      local rc, out = helpers.execute(helpers.shell_quote(helpers.gw_bin) .. " run -c " .. helpers.shell_quote(file))
      assert.is_not.equal(0, rc)
      for _, e in ipairs(EXPECTED) do
        assert.truthy(out:find(file .. e, 1, true), "missing: " .. file .. e .. "\nin:\n" .. out)
      end
      assert.is_false(helpers.port_open(port))
    end)

    it("gw refuses to start when the config file is missing or not YAML", function()
      local dir = helpers.tmpdir("bad")
      local rc, out = helpers.execute(helpers.shell_quote(helpers.gw_bin) .. " run -c " .. helpers.shell_quote(dir .. "/nope.yaml"))
      assert.is_not.equal(0, rc)
      assert.matches("nope.yaml", out, 1, true)
      helpers.write_file(dir .. "/broken.yaml", "gw:\n  listen: [\n")
      rc, out = helpers.execute(helpers.shell_quote(helpers.gw_bin) .. " run -c " .. helpers.shell_quote(dir .. "/broken.yaml"))
      assert.is_not.equal(0, rc)
      assert.matches("broken%.yaml:%d+:%d+: ", out)
    end)
  end)
end)
