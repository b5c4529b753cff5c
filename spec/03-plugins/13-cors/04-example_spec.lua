-- examples/cors.yaml (the seed: two allowed origins, credentials, a 24-hour max age on an echo
-- service) started as written, ports substituted, and asked from a browser's point of view.
local helpers = require "spec.helpers"

local APP, ADMIN = "https://app.example.com", "https://admin.example.com"

describe("examples/cors.yaml", function()
  local client, gw_info

  lazy_setup(function()
    gw_info = helpers.start_gw{ yaml = helpers.example_yaml("cors.yaml") }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  local function preflight(origin, method)
    return assert(client:send{ method = "OPTIONS", path = "/api/orders",
      headers = { Origin = origin, ["Access-Control-Request-Method"] = method or "POST" } })
  end

  it("preflight from either allowed origin: 204 with the seed's credentials and max age", function()
    for _, origin in ipairs({ APP, ADMIN }) do
      local res = preflight(origin, "DELETE")
      assert.res_status(204, res)
      assert.equal(origin, res.headers["access-control-allow-origin"])
      assert.equal("true", res.headers["access-control-allow-credentials"])
      assert.equal("86400", res.headers["access-control-max-age"])
      assert.matches("DELETE", res.headers["access-control-allow-methods"], 1, true)
      assert.matches("Origin", res.headers["vary"], 1, true)
    end
  end)

  it("preflight from another origin: 204 without CORS headers", function()
    local res = preflight("https://evil.example.com")
    assert.res_status(204, res)
    assert.is_nil(res.headers["access-control-allow-origin"])
    assert.is_nil(res.headers["access-control-allow-credentials"])
    assert.is_nil(res.headers["access-control-allow-methods"])
  end)

  it("actual requests: the echo answers, with CORS headers only for allowed origins", function()
    local res = assert(client:post("/api/orders", { body = '{"id":7}', headers = { Origin = APP } }))
    local j = assert.jsonbody(res)
    assert.equal(200, res.status)
    assert.equal("/orders", j.path)
    assert.equal('{"id":7}', j.body)
    assert.equal(APP, res.headers["access-control-allow-origin"])
    assert.equal("true", res.headers["access-control-allow-credentials"])
    assert.equal("Origin", res.headers["vary"])

    res = assert(client:get("/api/orders", { headers = { Origin = "https://evil.example.com" } }))
    assert.res_status(200, res)
    assert.is_nil(res.headers["access-control-allow-origin"])
    assert.equal("Origin", res.headers["vary"])
  end)

  it("curl sees the preflight answer as a user would", function()
    local url = "http://127.0.0.1:" .. gw_info.proxy_port .. "/api/orders"
    local function curl(origin)
      local p = assert(io.popen("curl -si -X OPTIONS -H 'Origin: " .. origin
        .. "' -H 'Access-Control-Request-Method: POST' " .. url .. " 2>&1"))
      local out = p:read("*a")
      p:close()
      return out
    end
    local out = curl(APP)
    assert.matches("^HTTP/1%.1 204 No Content\r\n", out)
    assert.matches("\r\nAccess%-Control%-Allow%-Origin: https://app%.example%.com\r\n", out)
    assert.matches("\r\nAccess%-Control%-Allow%-Credentials: true\r\n", out)
    assert.matches("\r\nAccess%-Control%-Max%-Age: 86400\r\n", out)
    out = curl("https://evil.example.com")
    assert.matches("^HTTP/1%.1 204 No Content\r\n", out)
    assert.not_matches("\r\nAccess%-Control%-", out)
  end)
end)
