-- request-size-limiting handler on gw.test.context: the declared length against the limit in
-- each unit, and the 411 of require_content_length.
local helpers = require "spec.helpers"
local cjson = require "cjson"
local handler = dofile(helpers.repo .. "/plugins/request-size-limiting/handler.lua")

local function run(conf, opts)
  local c = assert(helpers.validate_plugin_config("request-size-limiting", conf))
  local ctx = gw.test.context(opts)
  local r = ctx:run(handler, "access", c)
  return r == "exit" and ctx.exit_status or 200, ctx.exit_body and cjson.decode(ctx.exit_body)
end

describe("request-size-limiting (unit)", function()
  it("compares the body with the limit in its unit", function()
    assert.equal(200, run({ allowed_payload_size = 10, size_unit = "bytes" }, { method = "POST", body = string.rep("x", 10) }))
    local status, body = run({ allowed_payload_size = 10, size_unit = "bytes" }, { method = "POST", body = string.rep("x", 11) })
    assert.equal(413, status)
    assert.same({ message = "Request size limit exceeded" }, body)
    assert.equal(200, run({ allowed_payload_size = 1, size_unit = "kilobytes" }, { method = "POST", body = string.rep("x", 1024) }))
    assert.equal(413, run({ allowed_payload_size = 1, size_unit = "kilobytes" }, { method = "POST", body = string.rep("x", 1025) }))
    assert.equal(413, run({ allowed_payload_size = 0.001 }, { method = "POST", body = string.rep("x", 1049) }))
    assert.equal(200, run({ allowed_payload_size = 0.001 }, { method = "POST", body = string.rep("x", 1048) }))
  end)

  it("require_content_length: 411 for a body sent without a length", function()
    local status, body = run({ require_content_length = true },
                             { method = "POST", headers = { ["Transfer-Encoding"] = "chunked" } })
    assert.equal(411, status)
    assert.same({ message = "A valid Content-Length header is required" }, body)
    assert.equal(200, run({ require_content_length = true }, { method = "GET" }))
    assert.equal(200, run({}, { method = "POST", headers = { ["Transfer-Encoding"] = "chunked" } }))
  end)
end)
