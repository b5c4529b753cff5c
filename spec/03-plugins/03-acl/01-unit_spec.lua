-- acl (unit): the schema, and allow/deny decisions with gw.test.context.
local helpers = require "spec.helpers"
local config = require "gw.config"
local auth = require "gw.auth"

local handler = dofile(helpers.repo .. "/plugins/acl/handler.lua")
local schema = dofile(helpers.repo .. "/plugins/acl/schema.lua")

local compiled = assert(config.load_string([[
_format_version: "3.0"
consumers:
  - username: admin
    acls: [{ group: admins }, { group: users }]
  - username: user
    acls: [{ group: users }]
  - username: banned
    acls: [{ group: users }, { group: banned }]
  - username: nobody
]], "t.yaml"))

local function conf(t) return assert(helpers.validate_plugin_config(schema, t)) end

-- runs the acl handler for a request authenticated as `username` (nil: no consumer)
local function run(c, username, headers)
  local ctx = gw.test.context{ headers = headers }
  if username then
    ctx:run({ access = function() gw.client.authenticate(auth.find_consumer(username), { id = "c" }) end }, "access")
  end
  ctx:run(handler, "access", c)
  return ctx
end

describe("acl (unit)", function()
  setup(function() auth._set_compiled(compiled) end)
  teardown(function() auth._set_compiled(nil) end)

  it("needs allow or deny, non-empty", function()
    local _, errs = helpers.validate_plugin_config("acl", {})
    assert.same({ "plugins[0].config: at least one of allow, deny is required" }, errs)
    _, errs = helpers.validate_plugin_config("acl", { allow = {} })
    assert.same({ "plugins[0].config.allow: length must be at least 1" }, errs)
    _, errs = helpers.validate_plugin_config("acl", { deny = { "" } })
    assert.same({ "plugins[0].config.deny[0]: length must be at least 1" }, errs)
    assert.same({ allow = { "a" }, hide_groups_header = false }, conf({ allow = { "a", "a" } }))
  end)

  local cases = {
    -- config, consumer, allowed?
    { { allow = { "admins" } }, "admin", true },
    { { allow = { "admins" } }, "user", false },
    { { allow = { "admins", "users" } }, "user", true },
    { { allow = { "admins" } }, "nobody", false },
    { { deny = { "banned" } }, "user", true },
    { { deny = { "banned" } }, "banned", false },
    { { deny = { "banned" } }, "nobody", true },
    { { allow = { "users" }, deny = { "banned" } }, "user", true },
    { { allow = { "users" }, deny = { "banned" } }, "banned", false },     -- deny wins
    { { allow = { "users" }, deny = { "banned" } }, "nobody", false },
    { { allow = { "admins" }, deny = { "users" } }, "admin", false },
  }
  for _, case in ipairs(cases) do
    it(("%s with allow=%s deny=%s: %s"):format(case[2], table.concat(case[1].allow or {}, ","),
        table.concat(case[1].deny or {}, ","), case[3] and "allowed" or "403"), function()
      local ctx = run(conf(case[1]), case[2])
      if case[3] then
        assert.is_nil(ctx.exit_status)
      else
        assert.equal(403, ctx.exit_status)
        assert.equal('{"message":"You cannot consume this service"}', ctx.exit_body)
      end
    end)
  end

  it("sends the consumer's groups upstream, or hides them", function()
    local ctx = run(conf({ allow = { "users" } }), "admin", { ["X-Consumer-Groups"] = "forged" })
    assert.equal("admins, users", ctx:upstream_header("X-Consumer-Groups"))
    ctx = run(conf({ allow = { "users" }, hide_groups_header = true }), "admin", { ["X-Consumer-Groups"] = "forged" })
    assert.is_nil(ctx:upstream_header("X-Consumer-Groups"))
    ctx = run(conf({ deny = { "x" } }), "nobody", { ["X-Consumer-Groups"] = "forged" })
    assert.is_nil(ctx:upstream_header("X-Consumer-Groups"))
  end)

  it("answers 401 when no consumer was authenticated", function()
    local ctx = run(conf({ deny = { "banned" } }), nil)
    assert.equal(401, ctx.exit_status)
    assert.equal('{"message":"Unauthorized"}', ctx.exit_body)
  end)

  it("judges the anonymous consumer by its own groups", function()
    local ctx = gw.test.context{}
    ctx:run({ access = function() auth.use_anonymous("user") end }, "access")
    ctx:run(handler, "access", conf({ allow = { "admins" } }))
    assert.equal(403, ctx.exit_status)
    ctx = gw.test.context{}
    ctx:run({ access = function() auth.use_anonymous("user") end }, "access")
    ctx:run(handler, "access", conf({ allow = { "users" } }))
    assert.is_nil(ctx.exit_status)
  end)

  it("a consumer that is not from the config has no groups", function()
    local ctx = gw.test.context{}
    ctx:run({ access = function() gw.client.authenticate({ id = "external", username = "ext" }, { id = "x" }) end }, "access")
    ctx:run(handler, "access", conf({ allow = { "users" } }))
    assert.equal(403, ctx.exit_status)
  end)
end)
