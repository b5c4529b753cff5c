-- aggregator schema: defaults, field checks, and the compiler's errors (references, cycles,
-- mapping) reported at load with their path, by the plugin's validator and by `gw check`.
local helpers = require "spec.helpers"

local function errors(conf) return helpers.plugin_config_errors("aggregator", conf) end

local ONE = { { name = "a", url = "http://127.0.0.1:9/a" } }

describe("aggregator schema", function()
  it("fills in the defaults", function()
    local conf = assert(helpers.validate_plugin_config("aggregator", { calls = ONE, response = "$(calls.a.body)" }))
    local c = conf.calls[1]
    assert.equal("GET", c.method)
    assert.equal(10000, c.timeout)
    assert.equal(1048576, c.max_body_size)
    assert.equal("fail", c.on_error)
    assert.equal(200, conf.response_status)
  end)

  it("requires calls and a response", function()
    local text = errors({})
    assert.matches("plugins[0].config.calls: required field missing", text, 1, true)
    assert.matches("plugins[0].config.response: required field missing", text, 1, true)
    assert.matches("config.calls: length must be at least 1", errors({ calls = {}, response = 1 }), 1, true)
    assert.matches("config.calls[0].url: required field missing", errors({ calls = { { name = "a" } }, response = 1 }), 1, true)
  end)

  it("checks each field", function()
    local function call(extra)
      local c = { name = "a", url = "http://h/" }
      for k, v in pairs(extra) do c[k] = v end
      return errors({ calls = { c }, response = 1 })
    end
    assert.matches("calls[0].name: must match", call{ name = "a.b" }, 1, true)
    assert.matches("calls[0].method: must match", call{ method = "get" }, 1, true)
    assert.matches("calls[0].timeout: value should be between 1 and 600000", call{ timeout = 0 }, 1, true)
    assert.matches("calls[0].on_error: expected one of: fail, null, fallback", call{ on_error = "ignore" }, 1, true)
    assert.matches("calls[0].success_status[0]: value should be between 100 and 599", call{ success_status = { 42 } }, 1, true)
    assert.matches("calls[0].headers.X: expected a string", call{ headers = { X = 1 } }, 1, true)
    assert.matches("calls[0].extra: unknown field", call{ extra = 1 }, 1, true)
    assert.matches("config.response_status: value should be between 200 and 599",
      errors({ calls = ONE, response = 1, response_status = 99 }), 1, true)
  end)

  it("reports template, reference and dependency errors with their path", function()
    assert.matches('plugins[0].config: calls[0].url: unknown call "b" in $(calls.b.body.id)',
      errors({ calls = { { name = "a", url = "http://h/$(calls.b.body.id)" } }, response = 1 }), 1, true)
    assert.matches("plugins[0].config: calls[0]: dependency cycle: a -> b -> a", errors({ calls = {
      { name = "a", url = "http://h/", depends_on = { "b" } },
      { name = "b", url = "http://h/", headers = { X = "$(calls.a.status)" } } }, response = 1 }), 1, true)
    assert.matches("plugins[0].config: response.order.customer: unknown call \"customer\"",
      errors({ calls = ONE, response = { order = { customer = "$(calls.customer.body)" } } }), 1, true)
    assert.matches("plugins[0].config: response.$each: expected a single reference",
      errors({ calls = ONE, response = { ["$each"] = "x" } }), 1, true)
    assert.matches("plugins[0].config: response_headers.X-Order: unknown reference $(order.id)",
      errors({ calls = ONE, response = 1, response_headers = { ["X-Order"] = "$(order.id)" } }), 1, true)
  end)

  it("gw check points at the plugin entry in the YAML", function()
    local rc, out = helpers.gw_check([[
_format_version: "3.0"
services:
  - name: bff
    url: echo://
    routes:
      - name: details
        paths: ["~/api/orders/(?<orderId>[^/]+)/details$"]
    plugins:
      - name: aggregator
        config:
          calls:
            - name: order
              url: http://127.0.0.1:9/orders/$(uri_captures.orderId)
            - name: customer
              url: http://127.0.0.1:9/customers/$(calls.order.body.customerId)
              depends_on: [customer]
          response: "$(calls.order.body)"
]])
    assert.equal(1, rc)
    assert.matches("services[0].plugins[0].config: calls[1]: dependency cycle: customer -> customer", out, 1, true)
  end)
end)
