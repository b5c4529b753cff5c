-- cors (unit): the handler in gw.test.context, with configs normalized by the real schema.
local helpers = require "spec.helpers"

local handler = dofile(helpers.repo .. "/plugins/cors/handler.lua")

local SEED = { origins = { "https://app.example.com", "https://admin.example.com" },
               credentials = true, max_age = 86400 }

local function conf(c) return assert(helpers.validate_plugin_config("cors", c)) end

local function preflight(c, origin, method, extra)
  local headers = { Origin = origin, ["Access-Control-Request-Method"] = method or "POST" }
  for k, v in pairs(extra or {}) do headers[k] = v end
  local ctx = gw.test.context{ method = "OPTIONS", path = "/api", headers = headers }
  return ctx, ctx:run(handler, "access", c)
end

-- an actual request: access, then header_filter on `upstream_headers` as the upstream's answer
local function actual(c, origin, upstream_headers, method)
  local ctx = gw.test.context{ method = method or "GET", path = "/api", headers = { Origin = origin } }
  assert.is_true(ctx:run(handler, "access", c))
  ctx:set_response(200, upstream_headers or {})
  assert.is_true(ctx:run(handler, "header_filter", c))
  return ctx
end

local function cors_headers(ctx)
  local found = {}
  for name in pairs(ctx.response.headers) do
    if name:find("^access%-control%-") then found[#found + 1] = name end
  end
  table.sort(found)
  return found
end

-- every value of a response header, in order
describe("cors (unit)", function()
  describe("preflight", function()
    it("an allowed origin gets 204 with every Allow-* header (the seed's config)", function()
      local ctx, r = preflight(conf(SEED), "https://app.example.com", "PUT",
        { ["Access-Control-Request-Headers"] = "X-Token, Content-Type" })
      assert.equal("exit", r)
      assert.equal(204, ctx.exit_status)
      assert.equal("", ctx.exit_body)
      assert.equal("https://app.example.com", ctx:response_header("Access-Control-Allow-Origin"))
      assert.equal("true", ctx:response_header("Access-Control-Allow-Credentials"))
      assert.equal("GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT",
        ctx:response_header("Access-Control-Allow-Methods"))
      assert.equal("X-Token, Content-Type", ctx:response_header("Access-Control-Allow-Headers"))
      assert.equal("86400", ctx:response_header("Access-Control-Max-Age"))
      assert.equal("Origin, Access-Control-Request-Headers", ctx:response_header("Vary"))
      assert.is_nil(ctx:response_header("Access-Control-Allow-Private-Network"))
    end)

    it("configured methods and headers are sent as configured, not echoed", function()
      local c = conf{ origins = { "https://app.example.com" }, methods = { "GET", "POST" },
                      headers = { "X-Token", "Content-Type" } }
      local ctx = preflight(c, "https://app.example.com", "POST", { ["Access-Control-Request-Headers"] = "X-Other" })
      assert.equal(204, ctx.exit_status)
      assert.equal("GET,POST", ctx:response_header("Access-Control-Allow-Methods"))
      assert.equal("X-Token,Content-Type", ctx:response_header("Access-Control-Allow-Headers"))
      assert.equal("Origin", ctx:response_header("Vary"))
      assert.is_nil(ctx:response_header("Access-Control-Max-Age"))
      assert.is_nil(ctx:response_header("Access-Control-Allow-Credentials"))
    end)

    it("a disallowed origin gets 204 without any Access-Control-* header", function()
      for _, origin in ipairs({ "https://evil.example.com", "https://app.example.com.attacker",
                                "http://app.example.com", "https://app.example.com:8443", "null" }) do
        local ctx = preflight(conf(SEED), origin)
        assert.equal(204, ctx.exit_status)
        assert.same({}, cors_headers(ctx), origin)
        assert.equal("Origin, Access-Control-Request-Headers", ctx:response_header("Vary"))
      end
    end)

    it("a method outside `methods` gets no Allow-* header", function()
      local c = conf{ origins = { "https://app.example.com" }, methods = { "GET", "POST" } }
      local ctx = preflight(c, "https://app.example.com", "DELETE")
      assert.equal(204, ctx.exit_status)
      assert.same({}, cors_headers(ctx))
      -- methods are case-sensitive, as browsers compare them
      assert.same({}, cors_headers((preflight(c, "https://app.example.com", "post"))))
    end)

    it("Access-Control-Allow-Private-Network only when asked and enabled", function()
      local ask = { ["Access-Control-Request-Private-Network"] = "true" }
      local on = conf{ origins = { "https://app.example.com" }, private_network = true }
      local off = conf{ origins = { "https://app.example.com" } }
      assert.equal("true", preflight(on, "https://app.example.com", "GET", ask):response_header("Access-Control-Allow-Private-Network"))
      assert.is_nil(preflight(on, "https://app.example.com", "GET"):response_header("Access-Control-Allow-Private-Network"))
      assert.is_nil(preflight(off, "https://app.example.com", "GET", ask):response_header("Access-Control-Allow-Private-Network"))
      assert.is_nil(preflight(on, "https://evil.com", "GET", ask):response_header("Access-Control-Allow-Private-Network"))
    end)

    it("preflight_continue: access lets it through, header_filter leaves the upstream's answer alone", function()
      local c = conf{ origins = { "https://app.example.com" }, preflight_continue = true }
      local ctx, r = preflight(c, "https://app.example.com")
      assert.is_true(r)
      assert.is_nil(ctx.exit_status)
      ctx:set_response(200, { ["Access-Control-Allow-Origin"] = "https://upstream.example" })
      ctx:run(handler, "header_filter", c)
      assert.equal("https://upstream.example", ctx:response_header("Access-Control-Allow-Origin"))
      assert.is_nil(ctx:response_header("Vary"))
    end)

    it("OPTIONS without Access-Control-Request-Method is an actual request", function()
      local c = conf(SEED)
      local ctx = actual(c, "https://app.example.com", {}, "OPTIONS")
      assert.is_nil(ctx.exit_status)
      assert.equal("https://app.example.com", ctx:response_header("Access-Control-Allow-Origin"))
    end)
  end)

  describe("actual requests", function()
    it("an allowed origin gets Allow-Origin (echoed), Allow-Credentials, Expose-Headers and Vary", function()
      local c = conf{ origins = SEED.origins, credentials = true, exposed_headers = { "X-Request-Id", "ETag" } }
      local ctx = actual(c, "https://admin.example.com")
      assert.equal("https://admin.example.com", ctx:response_header("Access-Control-Allow-Origin"))
      assert.equal("true", ctx:response_header("Access-Control-Allow-Credentials"))
      assert.equal("X-Request-Id,ETag", ctx:response_header("Access-Control-Expose-Headers"))
      assert.equal("Origin", ctx:response_header("Vary"))
      assert.is_nil(ctx:response_header("Access-Control-Allow-Methods"))
    end)

    it("scheme and host compare case-insensitively, default ports are ignored", function()
      local c = conf{ origins = { "HTTPS://App.Example.com:443", "http://local.test:80", "http://[::1]:8080" } }
      for _, origin in ipairs({ "https://app.example.com", "https://APP.example.com:443",
                                "http://local.test", "http://LOCAL.test:80", "http://[::1]:8080" }) do
        assert.equal(origin, actual(c, origin):response_header("Access-Control-Allow-Origin"), origin)
      end
      for _, origin in ipairs({ "http://app.example.com", "https://app.example.com:80",
                                "http://local.test:8080", "https://local.test", "http://[::1]" }) do
        assert.is_nil(actual(c, origin):response_header("Access-Control-Allow-Origin"), origin)
      end
    end)

    it("exact origins are exact: a dot is not a wildcard", function()
      local c = conf(SEED)
      assert.is_nil(actual(c, "https://appxexample.com"):response_header("Access-Control-Allow-Origin"))
    end)

    it("patterns match the whole origin, case-insensitively", function()
      local c = conf{ origins = { "https://(.+\\.)?example\\.com", "http://localhost:\\d+" } }
      for _, origin in ipairs({ "https://example.com", "https://a.b.example.com", "https://A.EXAMPLE.COM",
                                "https://a.example.com:443", "http://localhost:3000" }) do
        assert.equal(origin, actual(c, origin):response_header("Access-Control-Allow-Origin"), origin)
      end
      for _, origin in ipairs({ "https://evil-example.com", "https://example.com.attacker",
                                "https://evil-example.com.attacker", "http://example.com",
                                "xhttps://example.com", "http://localhost:3000x", "http://localhost:" }) do
        assert.is_nil(actual(c, origin):response_header("Access-Control-Allow-Origin"), origin)
      end
    end)

    it("a disallowed origin gets no CORS header, even those the upstream set", function()
      local up = { ["Access-Control-Allow-Origin"] = "*", ["Access-Control-Allow-Credentials"] = "true",
                   ["Access-Control-Expose-Headers"] = "X-Secret", ["Access-Control-Max-Age"] = "10" }
      local ctx = actual(conf(SEED), "https://evil.com", up)
      assert.same({}, cors_headers(ctx))
      assert.equal("Origin", ctx:response_header("Vary"))
    end)

    it("an allowed origin: the plugin's values replace the upstream's", function()
      local up = { ["Access-Control-Allow-Origin"] = "*", ["Access-Control-Allow-Credentials"] = "true",
                   ["Access-Control-Expose-Headers"] = "X-Upstream" }
      local c = conf{ origins = SEED.origins, exposed_headers = { "X-Mine" } }
      local ctx = actual(c, "https://app.example.com", up)
      assert.same({ "https://app.example.com" }, ctx:response_headers("Access-Control-Allow-Origin"))
      assert.is_nil(ctx:response_header("Access-Control-Allow-Credentials"))   -- credentials: false
      assert.same({ "X-Mine" }, ctx:response_headers("Access-Control-Expose-Headers"))
      -- without exposed_headers the upstream's own list stays
      ctx = actual(conf{ origins = SEED.origins }, "https://app.example.com", up)
      assert.equal("X-Upstream", ctx:response_header("Access-Control-Expose-Headers"))
    end)

    it("no Origin: only Vary: Origin (the answer depends on it)", function()
      local ctx = actual(conf(SEED), nil, { ["Access-Control-Allow-Origin"] = "https://x.test" })
      assert.equal("Origin", ctx:response_header("Vary"))
      assert.equal("https://x.test", ctx:response_header("Access-Control-Allow-Origin"))
      assert.same({ "access-control-allow-origin" }, cors_headers(ctx))
    end)

    it("Vary: the upstream's is kept and Origin added once; Vary: * stays alone", function()
      local ctx = actual(conf(SEED), "https://app.example.com", { Vary = "Accept-Encoding" })
      assert.same({ "Accept-Encoding", "Origin" }, ctx:response_headers("Vary"))
      ctx = actual(conf(SEED), "https://app.example.com", { Vary = "Accept-Encoding, origin" })
      assert.same({ "Accept-Encoding, origin" }, ctx:response_headers("Vary"))
      ctx = actual(conf(SEED), "https://evil.com", { Vary = "*" })
      assert.same({ "*" }, ctx:response_headers("Vary"))
    end)

    it("origins * (or none) without credentials: Allow-Origin * on every response, no Vary", function()
      for _, c in ipairs({ conf{ origins = { "*" } }, conf{} }) do
        local ctx = actual(c, "https://anyone.test", { ["Access-Control-Allow-Credentials"] = "true" })
        assert.equal("*", ctx:response_header("Access-Control-Allow-Origin"))
        assert.is_nil(ctx:response_header("Access-Control-Allow-Credentials"))
        assert.is_nil(ctx:response_header("Vary"))
        assert.equal("*", actual(c, nil):response_header("Access-Control-Allow-Origin"))
        local pf = preflight(c, "https://anyone.test", "GET")
        assert.equal("*", pf:response_header("Access-Control-Allow-Origin"))
        assert.equal("Access-Control-Request-Headers", pf:response_header("Vary"))
      end
    end)

    it("origins * with credentials: the origin is echoed (browsers refuse * with credentials)", function()
      local c = conf{ origins = { "*" }, credentials = true }
      local ctx = actual(c, "https://anyone.test")
      assert.equal("https://anyone.test", ctx:response_header("Access-Control-Allow-Origin"))
      assert.equal("true", ctx:response_header("Access-Control-Allow-Credentials"))
      assert.equal("Origin", ctx:response_header("Vary"))
      assert.is_nil(actual(c, nil):response_header("Access-Control-Allow-Origin"))
      local pf = preflight(c, "https://anyone.test")
      assert.equal("https://anyone.test", pf:response_header("Access-Control-Allow-Origin"))
      assert.equal("true", pf:response_header("Access-Control-Allow-Credentials"))
    end)

    it("gw's own answers (errors, other plugins' exits) get the headers too", function()
      local c = conf(SEED)
      local ctx = gw.test.context{ path = "/api", headers = { Origin = "https://app.example.com" } }
      ctx:set_response(401, { ["Content-Type"] = "application/json" })
      ctx:run(handler, "header_filter", c)
      assert.equal("https://app.example.com", ctx:response_header("Access-Control-Allow-Origin"))
    end)
  end)

  it("compiles a conf once: exact origins in a hash, patterns in one anchored regex", function()
    local c = conf{ origins = { "https://A.example.com:443", "https://(.+\\.)?b\\.test", "https://c\\.test" } }
    local k = handler._compile(c)
    assert.same({ ["https://a.example.com"] = true }, k.exact)
    assert.equal("(?i)^(?:(?:https://(.+\\.)?b\\.test)|(?:https://c\\.test))\\z", k.pattern)
    assert.equal("https://a.com", handler._normalize("HTTPS://A.com:443"))
    assert.equal("http://a.com:443", handler._normalize("http://a.com:443"))
    assert.equal("https://a.com:8443", handler._normalize("https://a.com:8443"))
  end)
end)
