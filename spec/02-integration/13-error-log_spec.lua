-- gw.error_log: a file (relative to the config file) instead of stderr, followed by reloads.
local helpers = require "spec.helpers"

describe("error_log", function()
  lazy_teardown(helpers.stop_all)

  it("writes the master's and the workers' lines to the named file", function()
    local gw = helpers.start_gw{ config = {
      gw = { error_log = "logs/error.log" },
      services = { { name = "e", url = "echo://", routes = { { paths = { "/" } } },
                     plugins = { { name = "code", config = { access = "gw.log.warn('hello from a worker')" } } } } },
    }, plugins_path = { helpers.repo .. "/spec/fixtures/plugins" }, wait = true }
    local dir = gw.config_file:match("^(.*)/[^/]+$")
    os.execute("mkdir -p " .. dir .. "/logs")
    -- the directory did not exist at start: gw said so on stderr and kept logging there
    assert.matches("cannot open error_log", helpers.gw_log(), 1, true)
    -- a reload opens it now that it can
    local admin = helpers.admin_client()
    assert.res_status(200, admin:post("/reload", {}))
    -- until the new worker is ready the old one serves (and logs to stderr): wait for the swap
    helpers.wait_until(function()
      local st = assert.jsonbody(admin:get("/status"))
      return #st.workers == 1 and st.workers[1].generation == st.generation
    end, 5)
    admin:close()
    local c = helpers.proxy_client()
    assert.res_status(200, c:get("/x"))
    c:close()
    local ok = pcall(helpers.wait_until, function()
      local log = helpers.read_file(dir .. "/logs/error.log") or ""
      return log:find("hello from a worker", 1, true) and log:find("generation 2 started", 1, true)
    end, 5)
    assert(ok, "error.log: " .. tostring(helpers.read_file(dir .. "/logs/error.log")) .. "\nstderr: " .. helpers.gw_log())
    -- log rotation: the file is renamed away, a reload starts a new one
    assert(os.rename(dir .. "/logs/error.log", dir .. "/logs/error.log.1"))
    admin = helpers.admin_client()
    assert.res_status(200, admin:post("/reload", {}))
    admin:close()
    helpers.wait_until(function()
      local log = helpers.read_file(dir .. "/logs/error.log") or ""
      return log:find("generation 3 started", 1, true) ~= nil
    end, 5)
    assert.falsy((helpers.read_file(dir .. "/logs/error.log.1") or ""):find("generation 3 started", 1, true))
  end)
end)
