-- kong-compat: a Kong 3.x-style plugin (spec/fixtures/kong-plugins/kong/plugins/kong-probe),
-- loaded from gw.kong_plugins_path by a real gw, exercising the PDK and ngx.* over the echo
-- service.
local helpers = require "spec.helpers"
local cjson = require "cjson"

local KONG_PLUGINS = helpers.repo .. "/spec/fixtures/kong-plugins"

describe("kong-compat: a Kong plugin in a real gw", function()
  local client

  lazy_setup(function()
    helpers.start_gw{ config = {
      gw = { kong_plugins_path = { KONG_PLUGINS }, trusted_ips = { "127.0.0.1" } },
      services = { {
        name = "echo", url = "echo://",
        routes = { { name = "probe", paths = { "/probe" }, strip_path = false } },
        plugins = { { name = "kong-probe", config = { tag = "t1" } } },
      } },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("reads the request through kong.request and ngx.var, writes upstream headers", function()
    local res = client:get("/probe/42?a=1", { headers = { ["X-In"] = "hi" } })
    local body = cjson.decode(assert.res_status(200, res))
    local h = body.headers
    assert.equal("GET", h["x-probe-method"])
    assert.equal("/probe/42", h["x-probe-path"])
    assert.equal("a=1", h["x-probe-raw-query"])
    assert.equal("hi", h["x-probe-header"])
    assert.equal("/probe/42", h["x-probe-var-uri"])
    assert.equal("1", h["x-probe-var-arg"])
    assert.equal("hi", h["x-probe-var-http"])
    assert.equal("same", h["x-probe-client"])
    assert.equal("42", h["x-probe-id"])                       -- ngx.re.match, named capture
    assert.equal("probe/echo/id", h["x-probe-route"])
    assert.equal("id", h["x-probe-plugin-id"])
    assert.equal("true", h["x-probe-bool"])                   -- a boolean header value
    assert.equal("t1t1", h["x-probe-helper"])                 -- kong.plugins.kong-probe.helper
    assert.equal("3", h["x-probe-split"])
    assert.equal("ok", h["x-probe-uuid"])
    assert.equal("3f071f4f163d68551f4fc1544c7f69a6", h["x-probe-md5"])  -- md5("gw")
    assert.equal("Z3c6a29uZw==", h["x-probe-b64"])
    assert.matches('"list":[]', h["x-probe-json"], 1, true)   -- cjson.empty_array stays []
    assert.matches('"tag":"t1"', h["x-probe-json"], 1, true)
    -- response side: header_filter saw the status, the plugin's and the shared ctx
    assert.equal("t1", res.headers["X-Probe-Tag"])
    assert.equal("200", res.headers["X-Probe-Status"])
    assert.equal("plugin/t1/yes", res.headers["X-Probe-Ctx"])
    assert.equal("service", res.headers["X-Probe-Source"])
  end)

  it("kong.request.get_forwarded_* trust X-Forwarded-* from gw.trusted_ips", function()
    local res = client:get("/probe", { headers = { ["X-Forwarded-Proto"] = "HTTPS",
      ["X-Forwarded-Host"] = "Api.Example:8443", ["X-Forwarded-Port"] = "9443",
      ["X-Forwarded-Path"] = "/outer/probe", ["X-Forwarded-For"] = "203.0.113.9" } })
    local h = cjson.decode(assert.res_status(200, res)).headers
    assert.equal("https api.example 9443 /outer/probe 203.0.113.9 true", h["x-probe-fwd"])
  end)

  it("kong.cache runs the loader once per key; ngx.shared counts across requests", function()
    local first = cjson.decode(assert.res_status(200, client:get("/probe"))).headers
    local second = cjson.decode(assert.res_status(200, client:get("/probe"))).headers
    assert.equal("hello t1/1/nil", second["x-probe-cache"])   -- hit level 1: from the cache
    assert.equal(tonumber(first["x-probe-count"]) + 1, tonumber(second["x-probe-count"]))
  end)

  it("kong.response.exit ends the request with a JSON body", function()
    local res = client:get("/probe?deny=1")
    local body = assert.res_status(403, res)
    assert.same({ message = "denied by t1" }, cjson.decode(body))
    assert.matches("application/json", res.headers["Content-Type"], 1, true)
    assert.equal("exit", res.headers["X-Probe-Source"])
    assert.equal("403", res.headers["X-Probe-Status"])
  end)

  it("kong.response.error answers in the format the Accept header asks for", function()
    local res = client:get("/probe?fail=404")
    local body = cjson.decode(assert.res_status(404, res))
    assert.equal("Not found", body.message)
    assert.is_string(body.request_id)
    res = client:get("/probe?fail=401", { headers = { Accept = "text/html" } })
    assert.matches("<p>Unauthorized.</p>", assert.res_status(401, res), 1, true)
    assert.matches("text/html", res.headers["Content-Type"], 1, true)
    res = client:get("/probe?fail=503", { headers = { Accept = "application/xml;q=0.9, text/plain" } })
    assert.matches("^The upstream server is currently unavailable\nrequest_id: ", assert.res_status(503, res))
  end)

  it("ngx.status, ngx.say and ngx.exit(200) answer from the plugin", function()
    local res = client:get("/probe?say=yo")
    assert.equal("said yo\n", assert.res_status(201, res))
  end)

  it("the log phase serializes the request (kong.log.serialize + set_serialize_value)", function()
    assert.res_status(200, client:post("/probe", { body = "x" }))
    local last
    helpers.wait_until(function()
      local res = client:get("/probe?last_log=1")
      last = cjson.decode(assert.res_status(200, res))
      return last.method == "POST"
    end, 5)
    assert.same({ tag = "t1", status = 200, method = "POST" }, last)
  end)
end)
