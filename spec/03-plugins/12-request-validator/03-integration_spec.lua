-- request-validator in a real gw, in front of the mock upstream: valid requests reach it intact,
-- invalid ones are answered 400/415 by gw and never reach it.
local helpers = require "spec.helpers"
local cjson = require "cjson"

local UUID = "2eb8aa08-aa98-11ea-b4aa-73b441d16380"

local USER_SCHEMA = {
  type = "object", required = { "email", "name" }, additionalProperties = false,
  properties = {
    email = { type = "string", format = "email" },
    name = { type = "string", minLength = 2, maxLength = 100 },
    age = { type = "integer", minimum = 0, maximum = 120 },
    tags = { type = "array", items = { type = "string" }, uniqueItems = true },
  },
}

describe("request-validator (integration)", function()
  local client, port

  lazy_setup(function()
    port = helpers.start_mock_upstream{ name = "rv" }[1]
    helpers.start_gw{ config = {
      services = { {
        name = "api", url = "http://127.0.0.1:" .. port,
        routes = {
          { name = "users", paths = { "/api/users" }, methods = { "POST" }, strip_path = false,
            plugins = { { name = "request-validator", config = { body_schema = USER_SCHEMA } } } },
          { name = "search", paths = { "/api/search" }, strip_path = false,
            plugins = { { name = "request-validator", config = {
              query_schema = { required = { "q" }, properties = {
                q = { type = "string", minLength = 1 }, limit = { type = "integer", minimum = 1, maximum = 100 } } },
              header_schema = '{"properties":{"X-Api-Version":{"enum":["1","2"]}}}' } } } },
          { name = "product", paths = { "~/api/products/(?<productId>[^/]+)$" }, strip_path = false,
            plugins = { { name = "request-validator", config = {
              path_schema = { required = { "productId" }, properties = { productId = { type = "string", format = "uuid" } } },
              verbose_response = false } } } },
          { name = "upload", paths = { "/api/upload" }, strip_path = false,
            plugins = { { name = "request-validator", config = {
              query_schema = { properties = { name = { type = "string" } } } } } } },
        },
      } },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() if client then client:close() end end)

  local function requests() return helpers.mock_stats(port).requests - 1 end   -- minus the /stats call itself

  it("sends a valid body upstream as it came", function()
    local body = '{"email":"ann@example.com","name":"Ann","age":30,"tags":["a","b"]}'
    local res = client:post("/api/users", { body = body, headers = { ["Content-Type"] = "application/json" } })
    assert.res_status(200, res)
    local seen = assert.jsonbody(res)
    assert.equal("/api/users", seen.path)
    assert.equal(body, seen.body)
  end)

  it("answers 400 with every failing field, without calling the upstream", function()
    helpers.mock_stats(port, true)
    local res = client:post("/api/users", { headers = { ["Content-Type"] = "application/json" },
      body = '{"email":"ann-at-example.com","name":"A","age":130,"tags":["a","a"],"admin":true}' })
    local body = assert.res_status(400, res)
    assert.matches("application/json", res.headers["content-type"], 1, true)
    assert.same({ error = "Validation failed", details = {
      "body.age: must be at most 120", "body.email: must be a valid email", "body.name: must be at least 2 characters",
      "body.tags: must not contain duplicate items", "body.admin: is not allowed" } }, cjson.decode(body))
    assert.equal(0, requests())
  end)

  it("answers 400 for broken JSON and for an empty body, 415 for another Content-Type", function()
    local res = client:post("/api/users", { body = '{"email":', headers = { ["Content-Type"] = "application/json" } })
    assert.same({ "body: is not valid JSON" }, cjson.decode(assert.res_status(400, res)).details)
    res = client:post("/api/users", { headers = { ["Content-Type"] = "application/json" } })
    assert.same({ "body: is required" }, cjson.decode(assert.res_status(400, res)).details)
    client:close()
    client = helpers.proxy_client()
    res = client:post("/api/users", { body = "email=ann@example.com", headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } })
    local j = cjson.decode(assert.res_status(415, res))
    assert.equal("Unsupported Media Type", j.error)
    assert.same({ "header.content-type: must be one of: application/json" }, j.details)
  end)

  it("reads a chunked body before checking it", function()
    local res = client:send{ method = "POST", path = "/api/users", headers = { ["Content-Type"] = "application/json" },
                             chunks = { '{"email":"ann@exa', 'mple.com","name":"Ann"}' } }
    assert.equal('{"email":"ann@example.com","name":"Ann"}', assert.jsonbody(res).body)
    client:close()
    client = helpers.proxy_client()
    res = client:send{ method = "POST", path = "/api/users", headers = { ["Content-Type"] = "application/json" },
                       chunks = { '{"email":"ann@exa', 'mple.com"}' } }
    assert.same({ "body.name: is required" }, cjson.decode(assert.res_status(400, res)).details)
  end)

  it("checks query arguments and headers, reading integers from strings", function()
    assert.res_status(200, client:get("/api/search?q=shoes&limit=10", { headers = { ["X-API-Version"] = "2" } }))
    local res = client:get("/api/search?limit=abc", { headers = { ["X-API-Version"] = "3" } })
    assert.same({ "query.q: is required", "query.limit: must be an integer", 'header.x-api-version: must be one of: "1", "2"' },
                cjson.decode(assert.res_status(400, res)).details)
    res = client:get("/api/search?q=x&limit=1000")
    assert.same({ "query.limit: must be at most 100" }, cjson.decode(assert.res_status(400, res)).details)
  end)

  it("checks path parameters from the regex route's named captures (verbose_response off)", function()
    local res = client:get("/api/products/" .. UUID)
    assert.res_status(200, res)
    assert.equal("/api/products/" .. UUID, assert.jsonbody(res).path)
    res = client:get("/api/products/42")
    assert.same({ error = "Validation failed" }, cjson.decode(assert.res_status(400, res)))
  end)

  it("leaves the body of a route without a body schema alone (streamed, any type)", function()
    local big = ("x"):rep(200000)
    local res = client:post("/api/upload?name=a", { body = big, headers = { ["Content-Type"] = "application/octet-stream" } })
    assert.equal(#big, #assert.jsonbody(res).body)
  end)

  it("survives a burst of invalid requests: same answers, worker alive", function()
    for i = 1, 50 do
      local res = client:post("/api/users", { body = '{"email":"x' .. i .. '"}', headers = { ["Content-Type"] = "application/json" } })
      assert.same({ "body.name: is required", "body.email: must be a valid email" }, cjson.decode(assert.res_status(400, res)).details)
    end
    assert.res_status(200, client:post("/api/users", { body = '{"email":"a@b.io","name":"Al"}',
                                                       headers = { ["Content-Type"] = "application/json" } }))
  end)
end)

describe("request-validator reload", function()
  lazy_teardown(helpers.stop_all)

  it("a new generation compiles the new schema", function()
    local yaml = [[
_format_version: "3.0"
gw:
  listen: ["127.0.0.1:{PROXY_PORT}"]
  admin_listen: "127.0.0.1:{ADMIN_PORT}"
  workers: 1
services:
  - name: users
    url: echo://
    routes:
      - name: users
        paths: ["/users"]
    plugins:
      - name: request-validator
        config:
          query_schema:
            properties:
              limit: { type: integer, maximum: MAX }
]]
    local info = helpers.start_gw{ yaml = yaml:gsub("MAX", "10") }
    local c = helpers.proxy_client()
    assert.res_status(200, c:get("/users?limit=10"))
    assert.res_status(400, c:get("/users?limit=11"))
    c:close()
    local text = assert(helpers.read_file(info.config_file)):gsub("maximum: 10", "maximum: 20")
    helpers.write_file(info.config_file, text)
    -- POST /reload answers once the old workers stopped accepting: every new connection is served
    -- by the new generation (a SIGHUP returns before that)
    local admin = helpers.admin_client()
    assert.res_status(200, admin:post("/reload"))
    admin:close()
    c = helpers.proxy_client()
    assert.res_status(200, c:get("/users?limit=11"))
    local res = c:get("/users?limit=21")
    assert.same({ "query.limit: must be at most 20" }, cjson.decode(assert.res_status(400, res)).details)
    c:close()
  end)
end)
