-- response-transformer (integration): a real gw in front of the mock upstream, whose answers are
-- the request as JSON; /headers?set=Name:Value adds response headers, /chunked/N streams the
-- JSON in N chunks, /bytes/N sends N bytes of application/octet-stream.
local helpers = require "spec.helpers"
local cjson = require "cjson"

describe("response-transformer (integration)", function()
  local client

  lazy_setup(function()
    local up = helpers.start_mock_upstream{ name = "rs-up" }
    local url = "http://127.0.0.1:" .. up[1]
    local function svc(name, config)
      return { name = name, url = url, routes = { { name = name, paths = { "/" .. name } } },
               plugins = { { name = "response-transformer", config = config } } }
    end
    helpers.start_gw{ config = { services = {
      svc("headers", {
        remove = { headers = { "x-secret" } },
        rename = { headers = { "x-old:x-new" } },
        replace = { headers = { "x-version:2" } },
        add = { headers = { "x-added:yes", "x-version:not-added", "x-request-id:$(headers.x-request-id)" } },
        append = { headers = { "x-multi:b" } },
      }),
      svc("json", {
        remove = { json = { "connection_id", "request_no_on_connection", "trailers" }, headers = { "x-secret" } },
        rename = { json = { "upstream:origin", "headers.host:headers.authority" } },
        replace = { json = { "http_version:2" }, json_types = { "number" } },
        add = { json = { "gateway:gw", "meta.cached:false", "meta.user:$(headers.x-user)" },
                json_types = { "string", "boolean" }, headers = { "x-transformed:1" } },
        append = { json = { "notes:first" } },
      }),
    } } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("header rules on the upstream's own headers", function()
    local res = assert(client:get("/headers/headers?set=X-Secret:s&set=X-Old:o&set=X-Version:1&set=X-Multi:a",
                                  { headers = { ["X-Request-Id"] = "r-1" } }))
    assert.res_status(200, res)
    assert.is_nil(res.headers["x-secret"])
    assert.is_nil(res.headers["x-old"])
    assert.equal("o", res.headers["x-new"])
    assert.equal("2", res.headers["x-version"])
    assert.equal("yes", res.headers["x-added"])
    assert.equal("r-1", res.headers["x-request-id"])
    assert.same({ "a", "b" }, res.headers["x-multi"])
  end)

  it("with a JSON rule, a response that is not JSON streams (not gathered, no Content-Length)", function()
    local res = assert(client:get("/json/bytes-chunked/200000"))
    local body = assert.res_status(200, res)
    assert.equal(200000, #body)
    assert.equal("chunked", res.headers["transfer-encoding"])   -- gathered, it would have a length
    assert.is_nil(res.headers["content-length"])
    assert.equal("1", res.headers["x-transformed"])
    -- and a JSON one on the same route is still gathered and transformed
    res = assert(client:get("/json/chunked/3"))
    local j = cjson.decode(assert.res_status(200, res))
    assert.equal("gw", j.gateway)
    assert.is_truthy(res.headers["content-length"])
  end)

  it("with only header rules a chunked response streams through still chunked", function()
    local res = assert(client:get("/headers/chunked/5"))
    local body = assert.res_status(200, res)
    assert.equal("chunked", res.headers["transfer-encoding"])
    assert.is_nil(res.headers["content-length"])
    assert.equal("yes", res.headers["x-added"])
    assert.equal("rs-up", cjson.decode(body).upstream)          -- the body as the upstream sent it
    assert.equal(5, cjson.decode(body).chunks)
  end)

  it("with a JSON rule a chunked response arrives with a Content-Length, transformed", function()
    local res = assert(client:get("/json/chunked/5", { headers = { ["X-User"] = "al" } }))
    local body = assert.res_status(200, res)
    assert.is_nil(res.headers["transfer-encoding"])
    assert.equal(tostring(#body), res.headers["content-length"])
    local j = cjson.decode(body)
    assert.equal("rs-up", j.origin)
    assert.is_nil(j.upstream)
    assert.is_nil(j.connection_id)
    assert.is_nil(j.request_no_on_connection)
    assert.is_nil(j.trailers)
    assert.equal(2, j.http_version)
    assert.equal("gw", j.gateway)
    assert.same({ cached = false, user = "al" }, j.meta)
    assert.same({ "first" }, j.notes)
    assert.equal("/chunked/5", j.path)
    assert.is_nil(j.headers.host)
    assert.matches("^127%.0%.0%.1:", j.headers.authority)
    assert.equal("1", res.headers["x-transformed"])
  end)

  it("a Content-Length response is transformed with the new length", function()
    local res = assert(client:get("/json/headers?set=X-Secret:s"))
    local body = assert.res_status(200, res)
    assert.equal(tostring(#body), res.headers["content-length"])
    assert.is_nil(res.headers["x-secret"])
    assert.equal("gw", cjson.decode(body).gateway)
  end)

  it("a response that is not JSON passes untouched", function()
    local res = assert(client:get("/json/bytes/3000"))
    local body = assert.res_status(200, res)
    assert.equal(3000, #body)
    assert.equal("0123456789abcdef", body:sub(1, 16))
    assert.equal("application/octet-stream", res.headers["content-type"])
    assert.equal("1", res.headers["x-transformed"])   -- header rules still apply
  end)

  it("a compressed JSON body (Content-Encoding) passes untouched", function()
    local res = assert(client:get("/json/headers?set=Content-Encoding:gzip"))
    local body = assert.res_status(200, res)
    assert.equal("rs-up", cjson.decode(body).upstream)
    assert.is_nil(cjson.decode(body).gateway)
  end)

  it("HEAD gets the header rules; any status with a JSON body gets the JSON rules", function()
    local res = assert(client:send{ method = "HEAD", path = "/json/x" })
    assert.res_status(200, res)
    assert.equal("1", res.headers["x-transformed"])
    res = assert(client:get("/json/status/404"))
    local j = cjson.decode(assert.res_status(404, res))
    assert.equal("gw", j.gateway)                         -- any status with a JSON body
  end)
end)
