-- oauth2-introspection in a running gw against the mock identity provider
-- (spec/fixtures/mock_upstream.py /introspect: the token is the base64url of the JSON answer).
-- Active, inactive, scopes, consumers and anonymous, a slow and a down provider, and the cache:
-- the provider sees one call for many requests.
local helpers = require "spec.helpers"
local cjson = require "cjson"
local socket = require "socket"

local function b64url(s)
  local A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local idx = { math.floor(n / 262144) % 64, math.floor(n / 4096) % 64, math.floor(n / 64) % 64, n % 64 }
    local k = c and 4 or b and 3 or 2
    for j = 1, k do out[#out + 1] = A:sub(idx[j] + 1, idx[j] + 1) end
  end
  return table.concat(out)
end

local seq = 0
-- A token the mock provider answers with `doc`; each call gives a new token (a "nonce" field), so
-- no test sees another's cache entry.
local function token(doc)
  seq = seq + 1
  local d = { _n = seq .. "-" .. math.random(1e9) }
  for k, v in pairs(doc) do d[k] = v end
  return b64url(cjson.encode(d))
end

local ALICE = "a1b2c3d4-0000-4000-8000-000000000001"
local SVC = "a1b2c3d4-0000-4000-8000-000000000002"
local ANON = "a1b2c3d4-0000-4000-8000-000000000003"

describe("oauth2-introspection", function()
  local idp, client

  local function introspections() return helpers.mock_stats(idp[1]).introspections end
  local function reset() helpers.mock_stats(idp[1], true) end

  local function get(path, tok, extra)
    local headers = { Authorization = tok and ("Bearer " .. tok) or nil }
    for k, v in pairs(extra or {}) do headers[k] = v end
    return assert(client:get(path, { headers = headers }))
  end

  -- the request as the echo service saw it
  local function upstream(res)
    local e = cjson.decode(assert.res_status(200, res))
    return e.headers, e
  end

  lazy_setup(function()
    idp = helpers.start_mock_upstream{ name = "idp" }
    local base = "http://127.0.0.1:" .. idp[1]
    local function plugin(config)
      local c = { introspection_url = base .. "/introspect", client_id = "gw-client", client_secret = "gw-secret" }
      for k, v in pairs(config or {}) do c[k] = v end
      return { { name = "oauth2-introspection", config = c } }
    end
    local function svc(name, path, config)
      return { name = name, url = "echo://", routes = { { paths = { path } } }, plugins = plugin(config) }
    end
    helpers.start_gw{ config = {
      gw = { shared_dicts = { oauth2_introspection = "1m" }, workers = 2 },
      consumers = {
        { id = ALICE, username = "alice" },
        { id = SVC, username = "svc", custom_id = "client-svc" },
        { id = ANON, username = "anon" },
      },
      services = {
        svc("api", "/api", { required_scopes = { "read" } }),
        svc("by-client", "/by-client", { consumer_by = "client_id", anonymous = "anon" }),
        svc("anon", "/anon", { anonymous = ANON }),
        svc("slow", "/slow", { timeout = 500 }),
        svc("down", "/down", { introspection_url = "http://127.0.0.1:" .. helpers.get_free_port() .. "/introspect",
                               timeout = 2000 }),
        svc("badcreds", "/badcreds", { client_secret = "wrong" }),
        svc("hidden", "/hidden", { token_query = "access_token", hide_credentials = true }),
        svc("header", "/header", { token_header = "X-Token" }),
        svc("short", "/short", { ttl = 1, negative_ttl = 1 }),
        svc("lru", "/lru", { cache_dict = "not_declared" }),
        svc("other-auth", "/other-auth", { introspection_url = base .. "/introspect?auth=other:pw%3Aw",
                                           client_id = "other", client_secret = "pw:w" }),
      },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  describe("active tokens", function()
    it("go through with the consumer and the credential headers", function()
      local h = upstream(get("/api", token{ active = true, sub = "alice", client_id = "app-1", scope = "read write",
                                            _exp_in = 600 }))
      assert.equal(ALICE, h["x-consumer-id"])
      assert.equal("alice", h["x-consumer-username"])
      assert.is_nil(h["x-consumer-custom-id"])
      assert.is_nil(h["x-anonymous-consumer"])
      assert.equal("app-1", h["x-credential-identifier"])
      assert.equal("read write", h["x-authenticated-scope"])
      assert.equal("alice", h["x-authenticated-userid"])
      assert.truthy(h.authorization)       -- hide_credentials is off
    end)

    it("a client's own X-Consumer-* headers are replaced or removed", function()
      local h = upstream(get("/api", token{ active = true, sub = "nobody", scope = "read" },
        { ["X-Consumer-Username"] = "admin", ["X-Anonymous-Consumer"] = "false", ["X-Credential-Identifier"] = "x" }))
      assert.is_nil(h["x-consumer-username"])
      assert.is_nil(h["x-anonymous-consumer"])
      assert.equal("nobody", h["x-credential-identifier"])
    end)

    it("consumer_by client_id finds the consumer by custom_id", function()
      local h = upstream(get("/by-client", token{ active = true, sub = "someone", client_id = "client-svc" }))
      assert.equal(SVC, h["x-consumer-id"])
      assert.equal("client-svc", h["x-consumer-custom-id"])
      assert.equal("svc", h["x-consumer-username"])
    end)

    it("no consumer matches: anonymous when configured, with the credential", function()
      local h = upstream(get("/by-client", token{ active = true, sub = "s", client_id = "unknown-client" }))
      assert.equal("anon", h["x-consumer-username"])
      assert.equal("true", h["x-anonymous-consumer"])
      assert.equal("unknown-client", h["x-credential-identifier"])
    end)

    it("the token from a query argument, hidden from the upstream", function()
      local tok = token{ active = true, sub = "alice" }
      local res = assert(client:get("/hidden/x?a=1&access_token=" .. tok .. "&b=2"))
      local h, e = upstream(res)
      assert.equal("a=1&b=2", e.query)
      assert.equal("alice", h["x-consumer-username"])
      -- and from the header, hidden too
      h = upstream(get("/hidden", tok))
      assert.is_nil(h.authorization)
    end)

    it("the token from another header, Bearer optional", function()
      local tok = token{ active = true, sub = "alice" }
      assert.equal("alice", upstream(get("/header", nil, { ["X-Token"] = tok }))["x-consumer-username"])
      assert.equal("alice", upstream(get("/header", nil, { ["X-Token"] = "Bearer " .. tok }))["x-consumer-username"])
    end)

    it("gw authenticates to the provider with its client credentials (form-encoded, then Basic)", function()
      local h = upstream(get("/other-auth", token{ active = true, sub = "alice" }))
      assert.equal("alice", h["x-consumer-username"])
    end)
  end)

  describe("refused tokens", function()
    it("active: false is 401 invalid_token", function()
      local res = get("/api", token{ active = false })
      local body = assert.res_status(401, res)
      assert.equal("The access token is invalid or has expired", cjson.decode(body).message)
      assert.equal('Bearer realm="gw", error="invalid_token"', res.headers["www-authenticate"])
    end)

    it("a token the provider does not know is 401", function()
      assert.res_status(401, get("/api", "not-a-token-the-idp-knows"))
    end)

    it("active but expired (exp in the past) is 401", function()
      assert.res_status(401, get("/api", token{ active = true, sub = "alice", scope = "read", _exp_in = -10 }))
    end)

    it("no token, or another scheme, is 401 without an error code", function()
      local res = get("/api")
      assert.equal("The access token is missing", cjson.decode(assert.res_status(401, res)).message)
      assert.equal('Bearer realm="gw"', res.headers["www-authenticate"])
      res = assert(client:get("/api", { headers = { Authorization = "Basic dTpw" } }))
      assert.res_status(401, res)
    end)

    it("a missing scope is 403 insufficient_scope", function()
      local res = get("/api", token{ active = true, sub = "alice", scope = "write admin" })
      local body = assert.res_status(403, res)
      assert.equal("The access token does not have the required scope", cjson.decode(body).message)
      assert.equal('Bearer realm="gw", error="insufficient_scope", scope="read"', res.headers["www-authenticate"])
      assert.res_status(403, get("/api", token{ active = true, sub = "alice" }))   -- no scope at all
    end)

    it("hostile tokens get 401, never 500, and are not sent to the provider", function()
      reset()
      for _, t in ipairs{ string.rep("a", 9000), "a\"b", "a%00b", "a,b", "<script>", "a\\b", "é" } do
        local res = get("/api", t)
        assert.res_status(401, res)
      end
      assert.equal(0, introspections())
    end)

    it("with anonymous, a failed authentication goes through as that consumer", function()
      for _, tok in ipairs{ false, token{ active = false } } do
        local h = upstream(get("/anon", tok or nil))
        assert.equal(ANON, h["x-consumer-id"])
        assert.equal("true", h["x-anonymous-consumer"])
        assert.is_nil(h["x-credential-identifier"])
      end
    end)
  end)

  describe("provider failures", function()
    it("a slow provider: 503 within the timeout", function()
      local t0 = socket.gettime()
      local res = get("/slow", token{ active = true, sub = "alice", _delay_ms = 3000 })
      local body = assert.res_status(503, res)
      assert.equal("The authorization server is unavailable", cjson.decode(body).message)
      local took = socket.gettime() - t0
      assert.is_true(took >= 0.45 and took < 1.5, "took " .. took .. " s")
    end)

    it("a provider that is down: 503 at once", function()
      local t0 = socket.gettime()
      assert.res_status(503, get("/down", token{ active = true, sub = "alice" }))
      assert.is_true(socket.gettime() - t0 < 1.5)
      assert.logfile().has.line("introspection at http://127.0.0.1:%d+/introspect failed: connect failed")
    end)

    it("the provider refusing gw's credentials: 503, not 401", function()
      assert.res_status(503, get("/badcreds", token{ active = true, sub = "alice" }))
      assert.logfile().has.line("failed: status 401", true)
    end)

    it("nonsense from the provider: 503", function()
      for _, doc in ipairs{
        { _status = 500, active = true },
        { _raw = "not json" },
        { _raw = "[1,2,3]" },
        { _raw = '{"active":"yes"}' },
        { _raw = '{"sub":"alice"}' },
      } do
        assert.res_status(503, get("/api", token(doc)))
      end
    end)

    it("failures are not cached", function()
      reset()
      local tok = token{ active = true, sub = "alice", scope = "read", _status = 502 }
      for _ = 1, 3 do assert.res_status(503, get("/api", tok)) end
      assert.equal(3, introspections())
    end)
  end)

  describe("the cache", function()
    it("one introspection for many requests with the same token (two workers, one shared dict)", function()
      reset()
      local tok = token{ active = true, sub = "alice", scope = "read", _exp_in = 600 }
      for _ = 1, 30 do
        local c = helpers.proxy_client()   -- new connections: both workers take some
        assert.equal("alice", upstream(assert(c:get("/api", { headers = { Authorization = "Bearer " .. tok } })))["x-consumer-username"])
        c:close()
      end
      assert.equal(1, introspections())
    end)

    it("inactive results are cached too (negative_ttl)", function()
      reset()
      local tok = token{ active = false }
      for _ = 1, 10 do assert.res_status(401, get("/api", tok)) end
      assert.equal(1, introspections())
    end)

    it("entries expire: active after min(ttl, exp), inactive after negative_ttl", function()
      reset()
      local active = token{ active = true, sub = "alice", _exp_in = 600 }   -- /short: ttl 1 s
      local inactive = token{ active = false }                             -- negative_ttl 1 s
      upstream(get("/short", active))
      assert.res_status(401, get("/short", inactive))
      upstream(get("/short", active))
      assert.res_status(401, get("/short", inactive))
      assert.equal(2, introspections())
      socket.sleep(1.3)
      upstream(get("/short", active))
      assert.res_status(401, get("/short", inactive))
      assert.equal(4, introspections())
      -- exp sooner than ttl (60 s on /api): the entry goes with the token
      reset()
      local soon = token{ active = true, sub = "alice", scope = "read", _exp_in = 2 }
      upstream(get("/api", soon))
      upstream(get("/api", soon))
      assert.equal(1, introspections())
      socket.sleep(2.3)
      upstream(get("/api", soon))      -- the provider renews exp on every call in this mock
      assert.equal(2, introspections())
    end)

    it("concurrent requests with a new token wait for one call", function()
      reset()
      local tok = token{ active = true, sub = "alice", scope = "read", _delay_ms = 300, _exp_in = 600 }
      local cs = {}
      for i = 1, 10 do
        cs[i] = helpers.proxy_client()
        assert(cs[i]:raw("GET /api HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " .. tok .. "\r\n\r\n"))
      end
      for i = 1, 10 do
        assert.res_status(200, assert(cs[i]:read_response()))
        cs[i]:close()
      end
      -- at most one call per worker
      assert.is_true(introspections() <= 2, "introspections: " .. introspections())
    end)

    it("a cache_dict missing from gw.shared_dicts is declared for the plugin: one cache for the workers", function()
      reset()
      local tok = token{ active = true, sub = "alice", _exp_in = 600 }
      for _ = 1, 10 do
        local c = helpers.proxy_client()     -- a connection each: both workers take part
        upstream(c:get("/lru", { headers = { Authorization = "Bearer " .. tok } }))
        c:close()
      end
      assert.equal(1, introspections())
      assert.logfile().has.no.line("shared dict 'not_declared' is not declared", true)
    end)
  end)

  it("gw keeps serving: no worker died", function()
    assert.logfile().has.no.line("died", true)
    assert.logfile().has.no.line("An unexpected error occurred", true)
  end)
end)
