-- examples/validation.yaml, the seed example: gw runs it as it is (ports substituted), valid
-- requests are echoed, invalid ones get the 400 / 415 answers.
local helpers = require "spec.helpers"
local cjson = require "cjson"

local JSON = { ["Content-Type"] = "application/json" }
local UUID = "2eb8aa08-aa98-11ea-b4aa-73b441d16380"

describe("examples/validation.yaml", function()
  local client
  lazy_setup(function()
    helpers.start_gw{ yaml = helpers.example_yaml("validation.yaml", { workers = 1 }) }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("gw check accepts it", function()
    local rc, out = helpers.gw_check(helpers.repo .. "/examples/validation.yaml")
    assert.equal(0, rc, out)
  end)

  it("createUser: a valid user is echoed, body intact", function()
    local body = '{"email":"ann@example.com","name":"Ann","age":30}'
    local j = cjson.decode(assert.res_status(200, client:post("/api/users", { body = body, headers = JSON })))
    assert.equal("users", j.service)
    assert.equal("/api/users", j.path)
    assert.equal(body, j.body)
    -- age is optional; 0 and 120 are in range
    assert.res_status(200, client:post("/api/users", { body = '{"email":"b@example.org","name":"Bo"}', headers = JSON }))
    assert.res_status(200, client:post("/api/users", { body = '{"email":"c@example.org","name":"Cy","age":0}', headers = JSON }))
    assert.res_status(200, client:post("/api/users", { body = '{"email":"d@example.org","name":"Di","age":120}', headers = JSON }))
  end)

  it("createUser: each broken field is named", function()
    local res = client:post("/api/users", { body = '{"email":"not-an-email","name":"A","age":121}', headers = JSON })
    assert.same({ error = "Validation failed", details = {
      "body.age: must be at most 120", "body.email: must be a valid email", "body.name: must be at least 2 characters" } },
      cjson.decode(assert.res_status(400, res)))
    res = client:post("/api/users", { body = '{"age":12.5}', headers = JSON })
    assert.same({ "body.email: is required", "body.name: is required", "body.age: must be an integer" },
                cjson.decode(assert.res_status(400, res)).details)
    res = client:post("/api/users", { body = '{"email":"a@b.io","name":"' .. ("x"):rep(101) .. '"}', headers = JSON })
    assert.same({ "body.name: must be at most 100 characters" }, cjson.decode(assert.res_status(400, res)).details)
    res = client:post("/api/users", { body = "{", headers = JSON })
    assert.same({ "body: is not valid JSON" }, cjson.decode(assert.res_status(400, res)).details)
    res = client:post("/api/users", { body = "email=a", headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } })
    assert.equal("Unsupported Media Type", cjson.decode(assert.res_status(415, res)).error)
  end)

  it("getProduct: a UUID passes, anything else is a 400 naming path.productId", function()
    local j = cjson.decode(assert.res_status(200, client:get("/api/products/" .. UUID)))
    assert.equal("products", j.service)
    assert.equal("/api/products/" .. UUID, j.path)
    for _, bad in ipairs({ "42", "not-a-uuid", UUID .. "0" }) do
      local res = client:get("/api/products/" .. bad)
      assert.same({ error = "Validation failed", details = { "path.productId: must be a valid uuid" } },
                  cjson.decode(assert.res_status(400, res)))
    end
    -- the route takes GET only, and one path segment
    assert.res_status(404, client:post("/api/products/" .. UUID, { body = "{}", headers = JSON }))
    assert.res_status(404, client:get("/api/products/" .. UUID .. "/reviews"))
  end)
end)
