-- response-transformer: config checks (the plugin's schema through the gateway's own validation,
-- and `gw check` with line numbers).
local helpers = require "spec.helpers"

local function check(c) return helpers.validate_plugin_config("response-transformer", c) end

describe("response-transformer schema", function()
  it("fills in Kong's empty lists", function()
    local c = assert(check{})
    for _, op in ipairs({ "remove", "rename", "replace", "add", "append" }) do
      assert.same({}, c[op].headers)
      assert.same({}, c[op].json)
    end
    assert.same({}, c.replace.json_types)
    assert.is_nil(c.rename.json_types)
  end)

  it("accepts a full Kong-style config", function()
    assert(check{
      remove = { headers = { "server" }, json = { "internal", "user.password" } },
      rename = { headers = { "x-old:x-new" }, json = { "old_field:new_field" } },
      replace = { headers = { "x-a:b" }, json = { "n:1.5" }, json_types = { "number" } },
      add = { headers = { "x-req:$(headers.x-request-id)" }, json = { "ok:true", "v:$(query.v)" },
              json_types = { "boolean", "number" } },
      append = { headers = { "vary:accept" }, json = { "tags:gw" }, json_types = { "string" } },
    })
  end)

  it("refuses bad rules with a message at the rule's path", function()
    for _, case in ipairs({
      { { add = { json = { "missing-colon" } } }, "config.add.json[0]: 'missing-colon' is not a 'name:value' pair (no ':')" },
      { { add = { headers = { "bad name:1" } } }, "config.add.headers[0]: 'bad name:1': 'bad name' is not a header name" },
      { { rename = { json = { "a:" } } }, "config.rename.json[0]: 'a:': empty field name" },
      { { add = { json = { "a:$(headers)" } } },
        "config.add.json[0]: 'a:$(headers)': invalid template: '$(headers)': expected a name after 'headers'" },
      { { add = { json = { "a:1" }, json_types = { "int" } } }, "config.add.json_types[0]: expected one of: string, number, boolean" },
      { { append = { json = { "a:maybe" }, json_types = { "boolean" } } },
        "config.append: json_types[0] is boolean but json[0] 'a:maybe' has a value that is not a boolean (true or false)" },
      { { replace = { json = {}, json_types = { "number" } } }, "config.replace: json_types has 1 entries for 0 json rules" },
      { { remove = { body = { "a" } } }, "config.remove.body: unknown field" },
      { { replace = { uri = "/x" } }, "config.replace.uri: unknown field" },
      { { remove = { json_types = { "string" } } }, "config.remove.json_types: unknown field" },
    }) do
      assert.matches(case[2], helpers.plugin_config_error("response-transformer", case[1]), 1, true)
    end
  end)

  it("gw check reports errors with their line", function()
    local rc, out = helpers.gw_check([[
_format_version: "3.0"
services:
  - name: api
    url: echo://
    routes: [{ name: api, paths: ["/api"] }]
    plugins:
      - name: response-transformer
        config:
          add:
            json: ["version:two"]
            json_types: [number]
          remove:
            headers: ["x a"]
]])
    assert.equal(1, rc)
    assert.matches("services%[0%]%.plugins%[0%]%.config%.add: json_types%[0%] is number but json%[0%] 'version:two'", out)
    assert.matches("gateway.yaml:13:%d+: services%[0%]%.plugins%[0%]%.config%.remove%.headers%[0%]: 'x a': 'x a' is not a header name", out)
  end)
end)
