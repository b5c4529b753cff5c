-- request-transformer: config checks (the plugin's schema through the gateway's own validation,
-- and `gw check` with line numbers).
local helpers = require "spec.helpers"

local function check(c) return helpers.validate_plugin_config("request-transformer", c) end

describe("request-transformer schema", function()
  it("fills in Kong's empty lists and its own defaults", function()
    local c = assert(check{})
    for _, op in ipairs({ "remove", "rename", "replace", "add", "append" }) do
      assert.same({}, c[op].headers)
      assert.same({}, c[op].querystring)
      assert.same({}, c[op].body)
    end
    assert.same({}, c.add.json_types)
    assert.is_nil(c.remove.json_types)
    assert.is_nil(c.replace.uri)
    assert.is_nil(c.http_method)
    assert.equal(1048576, c.max_body_size)
    assert.equal("pass", c.body_policy)
  end)

  it("accepts a full Kong-style config", function()
    assert(check{
      http_method = "POST",
      remove = { headers = { "x-remove" }, querystring = { "token" }, body = { "password", "user.ssn" } },
      rename = { headers = { "x-old:x-new" }, querystring = { "q:search" }, body = { "old_field:new_field", "a\\.b:c.d" } },
      replace = { headers = { "host:internal" }, querystring = { "page:1" }, body = { "n:$(query.n)" },
                  json_types = { "number" }, uri = "/v2/users/$(uri_captures.id)" },
      add = { headers = { "x-user:$(headers.x-user or 'anonymous')", "x-empty:" }, querystring = { "k:v:w" },
              body = { "version:2", "on:true", "s:$$(x)" }, json_types = { "number", "boolean", "string" } },
      append = { headers = { "x-h:$(uri_captures[1])" }, querystring = { "tag:$(query_params.t)" }, body = { "tags:x" } },
      max_body_size = 0, body_policy = "reject",
    })
  end)

  it("refuses bad rules with a message at the rule's path", function()
    for _, case in ipairs({
      { { add = { headers = { "x-missing-colon" } } },
        "config.add.headers[0]: 'x-missing-colon' is not a 'name:value' pair (no ':')" },
      { { add = { body = { "a:1", "b" } } }, "config.add.body[1]: 'b' is not a 'name:value' pair (no ':')" },
      { { rename = { querystring = { "q" } } }, "config.rename.querystring[0]: 'q' is not an 'old:new' pair (no ':')" },
      { { rename = { headers = { "x-a:x b" } } }, "config.rename.headers[0]: 'x-a:x b': 'x b' is not a header name" },
      { { remove = { headers = { "x-a:1" } } }, "config.remove.headers[0]: 'x-a:1': 'x-a:1' is not a header name" },
      { { remove = { body = { "a..b" } } }, "config.remove.body[0]: 'a..b': 'a..b' has an empty name between dots" },
      { { remove = { querystring = { "" } } }, "config.remove.querystring[0]: '': empty name" },
      { { replace = { querystring = { ":v" } } }, "config.replace.querystring[0]: ':v': empty name" },
      { { add = { headers = { "x-a:$(headers.x" } } },
        "config.add.headers[0]: 'x-a:$(headers.x': invalid template: unclosed '$(' at position 1" },
      { { add = { body = { "a:$(cookie.x)" } } },
        "config.add.body[0]: 'a:$(cookie.x)': invalid template: '$(cookie.x)': unknown source 'cookie'" },
      { { append = { querystring = { "a:$(query.)" } } },
        "config.append.querystring[0]: 'a:$(query.)': invalid template: '$(query.)': expected a name after 'query'" },
      { { add = { body = { "a:1" }, json_types = { "integer" } } },
        "config.add.json_types[0]: expected one of: string, number, boolean" },
      { { replace = { body = { "a:x" }, json_types = { "number" } } },
        "config.replace: json_types[0] is number but body[0] 'a:x' has a value that is not a number" },
      { { append = { body = { "a:1" }, json_types = { "number", "string" } } },
        "config.append: json_types has 2 entries for 1 body rules" },
      { { replace = { uri = "v2/users" } }, "config.replace.uri: 'v2/users' does not start with /" },
      { { replace = { uri = "/v2/$(uri_captures.id" } }, "config.replace.uri: '/v2/$(uri_captures.id': invalid template: unclosed" },
      { { replace = { uri = "/v2?x=1" } }, "config.replace.uri: '/v2?x=1': a path cannot hold whitespace, ? or #" },
      { { remove = { json = { "a" } } }, "config.remove.json: unknown field" },
      { { http_method = "post" }, "config.http_method: must match the pattern" },
      { { body_policy = "drop" }, "config.body_policy: expected one of: pass, reject" },
      { { max_body_size = -1 }, "config.max_body_size: value should be between 0" },
      { { add = { headers = "x:1" } }, "config.add.headers: expected an array" },
    }) do
      assert.matches(case[2], helpers.plugin_config_error("request-transformer", case[1]), 1, true)
    end
  end)

  it("gw check reports every error with its line in the file", function()
    local rc, out = helpers.gw_check([[
_format_version: "3.0"
services:
  - name: legacy
    url: echo://
    routes: [{ name: legacy, paths: ["/legacy"] }]
    plugins:
      - name: request-transformer
        config:
          rename:
            body: ["old_field"]
          add:
            headers: ["x-user:$(user.name)"]
          append:
            body: ["n:x"]
            json_types: [number]
]])
    assert.equal(1, rc)
    assert.matches("gateway.yaml:10:%d+: services%[0%]%.plugins%[0%]%.config%.rename%.body%[0%]: 'old_field' is not an 'old:new' pair", out)
    assert.matches("gateway.yaml:12:%d+: services%[0%]%.plugins%[0%]%.config%.add%.headers%[0%]: 'x%-user:%$%(user%.name%)': invalid template: '%$%(user%.name%)': unknown source 'user'", out)
    assert.matches("gateway.yaml:%d+:%d+: services%[0%]%.plugins%[0%]%.config%.append: json_types%[0%] is number but body%[0%] 'n:x' has a value that is not a number", out)
  end)
end)
