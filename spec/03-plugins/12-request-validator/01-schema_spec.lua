-- request-validator: config checks. A bad JSON Schema is a config error at load, with the path
-- of the field and the path inside the schema.
local helpers = require "spec.helpers"

local function check(conf) return helpers.validate_plugin_config("request-validator", conf) end

local function errors(conf) return helpers.plugin_config_errors("request-validator", conf) end

describe("request-validator schema", function()
  it("takes schemas as YAML maps or JSON text, with defaults", function()
    local c = assert(check{ body_schema = { type = "object", required = { "email" },
                                            properties = { email = { type = "string", format = "email" } } } })
    assert.same({ "application/json" }, c.allowed_content_types)
    assert.is_true(c.verbose_response)
    assert.equal(20, c.max_errors)
    c = assert(check{ body_schema = '{"type":"object","properties":{"age":{"type":"integer","minimum":0}}}',
                      query_schema = '{"properties":{"limit":{"type":"integer"}}}',
                      header_schema = { required = { "X-Request-Id" } },
                      path_schema = { properties = { productId = { format = "uuid" } } },
                      allowed_content_types = { "application/json", "application/*+json", "*/*" },
                      verbose_response = false, max_errors = 5 })
    assert.is_string(c.body_schema)
    assert.is_false(c.verbose_response)
    assert.is_truthy(check{ body_schema = true })
  end)

  it("needs at least one schema", function()
    assert.matches("config: at least one of body_schema, query_schema, header_schema or path_schema is required",
                   errors{}, 1, true)
    assert.matches("at least one of", errors{ verbose_response = false }, 1, true)
  end)

  it("reports a bad schema at load, with its path inside the schema", function()
    local e = errors{ body_schema = { type = "object", properties = {
      name = { type = "strng" }, age = { type = "integer", minimum = "zero" }, code = { pattern = "([A-Z]" } } } }
    assert.matches('plugins[0].config.body_schema: properties.age.minimum: must be a number; '
      .. 'properties.code.pattern: invalid regex: missing closing parenthesis at offset 6; '
      .. 'properties.name.type: unknown type "strng"', e, 1, true)
    assert.matches('plugins[0].config.query_schema: properties.limit.format: unknown format "int"',
                   errors{ query_schema = { properties = { limit = { format = "int" } } } }, 1, true)
    assert.matches("plugins[0].config.header_schema: required: must be an array of property names",
                   errors{ header_schema = { required = "x-a" } }, 1, true)
    assert.matches("plugins[0].config.path_schema: properties.id.minLenght: unknown keyword",
                   errors{ path_schema = { properties = { id = { minLenght = 3 } } } }, 1, true)
  end)

  it("reports JSON text that is not JSON, and values that are no schema", function()
    assert.matches("plugins[0].config.body_schema: (root): invalid JSON", errors{ body_schema = '{"type":"object"' }, 1, true)
    assert.matches("plugins[0].config.body_schema: (root): a schema must be an object or a boolean",
                   errors{ body_schema = "[1]" }, 1, true)
    assert.matches("plugins[0].config.query_schema: expected a JSON Schema (a map, or JSON text)",
                   errors{ query_schema = 12 }, 1, true)
  end)

  it("checks the other fields", function()
    local base = { body_schema = { type = "object" } }
    local function with(k, v)
      local c = { body_schema = base.body_schema }
      c[k] = v
      return c
    end
    assert.matches("plugins[0].config.allowed_content_types[1]: expected a media type such as application/json",
                   errors(with("allowed_content_types", { "application/json", "json" })), 1, true)
    assert.matches("plugins[0].config.allowed_content_types: length must be at least 1",
                   errors(with("allowed_content_types", {})), 1, true)
    assert.matches("plugins[0].config.max_errors", errors(with("max_errors", 0)), 1, true)
    assert.matches("plugins[0].config.max_errors", errors(with("max_errors", 1000)), 1, true)
    assert.matches("plugins[0].config.verbose_response: expected a boolean", errors(with("verbose_response", "no")), 1, true)
    assert.matches("plugins[0].config.body_scheme: unknown field", errors(with("body_scheme", {})), 1, true)
  end)

  it("the YAML form of a config compiles with gw check, and a bad one is refused with its line", function()
    local good = [[
_format_version: "3.0"
services:
  - name: users
    url: echo://
    routes:
      - name: create-user
        paths: ["/api/users"]
        methods: [POST]
    plugins:
      - name: request-validator
        config:
          body_schema:
            type: object
            required: [email]
            properties:
              email: { type: string, format: email }
]]
    local rc, out = helpers.gw_check(good)
    assert.equal(0, rc, out)
    local bad = good:gsub("format: email", "format: mail")
    rc, out = helpers.gw_check(bad)
    assert.equal(1, rc)
    assert.matches(':%d+:%d+: services%[0%]%.plugins%[0%]%.config%.body_schema: properties%.email%.format: unknown format "mail"', out)
  end)
end)
