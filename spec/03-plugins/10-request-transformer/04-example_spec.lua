-- examples/transformation.yaml (the seed: a legacy route where old_field becomes new_field in JSON
-- bodies) started as written, ports substituted; its echo services show what they received.
local helpers = require "spec.helpers"
local cjson = require "cjson"

describe("examples/transformation.yaml", function()
  local client, gw_info

  lazy_setup(function()
    gw_info = helpers.start_gw{ yaml = helpers.example_yaml("transformation.yaml") }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("legacy: old_field arrives as new_field, with the other changes", function()
    local res = assert(client:post("/legacy/orders?debug=1&id=7", {
      headers = { ["Content-Type"] = "application/json", ["X-Legacy-Token"] = "Bearer abc" },
      body = '{"old_field":"v","items":[],"n":12345678901234567890}' }))
    local echo = cjson.decode(assert.res_status(200, res))
    assert.equal("legacy", echo.service)
    assert.equal("/orders", echo.path)
    assert.equal("id=7", echo.query)                                  -- debug removed
    assert.same({ new_field = "v", items = {}, n = 12345678901234567890, client = { kind = "legacy" }, schema = 2 },
                cjson.decode(echo.body))
    assert.matches('"items":[]', echo.body, 1, true)
    assert.matches('"n":12345678901234567890', echo.body, 1, true)
    assert.equal("Bearer abc", echo.headers["authorization"])
    assert.is_nil(echo.headers["x-legacy-token"])
    assert.equal("2", echo.headers["x-api-version"])
    -- the response-transformer on the echo's own answer
    assert.is_nil(echo.client_ip)
    assert.equal("legacy", res.headers["x-transformed"])
    assert.equal(tostring(#res.body), res.headers["content-length"])
  end)

  it("legacy: a form body is transformed too; a body of another type goes as it came", function()
    local echo = cjson.decode(assert.res_status(200, assert(client:post("/legacy/orders", {
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }, body = "old_field=a+b&x=1" }))))
    -- body rules apply to forms as well; a dotted name is a plain form field name there
    assert.equal("new_field=a%20b&x=1&client.kind=legacy&schema=2", echo.body)
    echo = cjson.decode(assert.res_status(200, assert(client:post("/legacy/orders", {
      headers = { ["Content-Type"] = "text/plain" }, body = '{"old_field":1}' }))))
    assert.equal('{"old_field":1}', echo.body)
  end)

  it("users: the regex capture goes into the path and a header, query renamed or defaulted", function()
    local echo = cjson.decode(assert.res_status(200, assert(client:get("/users/42?fields=name",
      { headers = { ["X-User"] = "alice" } }))))
    assert.equal("users", echo.service)
    assert.equal("/v2/users/42", echo.path)
    assert.equal("select=name", echo.query)
    assert.equal("42", echo.headers["x-user-id"])
    assert.equal("alice", echo.headers["x-caller"])
    echo = cjson.decode(assert.res_status(200, assert(client:get("/users/7"))))
    assert.equal("/v2/users/7", echo.path)
    assert.equal("select=all", echo.query)
    assert.equal("anonymous", echo.headers["x-caller"])
    assert.res_status(404, assert(client:get("/users/abc")))
  end)

  it("curl, as the example's comment shows", function()
    local url = "http://127.0.0.1:" .. gw_info.proxy_port
    local p = assert(io.popen("curl -s " .. url .. "/legacy/orders?debug=1 -H 'Content-Type: application/json'"
      .. [[ -d '{"old_field": "v", "items": []}' 2>&1]]))
    local out = p:read("*a")
    p:close()
    local echo = cjson.decode(out)
    assert.same({ new_field = "v", items = {}, client = { kind = "legacy" }, schema = 2 }, cjson.decode(echo.body))
    p = assert(io.popen("curl -si " .. url .. "/users/42?fields=name 2>&1"))
    out = p:read("*a")
    p:close()
    assert.matches("^HTTP/1%.1 200 OK\r\n", out)
    assert.matches('"path":"/v2/users/42"', out, 1, true)
  end)
end)
