-- cors: config checks (the plugin's schema through the gateway's own validation, and `gw check`).
local helpers = require "spec.helpers"

local function check(c) return helpers.validate_plugin_config("cors", c) end

describe("cors schema", function()
  it("fills in Kong's defaults", function()
    local c = assert(check{})
    assert.same({ "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT" }, c.methods)
    assert.is_false(c.credentials)
    assert.is_false(c.preflight_continue)
    assert.is_false(c.private_network)
    assert.is_nil(c.max_age)
    assert.is_nil(c.origins)
  end)

  it("accepts exact origins, patterns, *, null and IPv6 literals", function()
    local c = assert(check{
      origins = { "https://app.example.com", "HTTP://LOCALHOST:3000", "http://[::1]:8080", "null", "*",
                  "https://(.+\\.)?example\\.org", "^https://a\\.test$", "(?i)https://b\\.test" },
      methods = { "GET", "POST" }, headers = { "Content-Type", "X-Token" },
      exposed_headers = { "ETag" }, credentials = true, max_age = 0, private_network = true,
      preflight_continue = true,
    })
    assert.equal(8, #c.origins)
    assert.equal(0, c.max_age)
  end)

  it("refuses bad configs with a message at the field's path", function()
    for _, case in ipairs({
      { { origins = { "https://(unclosed" } },
        "config.origins[0]: 'https://(unclosed' is not a valid PCRE2 pattern: missing closing parenthesis at offset 17" },
      { { origins = { "https://a.com", "https://*.example.com" } },
        "config.origins[1]: 'https://*.example.com' is a PCRE2 pattern, not a wildcard: write https://([a-z0-9-]+\\.)+example\\.com for any subdomain" },
      { { origins = { "https://a.com/" } }, "config.origins[0]: 'https://a.com/' has a path: an origin is https://a.com" },
      { { origins = { "example.com" } }, "config.origins[0]: 'example.com' is not an origin (scheme://host[:port]), a PCRE2 pattern or *" },
      { { origins = { "https://a.com:0" } }, "config.origins[0]: 'https://a.com:0': port out of range" },
      { { origins = { "(*UTF)https://a\\.com" } }, "config.origins[0]: '(*UTF)https://a\\.com' cannot be matched as a whole origin" },
      { { origins = { "" } }, "config.origins[0]: length must be at least 1" },
      { { origins = "https://a.com" }, "config.origins: expected an array" },
      { { max_age = -1 }, "config.max_age: value should be between 0 and 2147483647" },
      { { max_age = 3.5 }, "config.max_age: expected an integer" },
      { { max_age = "86400" }, "config.max_age: expected an integer" },
      { { methods = { "GET", "FETCH" } }, "config.methods[1]: expected one of: GET, HEAD" },
      { { methods = {} }, "config.methods: length must be at least 1" },
      { { headers = { "X Token" } }, "config.headers[0]: 'X Token' is not a header name" },
      { { exposed_headers = { "ETag", "X-A:" } }, "config.exposed_headers[1]: 'X-A:' is not a header name" },
      { { credentials = "true" }, "config.credentials: expected a boolean" },
      { { allow_origin = "*" }, "config.allow_origin: unknown field" },
    }) do
      assert.matches(case[2], helpers.plugin_config_error("cors", case[1]), 1, true)
    end
  end)

  it("gw check reports every error with its line in the file", function()
    local rc, out = helpers.gw_check([[
_format_version: "3.0"
services:
  - name: api
    url: echo://
    routes: [{ name: api, paths: ["/api"] }]
    plugins:
      - name: cors
        config:
          origins: ["https://app.example.com", "https://[a-z+.example.com"]
          max_age: -5
]])
    assert.equal(1, rc)
    assert.matches("gateway.yaml:9:%d+: services%[0%]%.plugins%[0%]%.config%.origins%[1%]: 'https://%[a%-z%+%.example%.com' is not a valid PCRE2 pattern", out)
    assert.matches("gateway.yaml:10:%d+: services%[0%]%.plugins%[0%]%.config%.max_age: value should be between 0", out)
  end)
end)
