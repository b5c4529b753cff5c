-- rate-limiting: config checks.
local helpers = require "spec.helpers"

describe("rate-limiting schema", function()
  local function check(conf) return helpers.validate_plugin_config("rate-limiting", conf) end

  it("accepts limits with defaults", function()
    local ok, err = check{ minute = 10, hour = 100 }
    assert.truthy(ok, err)
  end)

  it("needs a window, ordered limits, and the fields a mode needs", function()
    for _, case in ipairs({
      { {}, "at least one of second" },
      { { minute = 10, hour = 5 }, "lower than the limit per minute" },
      { { minute = 0 }, nil },
      { { minute = 1, limit_by = "header" }, "header_name" },
      { { minute = 1, limit_by = "path" }, "needs path" },
      { { minute = 1, policy = "redis" }, "redis_host" },
      { { minute = 1, limit_by = "nope" }, nil },
      { { minute = 1, policy = "memcached" }, nil },
    }) do
      local ok, err = check(case[1])
      assert.falsy(ok)
      if case[2] then assert.matches(case[2], tostring(helpers.json_encode(err)), 1, true) end
    end
  end)
end)
