-- cors (integration): a real gw in front of the mock upstream, whose /headers?set=Name:Value path
-- sets its own response headers (Vary, Access-Control-*), as an upstream with CORS of its own does.
local helpers = require "spec.helpers"

local APP, EVIL = "https://app.example.com", "https://evil.example.com"

local function preflight(client, path, origin, extra)
  local headers = { Origin = origin, ["Access-Control-Request-Method"] = "POST" }
  for k, v in pairs(extra or {}) do headers[k] = v end
  return assert(client:send{ method = "OPTIONS", path = path, headers = headers })
end

local function cors_names(res)
  local found = {}
  for name in pairs(res.headers) do
    if name:lower():find("^access%-control%-") then found[#found + 1] = name:lower() end
  end
  table.sort(found)
  return found
end

local function values(res, name)
  local v = res.headers[name]
  if type(v) == "table" then return v end
  return { v }
end

describe("cors (integration)", function()
  local client, up

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "cors-up" }
    local url = "http://127.0.0.1:" .. up[1]
    local seed = { origins = { APP, "https://admin.example.com" }, credentials = true, max_age = 86400,
                   exposed_headers = { "X-Request-Id" } }
    helpers.start_gw{ config = {
      consumers = { { username = "alice", keyauth_credentials = { { key = "alice-key" } } } },
      services = {
        { name = "api", url = url,
          routes = { { name = "api", paths = { "/api" } } },
          plugins = { { name = "cors", config = seed } } },
        { name = "continue", url = url,
          routes = { { name = "continue", paths = { "/continue" } } },
          plugins = { { name = "cors", config = { origins = { APP }, preflight_continue = true } } } },
        { name = "no-options", url = url,
          routes = { { name = "no-options", paths = { "/no-options" }, methods = { "GET", "POST" } } },
          plugins = { { name = "cors", config = { origins = { APP } } } } },
        { name = "private", url = url,
          routes = { { name = "private", paths = { "/private" } } },
          plugins = { { name = "key-auth" }, { name = "cors", config = { origins = { APP } } } } },
      },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("answers a preflight from an allowed origin itself: 204, nothing sent upstream", function()
    helpers.mock_stats(up[1], true)
    local res = preflight(client, "/api/orders", APP, { ["Access-Control-Request-Headers"] = "Content-Type, X-Token" })
    assert.res_status(204, res)
    assert.equal(APP, res.headers["access-control-allow-origin"])
    assert.equal("true", res.headers["access-control-allow-credentials"])
    assert.equal("GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT", res.headers["access-control-allow-methods"])
    assert.equal("Content-Type, X-Token", res.headers["access-control-allow-headers"])
    assert.equal("86400", res.headers["access-control-max-age"])
    assert.equal("Origin, Access-Control-Request-Headers", res.headers["vary"])
    assert.is_nil(res.headers["access-control-expose-headers"])   -- not a preflight header
    assert.is_nil(res.headers["content-length"])                   -- a 204 has no body, no length
    assert.equal("", res.body)
    assert.equal(1, helpers.mock_stats(up[1]).requests)            -- only this /stats call
  end)

  it("a preflight from a disallowed origin: 204 without any CORS header", function()
    for _, origin in ipairs({ EVIL, "https://app.example.com.attacker", "http://app.example.com" }) do
      local res = preflight(client, "/api/orders", origin)
      assert.res_status(204, res)
      assert.same({}, cors_names(res), origin)
      assert.equal("Origin, Access-Control-Request-Headers", res.headers["vary"])
    end
  end)

  it("an actual request from an allowed origin: the upstream's CORS headers replaced, its Vary kept", function()
    local res = assert(client:send{ method = "POST", path = "/api/headers",
      query = "set=Vary:Accept-Encoding&set=Access-Control-Allow-Origin:*&set=Access-Control-Expose-Headers:X-Upstream",
      headers = { Origin = "https://admin.example.com", ["Content-Type"] = "application/json" }, body = "{}" })
    assert.res_status(200, res)
    assert.same({ "https://admin.example.com" }, values(res, "access-control-allow-origin"))
    assert.equal("true", res.headers["access-control-allow-credentials"])
    assert.same({ "X-Request-Id" }, values(res, "access-control-expose-headers"))
    assert.same({ "Accept-Encoding", "Origin" }, values(res, "vary"))
    -- the upstream saw the request as sent, Origin included
    assert.equal("https://admin.example.com", assert.request(res).has.header("Origin"))
    assert.equal("POST", assert.jsonbody(res).method)
  end)

  it("an actual request from a disallowed origin gets no CORS header, not even the upstream's", function()
    local res = assert(client:get("/api/headers", {
      query = "set=Access-Control-Allow-Origin:*&set=Access-Control-Allow-Credentials:true&set=Vary:Origin",
      headers = { Origin = EVIL } }))
    assert.res_status(200, res)
    assert.same({}, cors_names(res))
    assert.same({ "Origin" }, values(res, "vary"))   -- already there: not added twice
  end)

  it("a request without Origin is passed as is, with Vary: Origin", function()
    local res = assert(client:get("/api/headers", { query = "set=Access-Control-Allow-Origin:https://x.test" }))
    assert.res_status(200, res)
    assert.equal("https://x.test", res.headers["access-control-allow-origin"])
    assert.equal("Origin", res.headers["vary"])
  end)

  it("preflight_continue: the upstream gets the preflight and its answer is left alone", function()
    local res = preflight(client, "/continue/headers", APP)
    assert.res_status(200, res)
    assert.equal("OPTIONS", assert.jsonbody(res).method)
    assert.same({}, cors_names(res))
    assert.is_nil(res.headers["vary"])
    -- actual requests on that route still get the headers
    res = assert(client:get("/continue", { headers = { Origin = APP } }))
    assert.res_status(200, res)
    assert.equal(APP, res.headers["access-control-allow-origin"])
  end)

  it("a route whose methods leave out OPTIONS never sees the preflight (404 from the router)", function()
    local res = preflight(client, "/no-options", APP)
    assert.res_status(404, res)
    assert.is_nil(res.headers["access-control-allow-origin"])
    res = assert(client:get("/no-options", { headers = { Origin = APP } }))
    assert.res_status(200, res)
    assert.equal(APP, res.headers["access-control-allow-origin"])
  end)

  it("runs before authentication: the preflight passes, the 401 carries the CORS headers", function()
    local res = preflight(client, "/private", APP)
    assert.res_status(204, res)
    assert.equal(APP, res.headers["access-control-allow-origin"])
    res = assert(client:get("/private", { headers = { Origin = APP } }))
    assert.res_status(401, res)
    assert.equal(APP, res.headers["access-control-allow-origin"])
    res = assert(client:get("/private", { headers = { Origin = APP, apikey = "alice-key" } }))
    assert.res_status(200, res)
    assert.equal(APP, res.headers["access-control-allow-origin"])
  end)
end)

describe("cors (integration) enabled globally", function()
  lazy_setup(function()
    helpers.start_gw{ config = {
      services = { { name = "api", url = "echo://",
                     routes = { { name = "api", paths = { "/api" }, methods = { "GET", "POST" } } } } },
      plugins = { { name = "cors", config = { origins = { "https://(.+\\.)?example\\.com" }, methods = { "GET", "POST" } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  it("answers preflights for routes that do not list OPTIONS (the request matches no route)", function()
    local client = helpers.proxy_client()
    local res = preflight(client, "/api/orders", "https://shop.example.com")
    assert.res_status(204, res)
    assert.equal("https://shop.example.com", res.headers["access-control-allow-origin"])
    assert.equal("GET,POST", res.headers["access-control-allow-methods"])
    res = preflight(client, "/api/orders", "https://example.com.evil.test")
    assert.res_status(204, res)
    assert.same({}, cors_names(res))
    res = assert(client:get("/api/orders", { headers = { Origin = "https://shop.example.com" } }))
    assert.res_status(200, res)
    assert.equal("https://shop.example.com", res.headers["access-control-allow-origin"])
    client:close()
  end)
end)
