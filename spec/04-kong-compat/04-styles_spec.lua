-- kong-compat: a Kong 2.x plugin (a kong.plugins.base_plugin class using ngx.* directly), a
-- body_filter through ngx.arg, kong.response.exit in header_filter, and a small plugin in a real
-- gw (the same one 06-unit-style_spec.lua tests with a mocked `kong`).
local helpers = require "spec.helpers"
local cjson = require "cjson"

local KONG_PLUGINS = helpers.repo .. "/spec/fixtures/kong-plugins"

describe("kong-compat plugin styles", function()
  local client

  lazy_setup(function()
    helpers.start_gw{ config = {
      gw = { kong_plugins_path = { KONG_PLUGINS } },
      services = { {
        name = "echo", url = "echo://",
        routes = {
          { name = "legacy", paths = { "/legacy" }, plugins = { { name = "kong-legacy", config = { value = "v1" } } } },
          { name = "body", paths = { "/body" }, plugins = { { name = "kong-body", config = { prefix = ">" } } } },
          { name = "greet", paths = { "/greet" }, plugins = { { name = "kong-greet" } } },
          -- kong-legacy (900) ends its access handler with ngx.exit(ngx.OK) on ?skip=1; kong-greet
          -- (800) and response-header (800) run after it in the same phase
          { name = "chain", paths = { "/chain" }, plugins = {
            { name = "kong-legacy", config = { value = "c1" } }, { name = "kong-greet" },
            { name = "response-header", config = { request_headers = { ["X-After"] = "yes" } } } } },
        },
      } },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("loads a 2.x plugin class with the phases it overrides only", function()
    local p = assert(require("gw.plugins").load("kong-legacy", { KONG_PLUGINS .. "/kong/plugins" }))
    assert.same({ access = true, header_filter = true }, p.phases)   -- not BasePlugin's body_filter
    assert.equal(900, p.priority)
    -- kong and ngx exist in Kong plugins' environment only
    assert.is_nil(rawget(_G, "kong"))
    assert.is_nil(rawget(_G, "ngx"))
  end)

  it("2.x plugin: ngx.req writes, ngx.var.upstream_uri, ngx.header in header_filter", function()
    local res = client:get("/legacy/item?a=1", { headers = { ["X-Remove-Me"] = "1" } })
    local up = cjson.decode(assert.res_status(200, res))
    assert.equal("v1", up.headers["x-legacy"])
    assert.equal("reached", up.headers["x-legacy-after"])
    assert.is_nil(up.headers["x-remove-me"])
    assert.equal("/rewritten/item", up.path)
    assert.equal("from=legacy&n=2", up.query)
    assert.equal("v1/200", res.headers["X-Legacy-Resp"])
  end)

  it("2.x plugin: ngx.exit(ngx.OK) ends the handler only; ngx.say + ngx.exit(200); ngx.exit(403)", function()
    local up = cjson.decode(assert.res_status(200, client:get("/legacy/x?skip=1")))
    assert.equal("v1", up.headers["x-legacy"])
    assert.is_nil(up.headers["x-legacy-after"])
    local res = client:get("/legacy/x?stop=1")
    assert.same({ stopped = "kong-legacy" }, cjson.decode(assert.res_status(409, res)))
    assert.equal("yes", res.headers["X-Stop"])
    assert.equal("application/json", res.headers["Content-Type"])
    res = client:get("/legacy/x?forbid=1")
    assert.equal("Forbidden", cjson.decode(assert.res_status(403, res)).message)
  end)

  -- ngx.exit(ngx.OK) raises gw._END_HANDLER, which ends the handler's coroutine: C starts the
  -- phase again at the next plugin (runtime/lua/api.c), on every request of a keep-alive connection
  it("ngx.exit(ngx.OK) ends one handler; the later plugins of the phase still run", function()
    for i = 1, 3 do
      local up = cjson.decode(assert.res_status(200, client:get("/chain/x?skip=1&i=" .. i,
                                                                { headers = { ["X-Name"] = "bo" } })))
      assert.equal("c1", up.headers["x-legacy"])
      assert.is_nil(up.headers["x-legacy-after"])          -- the rest of kong-legacy's access did not run
      assert.equal("hello bo", up.headers["x-greeting"])   -- kong-greet ran after it
      assert.equal("yes", up.headers["x-after"])           -- and response-header
    end
    -- a later plugin's own refusal still answers
    assert.same({ message = "missing X-Name" }, cjson.decode(assert.res_status(400, client:get("/chain/x?skip=1"))))
  end)

  it("body_filter through ngx.arg, kong.response.exit in header_filter", function()
    local res = client:get("/body")
    local body = assert.res_status(200, res)
    assert.matches('^>{"METHOD":"GET"', body)
    res = client:get("/body?replace=1")
    assert.same({ replaced = true }, cjson.decode(assert.res_status(202, res)))
    assert.equal("yes", res.headers["X-Replaced"])
  end)

  it("a 3.x plugin with a typedef default", function()
    local up = cjson.decode(assert.res_status(200, client:get("/greet", { headers = { ["X-Name"] = "ann" } })))
    assert.equal("hello ann", up.headers["x-greeting"])
    assert.same({ message = "missing X-Name" }, cjson.decode(assert.res_status(400, client:get("/greet"))))
  end)
end)
