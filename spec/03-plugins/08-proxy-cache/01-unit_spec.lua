-- proxy-cache: schema, key building, TTL and Cache-Control rules, and the phases on
-- gw.test.context requests with an in-memory storage behind the plugin's storage interface.
local helpers = require "spec.helpers"

local ROOT = helpers.repo .. "/plugins/proxy-cache"

local function conf_of(extra)
  return assert(helpers.validate_plugin_config("proxy-cache", extra or {}))
end

describe("proxy-cache schema", function()
  it("fills in the defaults", function()
    local c = conf_of()
    assert.equal("memory", c.strategy)
    assert.equal("proxy_cache", c.dict)
    assert.same({ "GET", "HEAD" }, c.request_method)
    assert.same({ 200, 301, 404 }, c.response_code)
    assert.same({ "text/plain", "application/json" }, c.content_type)
    assert.equal(300, c.cache_ttl)
    assert.same({}, c.ttl_by_status)
    assert.is_false(c.cache_control)
    assert.equal(0, c.stale_ttl)
    assert.equal(1048576, c.max_body_size)
    assert.same({}, c.vary_headers)
    assert.is_false(c.vary_consumer)
    assert.is_false(c.cache_key_header)
  end)

  it("refuses bad values", function()
    local function errs_of(extra) return helpers.plugin_config_errors("proxy-cache", extra) end
    assert.matches("strategy: expected one of: memory, redis", errs_of{ strategy = "disk" }, 1, true)
    assert.matches("response_code[0]: value should be between 100 and 599", errs_of{ response_code = { 99 } }, 1, true)
    assert.matches("cache_ttl", errs_of{ cache_ttl = 0 }, 1, true)
    assert.matches("ttl_by_status", errs_of{ ttl_by_status = { ["2xx"] = 5 } }, 1, true)
    assert.matches("vary_headers[0]", errs_of{ vary_headers = { "bad header" } }, 1, true)
  end)

  it("strategy redis with its connection fields", function()
    local c = conf_of{ strategy = "redis", redis_port = 6380, redis_password = "pw" }
    assert.equal("127.0.0.1", c.redis_host)
    assert.equal(6380, c.redis_port)
    assert.equal(0, c.redis_database)
    assert.equal(1000, c.redis_timeout)
  end)
end)

describe("proxy-cache rules", function()
  local H
  lazy_setup(function() H = dofile(ROOT .. "/handler.lua") end)

  it("sorts the query", function()
    assert.equal("a=1&b=2&c", H.sorted_query("c&b=2&a=1"))
    assert.equal("a=1&a=2", H.sorted_query("a=2&&a=1&"))
    assert.equal("", H.sorted_query(""))
  end)

  it("parses Cache-Control directives", function()
    local d = H.directives('public, max-age=60, s-maxage="30", No-Store')
    assert.is_true(d.public)
    assert.equal("60", d["max-age"])
    assert.equal("30", d["s-maxage"])
    assert.is_true(d["no-store"])
    assert.same({}, H.directives(nil))
    assert.equal("5", H.directives({ "private", "max-age=5" })["max-age"])
  end)

  it("TTL: ttl_by_status, else cache_ttl", function()
    local c = conf_of{ ttl_by_status = { ["200"] = 300, ["404"] = 60 }, cache_ttl = 10 }
    assert.equal(300, H.ttl_for(c, 200))
    assert.equal(60, H.ttl_for(c, 404))
    assert.equal(10, H.ttl_for(c, 301))
    local z = conf_of{ ttl_by_status = { ["404"] = 0 } }
    assert.same({ nil, "ttl" }, { H.ttl_for(z, 404) })
  end)

  it("TTL: no-store, private and no-cache are never stored", function()
    for _, cc in ipairs({ "no-store", "private", "no-cache", "public, max-age=60, private" }) do
      assert.same({ nil, "cache-control" }, { H.ttl_for(conf_of(), 200, cc) })
      assert.same({ nil, "cache-control" }, { H.ttl_for(conf_of{ cache_control = true }, 200, cc) })
    end
  end)

  it("TTL: s-maxage, then max-age, with cache_control only", function()
    local on, off = conf_of{ cache_control = true }, conf_of()
    assert.equal(60, H.ttl_for(on, 200, "max-age=60"))
    assert.equal(30, H.ttl_for(on, 200, "max-age=60, s-maxage=30"))
    assert.same({ nil, "cache-control" }, { H.ttl_for(on, 200, "max-age=0") })
    assert.equal(300, H.ttl_for(on, 200, "public"))
    assert.equal(300, H.ttl_for(off, 200, "max-age=60"))
  end)
end)

describe("proxy-cache on gw.test.context", function()
  local H, store, conf

  -- a storage behind the plugin's interface: a plain table
  local function fake_storage()
    local t = { data = {}, ttls = {} }
    function t:get(k) return self.data[k] end
    function t:set(k, v, ttl) self.data[k], self.ttls[k] = v, ttl return true end
    function t:delete(k) self.data[k] = nil return true end
    function t:purge() self.data = {} return true end
    return t
  end

  lazy_setup(function()
    H = dofile(ROOT .. "/handler.lua")
    H.STORAGES.fake = function() return store end
  end)
  before_each(function()
    store = fake_storage()
    conf = conf_of{ vary_headers = { "X-Tenant" }, cache_key_header = true }
    conf.strategy = "fake"
  end)

  local function key_of(spec, c)
    local ctx = gw.test.context(spec)
    local key, text
    ctx:run({ access = function() key, text = H.cache_key(c or conf) end }, "access", c or conf)
    return key, text
  end

  it("builds the key from method, host, path, sorted query and vary headers", function()
    local k1, text = key_of{ method = "GET", path = "/a?b=2&a=1", headers = { Host = "Example.com", ["X-Tenant"] = "t1" } }
    assert.equal("GET\nexample.com\n/a\na=1&b=2\nx-tenant=t1", text)
    assert.matches("^%x+$", k1)
    assert.equal(32, #k1)
    assert.equal(k1, (key_of{ method = "GET", path = "/a?a=1&b=2", headers = { Host = "example.com", ["X-Tenant"] = "t1" } }))
    -- HEAD shares the GET entry; other methods do not
    assert.equal(k1, (key_of{ method = "HEAD", path = "/a?a=1&b=2", headers = { Host = "example.com", ["X-Tenant"] = "t1" } }))
    assert.not_equal(k1, (key_of{ method = "POST", path = "/a?a=1&b=2", headers = { Host = "example.com", ["X-Tenant"] = "t1" } }))
    assert.not_equal(k1, (key_of{ method = "GET", path = "/a?a=1&b=2", headers = { Host = "example.com", ["X-Tenant"] = "t2" } }))
    assert.not_equal(k1, (key_of{ method = "GET", path = "/a?a=1&b=2", headers = { Host = "other.com", ["X-Tenant"] = "t1" } }))
  end)

  it("adds the consumer with vary_consumer", function()
    local c = conf_of{ vary_consumer = true }
    local ctx = gw.test.context{ path = "/p", headers = { Host = "h" } }
    local text
    ctx:run({ access = function()
      gw.client.authenticate({ id = "c-1", username = "alice" }, nil)
      text = select(2, H.cache_key(c))
    end }, "access", c)
    assert.equal("GET\nh\n/p\n\nconsumer=c-1", text)
  end)

  it("Miss stores the response; the next request is a Hit from access", function()
    local ctx = gw.test.context{ path = "/x", headers = { Host = "h" } }
    ctx:run(H, "access", conf)
    assert.is_nil(ctx.exit_status)
    ctx:set_response(200, { ["Content-Type"] = "application/json", ["Content-Length"] = "7" })
    ctx:run(H, "header_filter", conf)
    assert.equal("Miss", ctx:response_header("X-Cache-Status"))
    local key = ctx:response_header("X-Cache-Key")
    assert.matches("^%x+$", key)
    -- body_filter needs the gathered body: store it the way body_filter does
    ctx:run({ header_filter = function() H.save(conf, gw.ctx.plugin, '{"a":1}') end }, "header_filter", conf)
    local raw = store.data[H.PREFIX .. key]
    assert.truthy(raw)
    assert.equal(300 + H.GRACE, store.ttls[H.PREFIX .. key])

    local ctx2 = gw.test.context{ path = "/x", headers = { Host = "h" } }
    assert.equal("exit", ctx2:run(H, "access", conf))
    assert.equal(200, ctx2.exit_status)
    assert.equal('{"a":1}', ctx2.exit_body)
    assert.equal("Hit", ctx2:response_header("X-Cache-Status"))
    assert.equal("0", ctx2:response_header("Age"))
    assert.equal("application/json", ctx2:response_header("Content-Type"))
  end)

  it("Bypass: a method not listed, a status not listed, a content type not listed", function()
    local ctx = gw.test.context{ method = "POST", path = "/x" }
    ctx:run(H, "access", conf)
    ctx:set_response(200, { ["Content-Type"] = "application/json" })
    ctx:run(H, "header_filter", conf)
    assert.equal("Bypass", ctx:response_header("X-Cache-Status"))
    for _, r in ipairs({ { 500, "application/json" }, { 200, "image/png" }, { 201, "text/plain" } }) do
      ctx = gw.test.context{ path = "/x" }
      ctx:run(H, "access", conf)
      ctx:set_response(r[1], { ["Content-Type"] = r[2] })
      ctx:run(H, "header_filter", conf)
      assert.equal("Bypass", ctx:response_header("X-Cache-Status"))
    end
    assert.same({}, store.data)
  end)

  it("Bypass: a request's no-cache with cache_control, a Content-Length over max_body_size, Set-Cookie", function()
    local c = conf_of{ cache_control = true, max_body_size = 10 }
    c.strategy = "fake"
    local ctx = gw.test.context{ path = "/x", headers = { ["Cache-Control"] = "no-cache" } }
    ctx:run(H, "access", c)
    ctx:set_response(200, { ["Content-Type"] = "text/plain" })
    ctx:run(H, "header_filter", c)
    assert.equal("Bypass", ctx:response_header("X-Cache-Status"))
    ctx = gw.test.context{ path = "/x" }
    ctx:run(H, "access", c)
    ctx:set_response(200, { ["Content-Type"] = "text/plain", ["Content-Length"] = "11" })
    ctx:run(H, "header_filter", c)
    assert.equal("Bypass", ctx:response_header("X-Cache-Status"))
    ctx = gw.test.context{ path = "/x" }
    ctx:run(H, "access", c)
    ctx:set_response(200, { ["Content-Type"] = "text/plain", ["Set-Cookie"] = "s=1" })
    ctx:run(H, "header_filter", c)
    assert.equal("Bypass", ctx:response_header("X-Cache-Status"))
  end)

  it("a body over max_body_size is not stored", function()
    local c = conf_of{ max_body_size = 3 }
    c.strategy = "fake"
    local ctx = gw.test.context{ path = "/big" }
    ctx:run(H, "access", c)
    ctx:set_response(200, { ["Content-Type"] = "text/plain" })
    ctx:run(H, "header_filter", c)
    ctx:run({ header_filter = function() H.save(c, gw.ctx.plugin, "abcd") end }, "header_filter", c)
    assert.same({}, store.data)
  end)

  it("an expired entry: Expired, and Stale on a 5xx within stale_ttl", function()
    local c = conf_of{ stale_ttl = 60 }
    c.strategy = "fake"
    local ctx = gw.test.context{ path = "/s" }
    ctx:run(H, "access", c)
    ctx:set_response(200, { ["Content-Type"] = "text/plain", ["X-Up"] = "1" })
    ctx:run(H, "header_filter", c)
    ctx:run({ header_filter = function() H.save(c, gw.ctx.plugin, "old") end }, "header_filter", c)
    -- age the entry by hand: stored `ago` seconds ago, fresh for 300
    local function age(ago)
      for k, v in pairs(store.data) do
        local nl = v:find("\n", 1, true)
        local meta = gw.json.decode(v:sub(1, nl - 1))
        meta.stored_at, meta.expires = gw.now() - ago, gw.now() - ago + 300
        store.data[k] = gw.json.encode(meta) .. "\n" .. v:sub(nl + 1)
      end
    end
    age(310)
    ctx = gw.test.context{ path = "/s" }
    ctx:run(H, "access", c)
    assert.is_nil(ctx.exit_status)
    ctx:set_response(200, { ["Content-Type"] = "text/plain" })
    ctx:run(H, "header_filter", c)
    assert.equal("Expired", ctx:response_header("X-Cache-Status"))

    ctx = gw.test.context{ path = "/s" }
    ctx:run(H, "access", c)
    ctx:set_response(503, { ["Content-Type"] = "application/json" })
    ctx:run(H, "header_filter", c)
    assert.equal("Stale", ctx:response_header("X-Cache-Status"))
    assert.equal(200, ctx.response.status)
    assert.equal("1", ctx:response_header("X-Up"))
    assert.equal("text/plain", ctx:response_header("Content-Type"))
    assert.equal("310", ctx:response_header("Age"))

    -- past stale_ttl: the error goes through
    age(400)
    ctx = gw.test.context{ path = "/s" }
    ctx:run(H, "access", c)
    ctx:set_response(503, { ["Content-Type"] = "application/json" })
    ctx:run(H, "header_filter", c)
    assert.equal("Bypass", ctx:response_header("X-Cache-Status"))
    assert.equal(503, ctx.response.status)
  end)

  it("no storage (a dict not declared): Bypass, and the request goes on", function()
    local c = conf_of{ dict = "unit_not_declared" }
    local ctx = gw.test.context{ path = "/x" }
    ctx:run(H, "access", c)
    assert.is_nil(ctx.exit_status)
    ctx:set_response(200, { ["Content-Type"] = "text/plain" })
    ctx:run(H, "header_filter", c)
    assert.equal("Bypass", ctx:response_header("X-Cache-Status"))
  end)
end)
