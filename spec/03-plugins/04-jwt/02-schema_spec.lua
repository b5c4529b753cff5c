-- jwt plugin (unit): its schema and how a config referring to consumers compiles.
local helpers = require "spec.helpers"
local config = require "gw.config"

local function errors(conf) return helpers.plugin_config_errors("jwt", conf) end

describe("jwt (schema)", function()
  it("fills in the defaults", function()
    local conf = assert(helpers.validate_plugin_config("jwt", {}))
    assert.same({ "jwt" }, conf.uri_param_names)
    assert.same({}, conf.cookie_names)
    assert.same({ "authorization" }, conf.header_names)
    assert.equal("iss", conf.key_claim_name)
    assert.same({}, conf.claims_to_verify)
    assert.equal(0, conf.leeway)
    assert.equal(0, conf.maximum_expiration)
    assert.same({}, conf.claims_to_headers)
    assert.is_true(conf.run_on_preflight)
    assert.equal("gw", conf.realm)
    assert.is_nil(conf.anonymous)
  end)

  it("accepts a full config", function()
    local conf = assert(helpers.validate_plugin_config("jwt", {
      uri_param_names = {}, cookie_names = { "session" }, header_names = { "authorization", "x-token" },
      key_claim_name = "kid", claims_to_verify = { "exp", "nbf", "exp" }, leeway = 600,
      maximum_expiration = 3600, required_claims = { "sub" }, allowed_iss = { "https://idp" },
      allowed_aud = { "api" }, claims_to_headers = { sub = "X-User", roles = "X-Roles" }, realm = "api",
    }))
    assert.same({ "exp", "nbf" }, conf.claims_to_verify)
  end)

  it("refuses what cannot work", function()
    assert.matches("leeway: value should be between 0 and 600", errors({ leeway = 601 }), 1, true)
    assert.matches("leeway", errors({ leeway = -1 }), 1, true)
    assert.matches("claims_to_verify[0]: expected one of: exp, nbf", errors({ claims_to_verify = { "iat" } }), 1, true)
    assert.matches('maximum_expiration needs "exp" in claims_to_verify', errors({ maximum_expiration = 60 }), 1, true)
    assert.matches("must name a place for the token",
                   errors({ uri_param_names = {}, header_names = {}, cookie_names = {} }), 1, true)
    assert.matches("cannot be sent as X-Consumer-ID", errors({ claims_to_headers = { sub = "X-Consumer-ID" } }), 1, true)
    assert.matches("cannot be sent as authorization", errors({ claims_to_headers = { sub = "authorization" } }), 1, true)
    assert.matches("claims_to_headers", errors({ claims_to_headers = { sub = "bad header" } }), 1, true)
    assert.matches("realm", errors({ realm = 'a"b' }), 1, true)
    assert.matches("header_names[0]", errors({ header_names = { "a b" } }), 1, true)
    assert.matches("unknown field", errors({ secret_is_base64 = true }), 1, true)
  end)

  it("wants `anonymous` to name a consumer", function()
    local yaml = [[
_format_version: "3.0"
consumers:
  - username: guest
plugins:
  - name: jwt
    config: { anonymous: nobody }
]]
    local c, errs = config.load_string(yaml, "t.yaml")
    assert.is_nil(c)
    assert.matches('plugins[0].config.anonymous: no consumer with id or username "nobody"',
                   table.concat(errs, "\n"), 1, true)
    assert(config.load_string(yaml:gsub("nobody", "guest"), "t.yaml"))
  end)
end)
