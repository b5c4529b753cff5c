-- circuit-breaker: schema defaults and limits, its README's YAML, and the admin view helper on
-- a config without circuits.
local helpers = require "spec.helpers"

describe("circuit-breaker schema", function()
  it("fills in gobreaker-like defaults", function()
    local c = assert(helpers.validate_plugin_config("circuit-breaker", {}))
    assert.equal("circuit_breaker", c.dict)
    assert.equal(5, c.min_requests)
    assert.equal(0.5, c.failure_ratio)
    assert.equal(0, c.consecutive_failures)
    assert.equal(60, c.timeout)
    assert.equal(1, c.max_requests)
    assert.equal(0, c.interval)
    assert.is_nil(c.failure_statuses)
    assert.is_true(c.count_timeouts)
    assert.is_true(c.count_connect_errors)
    assert.equal(503, c.fallback_status)
    assert.is_false(c.fallback_cache)
  end)

  it("refuses bad values", function()
    local function errs(c) return helpers.plugin_config_errors("circuit-breaker", c) end
    assert.matches("failure_ratio", errs{ failure_ratio = 2 }, 1, true)
    assert.matches("timeout", errs{ timeout = 0 }, 1, true)
    assert.matches("max_requests", errs{ max_requests = 0 }, 1, true)
    assert.matches("failure_statuses", errs{ failure_statuses = { 700 } }, 1, true)
    assert.matches("name", errs{ name = "a b" }, 1, true)
  end)

  it("the README's YAML compiles", function()
    helpers.assert_yaml_compiles(helpers.readme("circuit-breaker"))
  end)
end)
