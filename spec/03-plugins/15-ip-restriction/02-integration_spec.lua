-- ip-restriction in a real gw: the TCP peer decides unless it is a trusted proxy; then
-- X-Forwarded-For does (IPv4 and IPv6 clients behind the proxy); the README's config runs.
local helpers = require "spec.helpers"
local cjson = require "cjson"

describe("ip-restriction (integration)", function()
  local up, client

  local function start(gwconf)
    helpers.stop_all()
    up = helpers.start_mock_upstream{ name = "ipr" }
    gwconf.workers = 1
    helpers.start_gw{ config = {
      gw = gwconf,
      services = {
        { name = "open", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/open" } } } },
        { name = "office", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/office" } } },
          plugins = { { name = "ip-restriction", config = { allow = { "192.168.10.0/24", "2001:db8:10::/48" },
                                                            deny = { "192.168.10.66" } } } } },
        { name = "local-only", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/local" } } },
          plugins = { { name = "ip-restriction", config = { allow = { "127.0.0.1" } } } } },
        { name = "blocked", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/blocked" } } },
          plugins = { { name = "ip-restriction", config = { deny = { "127.0.0.0/8", "::1" }, status = 429,
                                                            message = "go away" } } } },
      },
    } }
  end

  lazy_teardown(helpers.stop_all)
  after_each(function() if client then client:close() end end)

  describe("without trusted proxies", function()
    lazy_setup(function() start({}) end)
    before_each(function() client = helpers.proxy_client() end)

    it("judges the TCP peer", function()
      assert.res_status(200, client:get("/local/x"))
      assert.res_status(403, client:get("/office/x"))
      assert.same({ message = "go away" }, cjson.decode(assert.res_status(429, client:get("/blocked/x"))))
      assert.res_status(200, client:get("/open/x"))
    end)

    it("ignores a client's own X-Forwarded-For", function()
      local res = client:get("/office/x", { headers = { ["X-Forwarded-For"] = "192.168.10.5" } })
      assert.same({ message = "Your IP address is not allowed" }, cjson.decode(assert.res_status(403, res)))
      assert.res_status(429, client:get("/blocked/x", { headers = { ["X-Forwarded-For"] = "8.8.8.8" } }))
    end)
  end)

  describe("behind a trusted proxy (the loopback)", function()
    lazy_setup(function() start({ trusted_ips = { "127.0.0.1" } }) end)
    before_each(function() client = helpers.proxy_client() end)

    local function get(path, xff)
      return client:get(path, { headers = { ["X-Forwarded-For"] = xff } })
    end

    it("judges the client named by X-Forwarded-For, IPv4 and IPv6", function()
      local j = cjson.decode(assert.res_status(200, get("/office/x", "192.168.10.5")))
      assert.equal("/x", j.path)
      assert.res_status(200, get("/office/x", "2001:db8:10:1::5"))
      assert.res_status(403, get("/office/x", "192.168.11.5"))
      assert.res_status(403, get("/office/x", "2001:db8:11::5"))
    end)

    it("deny beats allow", function()
      assert.res_status(403, get("/office/x", "192.168.10.66"))
    end)

    it("takes the address the trusted proxy added, not what the client wrote before it", function()
      -- the client claims an office address; the proxy appended the real one
      assert.res_status(403, get("/office/x", "192.168.10.5, 203.0.113.50"))
    end)

    it("falls back to the peer without the header", function()
      assert.res_status(200, client:get("/local/x"))
      assert.res_status(429, client:get("/blocked/x"))
    end)
  end)
end)

describe("ip-restriction README", function()
  local readme = helpers.readme("ip-restriction")

  it("the YAML compiles", function()
    helpers.assert_yaml_compiles(readme.yamls[1], readme.label)
  end)

  it("runs: the office allow list through the trusted load balancer", function()
    local up = helpers.start_mock_upstream{ name = "ipr-readme" }
    finally(helpers.stop_all)
    helpers.start_gw{ yaml = helpers.local_gw_yaml(readme.yamls[1], { workers = 1, replace = {
      ["127%.0%.0%.1:900[01]"] = "127.0.0.1:" .. up[1], ['trusted_ips: %["10%.0%.0%.2"%]'] = 'trusted_ips: ["127.0.0.1"]' } }) }
    local c = helpers.proxy_client()
    local function status(path, xff)
      return c:get(path, { headers = { ["X-Forwarded-For"] = xff } }).status
    end
    assert.equal(200, status("/internal/x", "192.168.10.20"))
    assert.equal(403, status("/internal/x", "192.168.10.66"))
    assert.equal(403, status("/internal/x", "8.8.8.8"))
    assert.equal(200, status("/api/x", "8.8.8.8"))
    assert.equal(429, status("/api/x", "198.51.100.7"))
    assert.equal(429, status("/api/x", "2001:db8:bad:1::1"))
    c:close()
  end)
end)
