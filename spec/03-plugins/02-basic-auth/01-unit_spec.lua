-- basic-auth (unit): the schema, the Authorization parser, and the handler with gw.test.context.
local helpers = require "spec.helpers"
local config = require "gw.config"
local auth = require "gw.auth"

local handler = dofile(helpers.repo .. "/plugins/basic-auth/handler.lua")
local schema = dofile(helpers.repo .. "/plugins/basic-auth/schema.lua")

local compiled = assert(config.load_string([[
_format_version: "3.0"
consumers:
  - username: alice
    basicauth_credentials:
      - username: alice
        password: "open sesame"
      - username: "alice:2"          # not reachable: a basic-auth user-id has no colon
        password: x
  - username: bob
    custom_id: bob-1
    basicauth_credentials:
      - username: bob
        password: "p:a:s:s"
        id: bob-cred
  - username: guest
]], "t.yaml"))

local b64 = require("mime").b64   -- luasocket's base64 encoder

local function basic(user, pass) return "Basic " .. b64(user .. ":" .. pass) end

local function conf(t) return assert(helpers.validate_plugin_config(schema, t or {})) end

local function run(c, req)
  local ctx = gw.test.context(req)
  ctx:run(handler, "access", c)
  return ctx
end

describe("basic-auth (unit)", function()
  setup(function() auth._set_compiled(compiled) end)
  teardown(function() auth._set_compiled(nil) end)

  it("has Kong's defaults", function()
    assert.same({ hide_credentials = false, realm = "service", run_on_preflight = true }, conf())
    local _, errs = helpers.validate_plugin_config("basic-auth", { realm = "a\nb" })
    assert.matches("realm: must not match", errs[1])
  end)

  it("parses Authorization: Basic", function()
    local parse = handler._parse
    assert.same({ "alice", "open sesame" }, { parse(basic("alice", "open sesame")) })
    assert.same({ "bob", "p:a:s:s" }, { parse(basic("bob", "p:a:s:s")) })   -- the first colon splits
    assert.same({ "u", "" }, { parse(basic("u", "")) })
    assert.same({ "u", "p" }, { parse("basic " .. b64("u:p")) })            -- scheme is case-insensitive
    assert.same({ "u", "p" }, { parse("BASIC   " .. b64("u:p") .. "  ") })
    for _, bad in ipairs({ "", "Basic", "Basic ", "Basic !!!!", "Basic " .. b64("no-colon"),
                           "Basic " .. b64(":only-password"), "Bearer " .. b64("u:p"), "Basic a b",
                           "Basic " .. b64("u:p") .. "=", "Basic Y", "BasicdTpw", nil }) do
      assert.is_nil(parse(bad), tostring(bad))
    end
  end)

  it("authenticates and tells the upstream who called", function()
    local ctx = run(conf(), { headers = { Authorization = basic("bob", "p:a:s:s") } })
    assert.is_nil(ctx.exit_status)
    assert.equal("bob", ctx:upstream_header("X-Consumer-Username"))
    assert.equal("bob-1", ctx:upstream_header("X-Consumer-Custom-ID"))
    assert.equal(compiled.consumers[2].id, ctx:upstream_header("X-Consumer-ID"))
    assert.equal("bob", ctx:upstream_header("X-Credential-Identifier"))   -- Kong: the basic-auth username
    assert.is_nil(ctx:upstream_header("X-Anonymous-Consumer"))
    assert.is_not_nil(ctx:upstream_header("Authorization"))                -- kept by default
    assert.equal("bob-cred", ctx.shared.authenticated_credential.id)
    assert.is_nil(ctx.shared.authenticated_credential.password)
  end)

  it("hide_credentials removes the Authorization header", function()
    local ctx = run(conf({ hide_credentials = true }), { headers = { Authorization = basic("alice", "open sesame") } })
    assert.is_nil(ctx.exit_status)
    assert.is_nil(ctx:upstream_header("Authorization"))
  end)

  it("takes Proxy-Authorization when Authorization is absent or not Basic", function()
    local c = conf({ hide_credentials = true })
    local ctx = run(c, { headers = { ["Proxy-Authorization"] = basic("alice", "open sesame") } })
    assert.is_nil(ctx.exit_status)
    assert.is_nil(ctx:upstream_header("Proxy-Authorization"))
    ctx = run(c, { headers = { Authorization = "Bearer abc", ["Proxy-Authorization"] = basic("alice", "open sesame") } })
    assert.is_nil(ctx.exit_status)
    assert.equal("Bearer abc", ctx:upstream_header("Authorization"))
  end)

  it("answers 401 with WWW-Authenticate: Basic and the realm", function()
    local ctx = run(conf(), {})
    assert.equal(401, ctx.exit_status)
    assert.equal('{"message":"Unauthorized"}', ctx.exit_body)
    assert.equal('Basic realm="service"', ctx:response_header("WWW-Authenticate"))

    for _, value in ipairs({ basic("alice", "wrong"), basic("alice", ""), basic("nobody", "open sesame"),
                             basic("alice:2", "x"), "Basic %%%", "Basic", "", "Bearer x", "Basic =",
                             "Basic " .. string.rep("A", 10000) }) do
      ctx = run(conf({ realm = "my realm" }), { headers = { Authorization = value } })
      assert.equal(401, ctx.exit_status, value)
      assert.equal('{"message":"Invalid authentication credentials"}', ctx.exit_body)
      assert.equal('Basic realm="my realm"', ctx:response_header("WWW-Authenticate"))
    end
  end)

  it("falls back to the anonymous consumer", function()
    local c = conf({ anonymous = "guest" })
    for _, req in ipairs({ {}, { headers = { Authorization = basic("alice", "wrong") } },
                           { headers = { Authorization = "Basic %%%" } } }) do
      local ctx = run(c, req)
      assert.is_nil(ctx.exit_status)
      assert.equal("guest", ctx:upstream_header("X-Consumer-Username"))
      assert.equal("true", ctx:upstream_header("X-Anonymous-Consumer"))
    end
    local ctx = run(c, { headers = { Authorization = basic("alice", "open sesame") } })
    assert.equal("alice", ctx:upstream_header("X-Consumer-Username"))
    assert.is_nil(ctx:upstream_header("X-Anonymous-Consumer"))
  end)

  it("checks the password with the constant-time compare", function()
    local s = spy.on(auth, "constant_time_equals")
    run(conf(), { headers = { Authorization = basic("alice", "wrong") } })
    run(conf(), { headers = { Authorization = basic("nobody", "wrong") } })   -- an unknown user costs the same
    assert.spy(s).was.called(2)
    auth.constant_time_equals:revert()
  end)

  it("skips OPTIONS when run_on_preflight is false", function()
    assert.is_nil(run(conf({ run_on_preflight = false }), { method = "OPTIONS" }).exit_status)
    assert.equal(401, run(conf(), { method = "OPTIONS" }).exit_status)
  end)
end)
