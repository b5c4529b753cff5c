-- key-auth (unit): the schema, and the handler on requests built with gw.test.context.
local helpers = require "spec.helpers"
local config = require "gw.config"
local auth = require "gw.auth"

local handler = dofile(helpers.repo .. "/plugins/key-auth/handler.lua")
local schema = dofile(helpers.repo .. "/plugins/key-auth/schema.lua")

local compiled = assert(config.load_string([[
_format_version: "3.0"
consumers:
  - username: alice
    custom_id: a-1
    keyauth_credentials: [{ key: alice-key, id: alice-cred }]
  - username: guest
]], "t.yaml"))

-- (by schema: a config naming the plugin would also check `anonymous` against its consumers)
local function conf(t)
  return assert(helpers.validate_plugin_config(schema, t or {}))
end

local function run(c, req)
  local ctx = gw.test.context(req)
  local res = ctx:run(handler, "access", c)
  return ctx, res
end

describe("key-auth (unit)", function()
  setup(function() auth._set_compiled(compiled) end)
  teardown(function() auth._set_compiled(nil) end)

  describe("schema", function()
    it("fills Kong's defaults", function()
      assert.same({ key_names = { "apikey" }, key_in_header = true, key_in_query = true, key_in_body = false,
                    hide_credentials = false, run_on_preflight = true, realm = "gw" }, conf())
    end)

    it("refuses bad configs", function()
      local _, errs = helpers.validate_plugin_config("key-auth", { key_in_header = false, key_in_query = false })
      assert.same({ "plugins[0].config: at least one of key_in_header, key_in_query, key_in_body must be true" }, errs)
      _, errs = helpers.validate_plugin_config("key-auth", { key_names = { "bad name" } })
      assert.matches("key_names%[0%]: must match the pattern", errs[1])
      _, errs = helpers.validate_plugin_config("key-auth", { key_names = {} })
      assert.same({ "plugins[0].config.key_names: length must be at least 1" }, errs)
      _, errs = helpers.validate_plugin_config("key-auth", { realm = 'a"b' })
      assert.matches("realm: must not match", errs[1])
      _, errs = helpers.validate_plugin_config("key-auth", { anonymous = "" })
      assert.same({ "plugins[0].config.anonymous: length must be at least 1" }, errs)
    end)
  end)

  describe("handler", function()
    it("accepts a key in the default header and tells the upstream who called", function()
      local ctx = run(conf(), { headers = { apikey = "alice-key" } })
      assert.is_nil(ctx.exit_status)
      assert.equal("alice", ctx:upstream_header("X-Consumer-Username"))
      assert.equal("a-1", ctx:upstream_header("X-Consumer-Custom-ID"))
      assert.equal(compiled.consumers[1].id, ctx:upstream_header("X-Consumer-ID"))
      assert.equal("alice-cred", ctx:upstream_header("X-Credential-Identifier"))
      assert.is_nil(ctx:upstream_header("X-Anonymous-Consumer"))
      assert.equal("alice-key", ctx:upstream_header("apikey"))      -- not hidden by default
      assert.equal("alice", ctx.shared.authenticated_consumer.username)
      assert.equal("alice-key", ctx.shared.authenticated_credential.key)
    end)

    it("accepts a key in the query string", function()
      local ctx = run(conf(), { path = "/x?a=1&apikey=alice-key" })
      assert.is_nil(ctx.exit_status)
      assert.equal("alice", ctx:upstream_header("X-Consumer-Username"))
      assert.equal("a=1&apikey=alice-key", ctx.upstream.query)
    end)

    it("tries the key names in order, header before query for each", function()
      local c = conf({ key_names = { "x-api-key", "key" } })
      local ctx = run(c, { path = "/?key=alice-key", headers = { ["X-Api-Key"] = "wrong" } })
      assert.equal(401, ctx.exit_status)
      assert.equal('{"message":"Invalid authentication credentials"}', ctx.exit_body)
      ctx = run(c, { path = "/?key=alice-key", headers = { apikey = "wrong" } })
      assert.is_nil(ctx.exit_status)
    end)

    it("looks only where it is told to", function()
      local ctx = run(conf({ key_in_header = false }), { headers = { apikey = "alice-key" } })
      assert.equal(401, ctx.exit_status)
      assert.equal('{"message":"No API key found in request"}', ctx.exit_body)
      ctx = run(conf({ key_in_query = false }), { path = "/?apikey=alice-key" })
      assert.equal(401, ctx.exit_status)
      ctx = run(conf({ key_in_query = false }), { headers = { apikey = "alice-key" } })
      assert.is_nil(ctx.exit_status)
    end)

    it("reads the key from a JSON or form body when key_in_body", function()
      local c = conf({ key_in_body = true, key_in_header = false, key_in_query = false })
      local ctx = run(c, { method = "POST", headers = { ["Content-Type"] = "application/json" },
                           body = '{"apikey":"alice-key","x":1}' })
      assert.is_nil(ctx.exit_status)
      assert.equal("alice", ctx:upstream_header("X-Consumer-Username"))
      ctx = run(c, { method = "POST", headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
                     body = "x=1&apikey=alice-key" })
      assert.is_nil(ctx.exit_status)
      -- not a body gw can read, broken JSON, a non-string key: no key, 401, never an error
      for _, req in ipairs({
        { method = "POST", headers = { ["Content-Type"] = "text/plain" }, body = "apikey=alice-key" },
        { method = "POST", headers = { ["Content-Type"] = "application/json" }, body = '{"apikey":' },
        { method = "POST", headers = { ["Content-Type"] = "application/json" }, body = '{"apikey":{"a":1}}' },
        { method = "POST", headers = { ["Content-Type"] = "application/json" }, body = '[1,2]' },
        { method = "GET" },
      }) do
        ctx = run(c, req)
        assert.equal(401, ctx.exit_status)
        assert.equal('{"message":"No API key found in request"}', ctx.exit_body)
      end
    end)

    it("hides the key from the upstream: header, query, body", function()
      local c = conf({ hide_credentials = true, key_in_body = true })
      local ctx = run(c, { headers = { apikey = "alice-key", other = "kept" } })
      assert.is_nil(ctx.exit_status)
      assert.is_nil(ctx:upstream_header("apikey"))
      assert.equal("kept", ctx:upstream_header("other"))

      ctx = run(c, { path = "/p?a=1&apikey=alice-key&b=%2F" })
      assert.is_nil(ctx.exit_status)
      assert.equal("a=1&b=%2F", ctx.upstream.query)

      ctx = run(c, { method = "POST", headers = { ["Content-Type"] = "application/json" },
                     body = '{"apikey":"alice-key","x":1}' })
      assert.is_nil(ctx.exit_status)
      assert.same({ x = 1 }, gw.json.decode(ctx.upstream.body))
    end)

    it("answers 401 with WWW-Authenticate for a missing, empty, unknown or duplicate key", function()
      local cases = {
        { {}, "No API key found in request" },
        { { headers = { apikey = "" } }, "No API key found in request" },
        { { path = "/?apikey" }, "No API key found in request" },
        { { path = "/?apikey=" }, "No API key found in request" },
        { { headers = { apikey = "nope" } }, "Invalid authentication credentials" },
        { { headers = { apikey = { "alice-key", "alice-key" } } }, "Duplicate API key found" },
        { { path = "/?apikey=alice-key&apikey=x" }, "Duplicate API key found" },
      }
      for _, case in ipairs(cases) do
        local ctx = run(conf(), case[1])
        assert.equal(401, ctx.exit_status)
        assert.equal('{"message":"' .. case[2] .. '"}', ctx.exit_body)
        assert.equal('Key realm="gw"', ctx:response_header("WWW-Authenticate"))
      end
      local ctx = run(conf({ realm = "my-api" }), {})
      assert.equal('Key realm="my-api"', ctx:response_header("WWW-Authenticate"))
    end)

    it("falls back to the anonymous consumer", function()
      local c = conf({ anonymous = "guest" })
      for _, req in ipairs({ {}, { headers = { apikey = "nope" } },
                             { headers = { ["X-Credential-Identifier"] = "forged" } } }) do
        local ctx = run(c, req)
        assert.is_nil(ctx.exit_status)
        assert.equal("true", ctx:upstream_header("X-Anonymous-Consumer"))
        assert.equal("guest", ctx:upstream_header("X-Consumer-Username"))
        assert.is_nil(ctx:upstream_header("X-Credential-Identifier"))
        assert.equal("guest", ctx.shared.authenticated_consumer.username)
        assert.is_nil(ctx.shared.authenticated_credential)
      end
      -- a valid key still wins
      local ctx = run(c, { headers = { apikey = "alice-key" } })
      assert.equal("alice", ctx:upstream_header("X-Consumer-Username"))
      assert.is_nil(ctx:upstream_header("X-Anonymous-Consumer"))
    end)

    it("with anonymous, leaves a request that another plugin authenticated", function()
      local ctx = gw.test.context{}
      ctx:run({ access = function() gw.client.authenticate({ id = "x", username = "bob" }, { id = "c" }) end }, "access")
      ctx:run(handler, "access", conf({ anonymous = "guest" }))
      assert.is_nil(ctx.exit_status)
      assert.equal("bob", ctx.shared.authenticated_consumer.username)
      -- without anonymous, key-auth itself must pass
      ctx:run(handler, "access", conf())
      assert.equal(401, ctx.exit_status)
    end)

    it("skips OPTIONS when run_on_preflight is false", function()
      local ctx = run(conf({ run_on_preflight = false }), { method = "OPTIONS" })
      assert.is_nil(ctx.exit_status)
      ctx = run(conf(), { method = "OPTIONS" })
      assert.equal(401, ctx.exit_status)
    end)
  end)
end)
