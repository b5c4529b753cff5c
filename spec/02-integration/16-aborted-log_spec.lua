-- The log phase runs for requests the client gave up on (499), also when the log code sleeps.
local helpers = require "spec.helpers"
local socket = require "socket"

describe("log phase of an aborted request", function()
  lazy_setup(function()
    local up = helpers.start_mock_upstream{ name = "slow" }
    helpers.start_gw{
      plugins_path = { helpers.repo .. "/spec/fixtures/plugins" },
      config = {
        gw = { shared_dicts = { test = "1m" } },
        services = { { name = "s", url = "http://127.0.0.1:" .. up[1], routes = {
          { name = "logged", paths = { "/logged" }, plugins = { { name = "code", config = { log = [[
            local id = gw.request.get_header("X-Id")
            gw.sleep(0.05)   -- the log phase may yield even though the client is gone
            gw.shared.test:set("log:" .. id, gw.response.get_status())
          ]] } } } },
          { name = "read", paths = { "/read" }, plugins = { { name = "code", config = { access = [[
            gw.response.exit(200, { status = gw.shared.test:get("log:" .. gw.request.get_header("X-Id")) })
          ]] } } } },
        } } },
      },
    }
  end)
  lazy_teardown(helpers.stop_all)

  local function read(id)
    local c = helpers.proxy_client()
    local j = assert.jsonbody(c:get("/read", { headers = { ["X-Id"] = id } }))
    c:close()
    return j.status
  end

  it("a client closing while the upstream is slow is logged with 499", function()
    local c = helpers.proxy_client()
    c:raw("GET /logged/delay/800 HTTP/1.1\r\nHost: x\r\nX-Id: gone\r\n\r\n")
    socket.sleep(0.2)
    c:close()
    helpers.wait_until(function() return read("gone") == 499 end, 5)
  end)

  it("a completed request is logged once with its status", function()
    local c = helpers.proxy_client()
    assert.res_status(200, c:get("/logged/x", { headers = { ["X-Id"] = "ok" } }))
    c:close()
    helpers.wait_until(function() return read("ok") == 200 end, 5)
  end)

  it("the worker goes on serving, and stops cleanly with a log phase in flight", function()
    local c = helpers.proxy_client()
    c:raw("GET /logged/delay/800 HTTP/1.1\r\nHost: x\r\nX-Id: gone2\r\n\r\n")
    socket.sleep(0.1)
    c:close()
    assert.equal(nil, read("nothing"))
    helpers.wait_until(function() return read("gone2") == 499 end, 5)
    assert.is_true(helpers.stop_gw("QUIT"))
  end)
end)
