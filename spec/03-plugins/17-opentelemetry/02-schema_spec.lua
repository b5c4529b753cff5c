-- opentelemetry: config checks (the plugin's schema through the gateway's own validation, and
-- `gw check` with file positions).
local helpers = require "spec.helpers"

local EP = "http://127.0.0.1:4318/v1/traces"

local function check(c) return helpers.validate_plugin_config("opentelemetry", c) end

describe("opentelemetry schema", function()
  it("needs only the endpoint and fills in the defaults", function()
    local c = assert(check{ endpoint = EP })
    assert.equal("gw", c.service_name)
    assert.equal("parent_based_ratio", c.sampler)
    assert.equal(1, c.sampling_ratio)
    assert.equal(2048, c.queue_size)
    assert.equal(200, c.batch_span_count)
    assert.equal(1, c.batch_flush_delay)
    assert.equal(2, c.retry_count)
    assert.is_true(c.plugin_spans)
    assert.is_false(c.include_query)
    assert.same({}, c.headers)
    assert.same({}, c.resource_attributes)
    assert.same({ 1000, 5000, 5000 }, { c.connect_timeout, c.send_timeout, c.read_timeout })
  end)

  it("accepts https, headers and resource attributes of scalar types", function()
    assert(check{ endpoint = "https://otel.example.com/v1/traces?tenant=a",
                  headers = { Authorization = "Bearer x", ["X-Scope-OrgID"] = "t1" },
                  resource_attributes = { ["deployment.environment"] = "prod", ["service.version"] = "1.2.3",
                                          replicas = 3, weight = 0.5, canary = false },
                  sampling_ratio = 0, queue_size = 1, batch_span_count = 1 })
  end)

  it("refuses bad configs with a message at the field's path", function()
    for _, case in ipairs({
      { {}, "plugins[0].config.endpoint: required field missing" },
      { { endpoint = "127.0.0.1:4318" }, 'plugins[0].config.endpoint: expected an http:// or https:// URL (e.g. "http://127.0.0.1:4318/v1/traces")' },
      { { endpoint = "echo://" }, 'plugins[0].config.endpoint: expected an http:// or https:// URL (e.g. "http://127.0.0.1:4318/v1/traces")' },
      { { endpoint = "http://:4318/v1/traces" }, 'plugins[0].config.endpoint: invalid url "http://:4318/v1/traces": missing host' },
      { { endpoint = "http://collector:70000/v1/traces" }, 'plugins[0].config.endpoint: invalid url "http://collector:70000/v1/traces": port must be between 1 and 65535' },
      { { endpoint = "http://collector/v1/traces#x" }, "plugins[0].config.endpoint: the URL must not contain a fragment" },
      { { endpoint = "http://collector/v1 traces" }, "plugins[0].config.endpoint: the URL must not contain spaces or control characters" },
      { { endpoint = EP, sampling_ratio = 1.5 }, "plugins[0].config.sampling_ratio: value should be between 0 and 1" },
      { { endpoint = EP, sampling_ratio = -0.1 }, "plugins[0].config.sampling_ratio: value should be between 0 and 1" },
      { { endpoint = EP, sampler = "always_on" }, "plugins[0].config.sampler: expected one of: parent_based_ratio, ratio" },
      { { endpoint = EP, queue_size = 0 }, "plugins[0].config.queue_size: value should be between 1 and 1000000" },
      { { endpoint = EP, queue_size = 10.5 }, "plugins[0].config.queue_size: expected an integer" },
      { { endpoint = EP, queue_size = 10, batch_span_count = 20 }, "plugins[0].config: batch_span_count (20) must not exceed queue_size (10)" },
      { { endpoint = EP, batch_flush_delay = 0 }, "plugins[0].config.batch_flush_delay: value should be between 0.01 and 3600" },
      { { endpoint = EP, retry_count = 11 }, "plugins[0].config.retry_count: value should be between 0 and 10" },
      { { endpoint = EP, connect_timeout = 0 }, "plugins[0].config.connect_timeout: value should be between 1 and 600000" },
      { { endpoint = EP, headers = { ["Bad Name"] = "x" } }, "plugins[0].config.headers: 'Bad Name' is not a header name" },
      { { endpoint = EP, headers = { ["X-A"] = "a\r\nX-B: b" } }, "plugins[0].config.headers: header X-A: value must not contain CR, LF or NUL" },
      { { endpoint = EP, headers = { ["content-type"] = "text/plain" } }, "plugins[0].config.headers: header content-type is set by the exporter" },
      { { endpoint = EP, headers = { ["X-A"] = 1 } }, "plugins[0].config.headers.X-A: expected a string" },
      { { endpoint = EP, resource_attributes = { ["service.name"] = "x" } }, "plugins[0].config.resource_attributes: service.name: set it with service_name" },
      { { endpoint = EP, resource_attributes = { tags = { "a" } } }, "plugins[0].config.resource_attributes: tags: expected a string, a number or a boolean" },
      { { endpoint = EP, service_name = "" }, "plugins[0].config.service_name: length must be at least 1" },
      { { endpoint = EP, include_query = "yes" }, "plugins[0].config.include_query: expected a boolean" },
      { { endpoint = EP, exporter = "jaeger" }, "plugins[0].config.exporter: unknown field" },
    }) do
      assert.equal(case[2], helpers.plugin_config_error("opentelemetry", case[1]))
    end
  end)

  it("gw check names the file position of a bad field", function()
    local rc, out = helpers.gw_check([[
_format_version: "3.0"
services:
  - name: api
    url: echo://
    routes: [{ name: api, paths: ["/api"] }]
    plugins:
      - name: opentelemetry
        config:
          endpoint: http://127.0.0.1:4318/v1/traces
          sampling_ratio: 2
]])
    assert.equal(1, rc)
    assert.matches("gateway.yaml:10:%d+: services%[0%]%.plugins%[0%]%.config%.sampling_ratio: value should be between 0 and 1", out)
  end)
end)
