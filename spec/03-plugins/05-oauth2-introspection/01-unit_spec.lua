-- oauth2-introspection: its schema, its README's YAML, and the handler on gw.test.context
-- requests against the mock identity provider (spec/fixtures/mock_upstream.py /introspect).
local helpers = require "spec.helpers"
local cjson = require "cjson"

local ROOT = helpers.repo .. "/plugins/oauth2-introspection"

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

-- a token the mock provider answers with `doc`
local function token(doc) return b64url(cjson.encode(doc)) end

describe("oauth2-introspection schema", function()
  local base = { introspection_url = "https://idp.example/introspect", client_id = "gw", client_secret = "s" }

  it("fills in the defaults", function()
    local conf = assert(helpers.validate_plugin_config("oauth2-introspection", base))
    assert.equal("Authorization", conf.token_header)
    assert.equal("sub", conf.consumer_by)
    assert.equal(5000, conf.timeout)
    assert.equal(60, conf.ttl)
    assert.equal(5, conf.negative_ttl)
    assert.equal("oauth2_introspection", conf.cache_dict)
    assert.is_true(conf.ssl_verify)
    assert.same({}, conf.required_scopes)
    assert.equal("access_token", conf.token_type_hint)
  end)

  it("requires the endpoint and the client credentials", function()
    local text = helpers.plugin_config_errors("oauth2-introspection", {})
    assert.matches("config.introspection_url: required field missing", text, 1, true)
    assert.matches("config.client_id: required field missing", text, 1, true)
    assert.matches("config.client_secret: required field missing", text, 1, true)
  end)

  it("refuses bad values", function()
    local function errs_of(extra)
      local c = {}
      for k, v in pairs(base) do c[k] = v end
      for k, v in pairs(extra) do c[k] = v end
      return helpers.plugin_config_errors("oauth2-introspection", c)
    end
    assert.matches("introspection_url: must match", errs_of{ introspection_url = "ftp://idp/" }, 1, true)
    assert.matches("consumer_by: expected one of: sub, client_id", errs_of{ consumer_by = "email" }, 1, true)
    assert.matches("required_scopes[0]: a scope is printable ASCII", errs_of{ required_scopes = { "a b" } }, 1, true)
    assert.matches("timeout: value should be between 1 and 600000", errs_of{ timeout = 0 }, 1, true)
    assert.matches("ttl:", errs_of{ ttl = 0 }, 1, true)
    assert.matches("token_header: must match", errs_of{ token_header = "bad header" }, 1, true)
  end)

  it("the README's YAML compiles", function()
    helpers.assert_yaml_compiles(helpers.readme("oauth2-introspection"))
  end)
end)

describe("oauth2-introspection handler (gw.test.context)", function()
  local handler, up, conf

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "idp-unit" }
    handler = dofile(ROOT .. "/handler.lua")
    conf = assert(helpers.validate_plugin_config("oauth2-introspection", {
      introspection_url = "http://127.0.0.1:" .. up[1] .. "/introspect",
      client_id = "gw-client", client_secret = "gw-secret", required_scopes = { "read" },
      cache_dict = "unit_not_declared",
    }))
  end)
  lazy_teardown(function() helpers.stop_mock_upstream("idp-unit") end)

  local function run(headers)
    local ctx = gw.test.context{ headers = headers, plugin = "oauth2-introspection" }
    ctx:run(handler, "access", conf)
    return ctx
  end

  it("an active token with the scope goes through, with the upstream headers", function()
    local ctx = run{ Authorization = "Bearer " .. token{ active = true, sub = "alice", client_id = "app",
                                                         scope = "read write", _exp_in = 60 } }
    assert.is_nil(ctx.exit_status)
    assert.equal("app", ctx:upstream_header("X-Credential-Identifier"))
    assert.equal("alice", ctx:upstream_header("X-Authenticated-UserId"))
    assert.equal("read write", ctx:upstream_header("X-Authenticated-Scope"))
    assert.equal("alice", ctx.shared.authenticated_credential.sub)
  end)

  it("inactive: 401 invalid_token", function()
    local ctx = run{ Authorization = "Bearer " .. token{ active = false } }
    assert.equal(401, ctx.exit_status)
    assert.equal('Bearer realm="gw", error="invalid_token"', ctx:response_header("WWW-Authenticate"))
    assert.equal("The access token is invalid or has expired", cjson.decode(ctx.exit_body).message)
  end)

  it("missing scope: 403 insufficient_scope", function()
    local ctx = run{ Authorization = "Bearer " .. token{ active = true, sub = "bob", scope = "write" } }
    assert.equal(403, ctx.exit_status)
    assert.equal('Bearer realm="gw", error="insufficient_scope", scope="read"', ctx:response_header("WWW-Authenticate"))
  end)

  it("no token: 401 with a bare challenge; another scheme is no token", function()
    local ctx = run{}
    assert.equal(401, ctx.exit_status)
    assert.equal('Bearer realm="gw"', ctx:response_header("WWW-Authenticate"))
    ctx = run{ Authorization = "Basic dTpw" }
    assert.equal(401, ctx.exit_status)
    assert.equal("The access token is missing", cjson.decode(ctx.exit_body).message)
  end)

  it("the provider down: 503", function()
    local c = {}
    for k, v in pairs(conf) do c[k] = v end
    c.introspection_url = "http://127.0.0.1:" .. helpers.get_free_port() .. "/introspect"
    local ctx = gw.test.context{ headers = { Authorization = "Bearer " .. token{ active = true, sub = "x", scope = "read" } } }
    ctx:run(handler, "access", c)
    assert.equal(503, ctx.exit_status)
    assert.equal("The authorization server is unavailable", cjson.decode(ctx.exit_body).message)
  end)
end)
