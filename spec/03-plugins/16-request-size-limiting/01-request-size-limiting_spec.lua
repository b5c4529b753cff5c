-- request-size-limiting: the schema, then a real gw: Content-Length over the limit is refused
-- before any of the body is read; a chunked body is counted while it streams; 411 on demand;
-- the README's config runs.
local helpers = require "spec.helpers"
local cjson = require "cjson"
local socket = require "socket"

local function validate(conf)
  local c, errs = helpers.validate_plugin_config("request-size-limiting", conf)
  return c, errs and table.concat(errs, "\n")
end

describe("request-size-limiting schema", function()
  it("fills the defaults", function()
    local c = assert(validate({}))
    assert.equal(128, c.allowed_payload_size)
    assert.equal("megabytes", c.size_unit)
    assert.is_false(c.require_content_length)
  end)
  it("refuses a size that is not positive and an unknown unit", function()
    assert.matches("allowed_payload_size: value must be greater than 0", select(2, validate({ allowed_payload_size = 0 })))
    assert.matches("size_unit: expected one of: bytes, kilobytes, megabytes", select(2, validate({ size_unit = "gigabytes" })))
  end)
end)

describe("request-size-limiting (integration)", function()
  local up, client

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "rsl" }
    helpers.start_gw{ config = {
      gw = { workers = 1, limits = { max_body_size = "1k" } },
      services = {
        { name = "s", url = "http://127.0.0.1:" .. up[1],
          routes = {
            { name = "small", paths = { "/small" },
              plugins = { { name = "request-size-limiting", config = { allowed_payload_size = 100, size_unit = "bytes" } } } },
            { name = "big", paths = { "/big" },
              plugins = { { name = "request-size-limiting", config = { allowed_payload_size = 4, size_unit = "kilobytes" } } } },
            { name = "strict", paths = { "/strict" },
              plugins = { { name = "request-size-limiting", config = { allowed_payload_size = 1, require_content_length = true } } } },
          } },
      },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("passes a body at the limit", function()
    local j = cjson.decode(assert.res_status(200, client:post("/small", { body = string.rep("x", 100) })))
    assert.equal(100, j.body_size)
  end)

  it("refuses a Content-Length over the limit without reading the body", function()
    -- only the head is sent: the answer comes without waiting for the 101 bytes
    assert(client:raw("POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\nExpect: 100-continue\r\n\r\n"))
    local t0 = socket.gettime()
    local res = assert(client:read_response())
    assert.is_true(socket.gettime() - t0 < 2)
    assert.same({ message = "Request size limit exceeded" }, cjson.decode(assert.res_status(413, res)))
    assert.equal("close", res.headers["connection"])
  end)

  it("counts a chunked body while it streams: 413 past the limit", function()
    local res = client:send{ method = "POST", path = "/small", chunks = { string.rep("a", 60), string.rep("b", 60) } }
    assert.same({ message = "Request body too large" }, cjson.decode(assert.res_status(413, res)))
  end)

  it("streams a chunked body under the limit upstream", function()
    local res = client:send{ method = "POST", path = "/small", chunks = { string.rep("a", 50), string.rep("b", 50) } }
    local j = cjson.decode(assert.res_status(200, res))
    assert.equal(100, j.body_size)
    assert.equal("chunked", j.headers["transfer-encoding"])
  end)

  it("replaces limits.max_body_size for its routes (4 KiB over a 1 KiB default)", function()
    local j = cjson.decode(assert.res_status(200, client:post("/big", { body = string.rep("x", 4096) })))
    assert.equal(4096, j.body_size)
    assert.res_status(413, client:post("/big", { body = string.rep("x", 4097) }))
  end)

  it("require_content_length: 411 for a chunked body; a body-less GET and a sized body pass", function()
    local res = client:send{ method = "POST", path = "/strict", chunks = { "abc" } }
    assert.same({ message = "A valid Content-Length header is required" }, cjson.decode(assert.res_status(411, res)))
    client:close()
    client = helpers.proxy_client()
    assert.res_status(200, client:get("/strict"))
    assert.res_status(200, client:post("/strict", { body = "abc" }))
  end)
end)

describe("request-size-limiting README", function()
  local readme = helpers.readme("request-size-limiting")

  it("the YAML compiles and runs: 10 MiB for the API", function()
    helpers.assert_yaml_compiles(readme.yamls[1], readme.label)
    local up = helpers.start_mock_upstream{ name = "rsl-readme" }
    finally(helpers.stop_all)
    helpers.start_gw{ yaml = helpers.local_gw_yaml(readme.yamls[1], { workers = 1,
      replace = { ["127%.0%.0%.1:900[01]"] = "127.0.0.1:" .. up[1] } }) }
    local cl = helpers.proxy_client()
    assert(cl:raw("POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: " .. (10 * 1024 * 1024 + 1) .. "\r\n\r\n"))
    assert.res_status(413, cl:read_response())
    cl:close()
    cl = helpers.proxy_client()
    assert.res_status(200, cl:post("/api/x", { body = string.rep("x", 1000) }))
    assert.res_status(411, cl:send{ method = "PUT", path = "/upload/f", chunks = { "abc" } })
    cl:close()
  end)
end)
