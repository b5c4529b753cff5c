-- kong-compat unit specs: the kong PDK (kong-compat/gw_kong/pdk.lua) on gw.test.context requests.
local kong = require("gw_kong").kong
local ngx = require("gw_kong").ngx
local cjson = require "cjson"

local function run(spec, phase, fn, response)
  local ctx = gw.test.context(spec or {})
  if response then ctx:set_response(response[1], response[2] or {}, response[3]) end
  local out
  local res = ctx:run(require("gw_kong").wrap({ [phase] = function() out = { fn(ctx) } end }, "pdk"), phase, {})
  return ctx, res, unpack(out or {})
end

describe("kong-compat PDK", function()
  it("kong.request.get_body: JSON, form, multipart, errors", function()
    local _, _, v = run({ method = "POST", headers = { ["Content-Type"] = "application/json" }, body = '{"a":[1]}' },
                        "access", function() return kong.request.get_body() end)
    assert.same({ a = { 1 } }, v)
    local _, _, f = run({ method = "POST", headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
                          body = "a=1&b=x+y" }, "access", function() return kong.request.get_body() end)
    assert.same({ a = "1", b = "x y" }, f)
    local mp = "--XX\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\nv1\r\n--XX--\r\n"
    local _, _, m = run({ method = "POST", headers = { ["Content-Type"] = "multipart/form-data; boundary=XX" },
                          body = mp }, "access", function() return kong.request.get_body() end)
    assert.same({ k = "v1" }, m)
    local _, _, n, err = run({ method = "POST", body = "x" }, "access", function() return kong.request.get_body() end)
    assert.is_nil(n)
    assert.equal("missing content type", err)
    _, _, n, err = run({ method = "POST", headers = { ["Content-Type"] = "application/json" }, body = "[1" },
                       "access", function() return kong.request.get_body() end)
    assert.equal("invalid json body", err)
  end)

  it("kong.service.request: set_body (JSON, form, multipart), clear_query_arg, headers of any type", function()
    local ctx = run({ method = "POST", path = "/p?a=1&k=2&b=3", headers = { ["Content-Type"] = "application/json" }, body = "{}" },
                    "access", function()
      assert(kong.service.request.set_body({ x = 1 }))
      kong.service.request.clear_query_arg("k")
      kong.service.request.set_header("X-N", 5)
      kong.service.request.add_header("X-L", { "a", true })
    end)
    assert.same({ x = 1 }, cjson.decode(ctx.upstream.body))
    assert.equal("a=1&b=3", ctx.upstream.query)
    assert.equal("5", ctx:upstream_header("X-N"))
    assert.same({ "a", "true" }, ctx.upstream.headers["x-l"])

    ctx = run({ method = "POST", body = "" }, "access", function()
      assert(kong.service.request.set_body({ a = "b c" }, "application/x-www-form-urlencoded"))
    end)
    assert.equal("a=b%20c", ctx.upstream.body)
    ctx = run({ method = "POST", body = "" }, "access", function()
      assert(kong.service.request.set_body({ f = "v" }, "multipart/form-data; boundary=B1"))
    end)
    assert.equal('--B1\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n--B1--\r\n', ctx.upstream.body)
  end)

  it("kong.response.exit and error check their arguments", function()
    assert.has_error(function() run({}, "access", function() kong.response.exit("200") end) end)
    local ok, err = pcall(run, {}, "access", function() kong.response.error(200) end)
    assert.is_false(ok)
    assert.matches("code must be a number between 400 and 599", err)
    local ctx, res = run({ headers = { Accept = "application/xml" } }, "access", function()
      return kong.response.error(429, "slow <down>", { ["Retry-After"] = 3 })
    end)
    assert.equal("exit", res)
    assert.equal(429, ctx.exit_status)
    assert.matches("<message>slow &lt;down&gt;</message>", ctx.exit_body, 1, true)
    assert.equal("3", ctx:response_header("Retry-After"))
  end)

  it("kong.response.get_source tells a gw error from an upstream's answer", function()
    local _, _, src = run({}, "header_filter", function() return kong.response.get_source() end, { 502 })
    assert.equal("error", src)
    _, _, src = run({}, "header_filter", function() return kong.response.get_source() end, { 404 })
    assert.equal("service", src)
  end)

  it("kong.log: levels, inspect, serialize with set_serialize_value modes", function()
    local ctx = gw.test.context{ method = "POST", path = "/s?q=1", headers = { Authorization = "secret", ["Content-Length"] = "0" } }
    ctx:run(require("gw_kong").wrap({ access = function()
      kong.log.set_serialize_value("a.b", 1)
      kong.log.set_serialize_value("a.b", 2, { mode = "add" })        -- exists: unchanged
      kong.log.set_serialize_value("c", 3, { mode = "replace" })      -- absent: not added
      kong.log.set_serialize_value("request.method", "X", { mode = "replace" })
      kong.log.inspect.off()
      kong.log.inspect({ x = 1 }, "y")                               -- off: nothing logged
      kong.log.inspect.on()
      kong.log.debug("debug line")
    end }, "pdk"), "access", {})
    ctx:set_response(201, { ["X-R"] = "r" })
    local s
    ctx:run(require("gw_kong").wrap({ log = function() s = kong.log.serialize() end }, "pdk"), "log", {})
    assert.same({ b = 1 }, s.a)
    assert.is_nil(s.c)
    assert.equal("X", s.request.method)
    assert.equal("REDACTED", s.request.headers.authorization)
    assert.same({ q = "1" }, s.request.querystring)
    assert.equal(201, s.response.status)
    assert.equal("r", s.response.headers["x-r"])
    assert.is_number(s.latencies.request)
    assert.has_error(function() kong.log.set_serialize_value("k", 1, { mode = "nope" }) end)
  end)

  it("kong.db and kong.client.load_consumer read gw's consumers", function()
    local compiled = assert(require("gw.config").load_string([[
_format_version: "3.0"
consumers:
  - username: ann
    custom_id: c-ann
    keyauth_credentials: [{ key: k-ann }]
    acls: [{ group: g1 }]
]]))
    local auth = require "gw.auth"
    auth._set_compiled(compiled)
    finally(function() auth._set_compiled(nil) end)
    local cred = kong.db.keyauth_credentials:select_by_key("k-ann")
    local c = kong.db.consumers:select({ id = cred.consumer.id })
    assert.equal("ann", c.username)
    assert.equal(c, kong.db.consumers:select_by_username("ann"))
    assert.equal(c, kong.db.consumers:select_by_custom_id("c-ann"))
    assert.equal(c, kong.client.load_consumer(c.id))
    assert.is_nil(kong.client.load_consumer("ann"))
    assert.equal(c, kong.client.load_consumer("ann", true))
    local groups = {}
    for row in kong.db.acls:each_for_consumer({ id = c.id }) do groups[#groups + 1] = row.group end
    assert.same({ "g1" }, groups)
    assert.equal("keyauth_credentials:k-ann:::::", kong.db.keyauth_credentials:cache_key("k-ann"))
    local none, err = kong.db.oauth2_tokens:select({ id = "x" })
    assert.is_nil(none)
    assert.equal("kong.db.oauth2_tokens is not supported by gw", err)
  end)

  it("kong.cache: loader results, negative caching, ttl, probe, invalidate, loader errors", function()
    local cache = require("gw_kong.cache").mlcache.new("t", "t", { lru_size = 10 })
    local calls = 0
    local function loader(v) calls = calls + 1 return v end
    assert.same({ "a", nil, 3 }, { cache:get("k", nil, loader, "a") })
    assert.same({ "a", nil, 1 }, { cache:get("k", nil, loader, "b") })
    assert.same({ nil, nil, 3 }, { cache:get("n", { neg_ttl = 100 }, loader, nil) })
    assert.same({ nil, nil, 1 }, { cache:get("n", nil, loader, "x") })
    assert.equal(2, calls)
    local ttl, _, v = cache:probe("k")
    assert.equal(0, ttl)
    assert.equal("a", v)
    cache:invalidate("k")
    assert.is_nil(cache:probe("k"))
    local _, err = cache:get("e", nil, function() error("boom") end)
    assert.matches("callback threw an error: .*boom", err)
    local _, err2 = cache:get("e2", nil, function() return nil, "no luck" end)
    assert.equal("no luck", err2)
    cache:set("s", { ttl = 0.05 }, "v")
    assert.equal("v", (cache:get("s")))
    require("socket").sleep(0.1)
    assert.is_nil((cache:get("s")))
  end)

  it("kong.vault.try passes through; kong.table; kong.node; ngx.thread", function()
    assert.equal(3, kong.vault.try(function(o) return o.n end, { n = 3 }))
    assert.is_true(kong.vault.is_reference("{vault://env/x}"))
    assert.same({ 1, 2, a = 1, b = 2 }, kong.table.merge({ 1, a = 1 }, { [2] = 2, b = 2 }))
    assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", kong.node.get_id())
    assert.is_string(kong.node.get_hostname())
    local t = ngx.thread.spawn(function(a) return a * 2 end, 21)
    assert.same({ true, 42 }, { ngx.thread.wait(t) })
    assert.equal("off", kong.configuration.database)
    assert.has_error(function() kong.configuration.database = "postgres" end)
  end)
end)
