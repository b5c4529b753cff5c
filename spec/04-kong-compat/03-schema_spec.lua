-- kong-compat: Kong's schema DSL (kong.db.schema.typedefs, entity checks, Kong-only attributes)
-- checking Kong plugins' configs with gw's errors (spec/fixtures/kong-plugins/.../kong-schema).
local helpers = require "spec.helpers"

local DIRS = { helpers.repo .. "/spec/fixtures/kong-plugins/kong/plugins" }

local function ok(config)
  local c, errs = helpers.validate_plugin_config("kong-schema", config, DIRS)
  assert(c, errs and table.concat(errs, "\n"))
  return c
end
local function errors(config) return helpers.plugin_config_errors("kong-schema", config, DIRS) end
local function err(config) return helpers.plugin_config_error("kong-schema", config, DIRS) end

describe("kong-compat schemas", function()
  it("fills defaults, typedef overrides and nested records included", function()
    local c = ok({ allow = { "10.0.0.0/8" } })
    assert.equal(8080, c.port)                     -- typedefs.port { default = 8080 }
    assert.equal(1000, c.timeout)
    assert.equal("a", c.mode)
    assert.same({ database = 0, port = 6379, timeout = 2000, ssl = false, ssl_verify = false }, c.redis)
  end)

  it("checks typedefs and Kong's field attributes", function()
    local e = errors({ allow = { "10.0.0.300" }, header = "bad header", path = "nope", host = "a:80",
                       url = "x", method = "get", pattern = "(", name = "", note = "", mode = "c",
                       tags = { "x" }, id = "zz", code = " q", redis = { port = 70000 } })
    for _, want in ipairs({
      "config.allow[0]: invalid ip or cidr range: '10.0.0.300'",
      "config.header: bad header name 'bad header'",
      'config.path: must start with "/"',
      "config.host: must not have a port",
      "config.url: missing scheme in url",
      "config.method: must match the pattern",
      "config.pattern: not a valid regex: (",
      "config.name: length must be at least 1",       -- Kong strings refuse "" by default
      "config.mode: expected one of: a, b",
      "config.tags: expected to contain: required-tag",
      "config.id: expected a valid UUID",
      "config.code: must not start with a space",
      "config.redis.port: value should be between 0 and 65535",
    }) do
      assert.matches(want, e, 1, true)
    end
    assert.not_matches("config.note", e, 1, true)   -- len_min = 0 allows ""
    assert.matches("config.code: must start with x or y", errors({ allow = { "1.1.1.1" }, code = "q" }), 1, true)
    assert.matches("config.path: must not have empty segments",
                   errors({ allow = { "1.1.1.1" }, path = "/a//b" }), 1, true)
  end)

  it("runs the schema's entity checks on config fields, and a record's own", function()
    assert.equal("plugins[0].config: at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
                 err({}))
    assert.equal("plugins[0].config: only one or none of these fields must be set: 'config.url', 'config.host'",
                 err({ deny = { "1.1.1.1" }, url = "http://x", host = "x" }))
    assert.matches("failed conditional validation given value of field 'config.policy'",
                   err({ deny = { "1.1.1.1" }, policy = "redis" }), 1, true)
    ok({ deny = { "1.1.1.1" }, policy = "redis", redis_host = "r.local" })
    assert.equal("plugins[0].config: port 6666 is cursed", err({ deny = { "1.1.1.1" }, port = 6666 }))
    assert.equal("plugins[0].config.nested: exactly one of these fields must be non-empty: 'a', 'b'",
                 err({ deny = { "1.1.1.1" }, nested = { a = 1, b = 2 } }))
    ok({ deny = { "1.1.1.1" }, nested = { b = 2 } })
  end)

  it("shorthand fields (deprecated names) move their value where the schema says", function()
    local c = ok({ deny = { "1.1.1.1" }, old_name = "x" })
    assert.equal("x", c.name)
    assert.is_nil(c.old_name)
    assert.equal("plugins[0].config.old_name: expected a string", err({ deny = { "1.1.1.1" }, old_name = 1 }))
  end)

  it("a Kong plugin's schema error points into its file", function()
    local dir = helpers.tmpdir("kong-bad")
    os.execute("mkdir -p " .. dir .. "/kong/plugins/bad")
    helpers.write_file(dir .. "/kong/plugins/bad/handler.lua", "return { access = function() end }\n")
    helpers.write_file(dir .. "/kong/plugins/bad/schema.lua",
      "return { name = 'bad', fields = { { config = { type = 'record', fields = {\n" ..
      "  { x = { type = 'strnig' } } } } } } }\n")
    local c, errs = helpers.validate_plugin_config("bad", {}, { dir .. "/kong/plugins" })
    assert.is_nil(c)
    assert.matches("schema.lua:%d+: invalid schema: fields%[0%].x.type: unknown type \"strnig\"", errs[1])
  end)
end)
