-- proxy-cache in a running gw (two workers) in front of the real mock upstream
-- (spec/fixtures/mock_upstream.py): /stats tells how many requests reached the upstream.
local helpers = require "spec.helpers"
local cjson = require "cjson"

describe("proxy-cache", function()
  local up, flaky, client

  -- requests the upstream saw since the last reset (the /stats request itself counts one)
  local function upstream_requests(port) return helpers.mock_stats(port or up[1]).requests - 1 end
  local function reset(port) helpers.mock_stats(port or up[1], true) end

  local function get(path, headers, method)
    local c = helpers.proxy_client()   -- a fresh connection each time: either worker may answer
    local res = assert(c:send{ method = method or "GET", path = path, headers = headers })
    c:close()
    return res
  end

  local function admin(method, path)
    local c = helpers.admin_client()
    local res = assert(c:send{ method = method, path = path })
    c:close()
    return res
  end

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "pc-up" }
    flaky = helpers.start_mock_upstream{ name = "pc-flaky" }
    local base = "http://127.0.0.1:" .. up[1]
    local function svc(name, url, path, config)
      local c = { cache_key_header = true }
      for k, v in pairs(config or {}) do c[k] = v end
      return { name = name, url = url, routes = { { paths = { path } } },
               plugins = { { name = "proxy-cache", config = c } } }
    end
    helpers.start_gw{ config = {
      gw = { shared_dicts = { proxy_cache = "4m", other_cache = "1m" }, workers = 2 },
      services = {
        svc("main", base .. "/c", "/c", { ttl_by_status = { ["200"] = 300, ["404"] = 60 } }),
        svc("vary", base .. "/v", "/v", { vary_headers = { "X-Tenant" } }),
        svc("status", base .. "/status", "/st", {}),
        svc("cc", base .. "/headers", "/cc", { cache_control = true }),
        svc("nocc", base .. "/headers", "/nocc", {}),
        svc("short", base .. "/short", "/short", { cache_ttl = 1 }),
        svc("stale", "http://127.0.0.1:" .. flaky[1] .. "/s", "/stale", { cache_ttl = 1, stale_ttl = 60 }),
        svc("nostale", "http://127.0.0.1:" .. flaky[1] .. "/n", "/nostale", { cache_ttl = 1 }),
        svc("limit", base .. "/l", "/limit", { max_body_size = 50 }),
        svc("raw", base .. "/bytes", "/raw", {}),
        svc("anytype", base .. "/bytes", "/anytype", { content_type = { "*" } }),
        svc("other", base .. "/o", "/other", { dict = "other_cache" }),
        svc("undeclared", base .. "/u", "/undeclared", { dict = "nope" }),
      },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function()
    assert.res_status(200, admin("DELETE", "/proxy-cache"))
    reset()
  end)

  it("Miss, then Hit: the upstream sees one request; the hit carries Age and the same body", function()
    local r1 = get("/c/a")
    local b1 = assert.res_status(200, r1)
    assert.equal("Miss", r1.headers["x-cache-status"])
    assert.matches("^%x+$", r1.headers["x-cache-key"])
    for _ = 1, 10 do
      local r = get("/c/a")
      assert.equal(b1, assert.res_status(200, r))
      assert.equal("Hit", r.headers["x-cache-status"])
      assert.equal(r1.headers["x-cache-key"], r.headers["x-cache-key"])
      assert.matches("^%d+$", r.headers["age"])
      assert.matches("application/json", r.headers["content-type"], 1, true)
    end
    assert.equal(1, upstream_requests())
  end)

  it("two workers share the cache", function()
    assert.equal(2, #helpers.gw_worker_pids())
    for _ = 1, 20 do get("/c/shared") end
    assert.equal(1, upstream_requests())
  end)

  it("HEAD is answered from the GET entry, with the entry's Content-Length; a HEAD stores nothing", function()
    assert.equal("Miss", get("/c/h", nil, "HEAD").headers["x-cache-status"])
    assert.equal("Miss", get("/c/h", nil, "HEAD").headers["x-cache-status"])
    local g = get("/c/h")
    assert.equal("Miss", g.headers["x-cache-status"])
    local h = get("/c/h", nil, "HEAD")
    assert.res_status(200, h)
    assert.equal("Hit", h.headers["x-cache-status"])
    assert.equal(tostring(#g.body), h.headers["content-length"])
    assert.equal("", h.body or "")
    assert.equal("Hit", get("/c/h").headers["x-cache-status"])
    assert.equal(3, upstream_requests())
  end)

  it("the key holds the sorted query", function()
    assert.equal("Miss", get("/c/q?b=2&a=1").headers["x-cache-status"])
    assert.equal("Hit", get("/c/q?a=1&b=2").headers["x-cache-status"])
    assert.equal("Miss", get("/c/q?a=1&b=3").headers["x-cache-status"])
    assert.equal("Miss", get("/c/q").headers["x-cache-status"])
    assert.equal(3, upstream_requests())
  end)

  it("the key holds the vary headers", function()
    assert.equal("Miss", get("/v/x", { ["X-Tenant"] = "a" }).headers["x-cache-status"])
    assert.equal("Hit", get("/v/x", { ["X-Tenant"] = "a" }).headers["x-cache-status"])
    local rb = get("/v/x", { ["X-Tenant"] = "b" })
    assert.equal("Miss", rb.headers["x-cache-status"])
    assert.equal("b", cjson.decode(rb.body).headers["x-tenant"])
    assert.equal("Miss", get("/v/x").headers["x-cache-status"])
    assert.equal(3, upstream_requests())
    -- without vary_headers a header does not split the key
    get("/c/nv", { ["X-Tenant"] = "a" })
    assert.equal("Hit", get("/c/nv", { ["X-Tenant"] = "b" }).headers["x-cache-status"])
  end)

  it("TTL expiry: Expired, then Hit again", function()
    assert.equal("Miss", get("/short/x").headers["x-cache-status"])
    assert.equal("Hit", get("/short/x").headers["x-cache-status"])
    helpers.sleep(1.3)
    assert.equal("Expired", get("/short/x").headers["x-cache-status"])
    assert.equal("Hit", get("/short/x").headers["x-cache-status"])
    assert.equal(2, upstream_requests())
  end)

  it("statuses: 404 cached (ttl_by_status), 500 and 201 bypass", function()
    assert.equal("Miss", get("/st/404").headers["x-cache-status"])
    local r = get("/st/404")
    assert.res_status(404, r)
    assert.equal("Hit", r.headers["x-cache-status"])
    for _ = 1, 2 do
      local r5 = get("/st/500")
      assert.res_status(500, r5)
      assert.equal("Bypass", r5.headers["x-cache-status"])
      assert.equal("Bypass", get("/st/201").headers["x-cache-status"])
    end
    assert.equal(5, upstream_requests())
  end)

  it("methods not listed bypass the cache", function()
    for _ = 1, 2 do
      local c = helpers.proxy_client()
      local r = assert(c:post("/c/p", { body = "x", headers = { ["Content-Type"] = "text/plain" } }))
      c:close()
      assert.res_status(200, r)
      assert.equal("Bypass", r.headers["x-cache-status"])
    end
    assert.equal(2, upstream_requests())
  end)

  it("content types not listed bypass; \"*\" caches any", function()
    assert.equal("Bypass", get("/raw/10").headers["x-cache-status"])
    assert.equal("Bypass", get("/raw/10").headers["x-cache-status"])
    assert.equal("Miss", get("/anytype/10").headers["x-cache-status"])
    local r = get("/anytype/10")
    assert.equal("Hit", r.headers["x-cache-status"])
    assert.equal(10, #r.body)
    assert.equal(3, upstream_requests())
  end)

  describe("Cache-Control", function()
    local function cc(prefix, value, headers)
      return get(prefix .. "?set=" .. ("Cache-Control:" .. value):gsub(" ", "%%20"):gsub(",", "%%2C"), headers)
    end

    it("no-store, private and no-cache responses are not stored", function()
      for _, v in ipairs({ "no-store", "private", "no-cache", "public, no-store" }) do
        assert.equal("Bypass", cc("/nocc", v).headers["x-cache-status"])
        assert.equal("Bypass", cc("/cc", v).headers["x-cache-status"])
      end
    end)

    it("max-age and s-maxage give the TTL (cache_control: true)", function()
      assert.equal("Miss", cc("/cc", "max-age=1").headers["x-cache-status"])
      assert.equal("Hit", cc("/cc", "max-age=1").headers["x-cache-status"])
      assert.equal("Miss", cc("/cc", "max-age=300, s-maxage=1").headers["x-cache-status"])
      assert.equal("Hit", cc("/cc", "max-age=300, s-maxage=1").headers["x-cache-status"])
      assert.equal("Bypass", cc("/cc", "max-age=0").headers["x-cache-status"])
      -- cache_control off: max-age is ignored, cache_ttl (300) applies
      assert.equal("Miss", cc("/nocc", "max-age=1").headers["x-cache-status"])
      helpers.sleep(1.3)
      assert.equal("Expired", cc("/cc", "max-age=1").headers["x-cache-status"])
      assert.equal("Expired", cc("/cc", "max-age=300, s-maxage=1").headers["x-cache-status"])
      assert.equal("Hit", cc("/nocc", "max-age=1").headers["x-cache-status"])
    end)

    it("a request's no-cache or no-store bypasses the cache (cache_control: true)", function()
      assert.equal("Miss", cc("/cc", "max-age=60").headers["x-cache-status"])
      assert.equal("Bypass", cc("/cc", "max-age=60", { ["Cache-Control"] = "no-cache" }).headers["x-cache-status"])
      assert.equal("Bypass", cc("/cc", "max-age=60", { ["Cache-Control"] = "no-store" }).headers["x-cache-status"])
      assert.equal("Hit", cc("/cc", "max-age=60").headers["x-cache-status"])
      -- cache_control off: the request's directives are ignored
      cc("/nocc", "public")
      assert.equal("Hit", cc("/nocc", "public", { ["Cache-Control"] = "no-cache" }).headers["x-cache-status"])
    end)
  end)

  it("a body over max_body_size is not stored", function()
    for _ = 1, 2 do
      local r = get("/limit/x")
      assert.res_status(200, r)
      assert.equal("Bypass", r.headers["x-cache-status"])
      assert.truthy(#r.body > 50)
    end
    assert.equal(2, upstream_requests())
  end)

  it("stale on upstream error: the expired entry is served while stale_ttl allows", function()
    reset(flaky[1])
    local fresh = get("/stale/x")
    assert.equal("Miss", fresh.headers["x-cache-status"])
    assert.equal("Miss", get("/nostale/x").headers["x-cache-status"])
    helpers.sleep(1.3)
    helpers.stop_mock_upstream("pc-flaky")
    local r = get("/stale/x")
    assert.equal(fresh.body, assert.res_status(200, r))
    assert.equal("Stale", r.headers["x-cache-status"])
    assert.matches("^%d+$", r.headers["age"])
    -- without stale_ttl the error goes through
    local r2 = get("/nostale/x")
    assert.res_status(502, r2)
    assert.equal("Bypass", r2.headers["x-cache-status"])
    flaky = helpers.start_mock_upstream{ name = "pc-flaky", port = flaky[1] }
    assert.equal("Expired", get("/stale/x").headers["x-cache-status"])
    assert.equal("Hit", get("/stale/x").headers["x-cache-status"])
  end)

  describe("purge through the admin API", function()
    it("DELETE /proxy-cache/{key} removes one entry; an unknown key is 404", function()
      local k = get("/c/p1").headers["x-cache-key"]
      get("/c/p2")
      assert.equal("Hit", get("/c/p1").headers["x-cache-status"])
      local res = admin("DELETE", "/proxy-cache/" .. k)
      assert.equal(1, cjson.decode(assert.res_status(200, res)).entries)
      assert.equal("Miss", get("/c/p1").headers["x-cache-status"])
      assert.equal("Hit", get("/c/p2").headers["x-cache-status"])
      assert.res_status(404, admin("DELETE", "/proxy-cache/0123456789abcdef0123456789abcdef"))
      assert.res_status(405, admin("GET", "/proxy-cache"))
    end)

    it("DELETE /proxy-cache removes every entry of every proxy-cache dict", function()
      get("/c/p1"); get("/c/p2"); get("/other/p3")
      assert.equal("Hit", get("/other/p3").headers["x-cache-status"])
      local body = cjson.decode(assert.res_status(200, admin("DELETE", "/proxy-cache")))
      assert.equal(3, body.entries)
      assert.equal("Miss", get("/c/p1").headers["x-cache-status"])
      assert.equal("Miss", get("/c/p2").headers["x-cache-status"])
      assert.equal("Miss", get("/other/p3").headers["x-cache-status"])
    end)
  end)

  it("a dict missing from gw.shared_dicts is declared for the plugin (16 MiB): it caches", function()
    local r = get("/undeclared/x")
    assert.res_status(200, r)
    assert.equal("Miss", r.headers["x-cache-status"])
    r = get("/undeclared/x")
    assert.res_status(200, r)
    assert.equal("Hit", r.headers["x-cache-status"])
    assert.is_nil(helpers.gw_log():find("is not declared", 1, true))
  end)
end)
