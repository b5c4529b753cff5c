-- examples/gateway.yaml, the config `make run` starts, does what the README's tour shows.
local helpers = require "spec.helpers"
local cjson = require "cjson"

describe("examples/gateway.yaml (the README tour)", function()
  local client
  lazy_setup(function()
    helpers.start_gw{ yaml = helpers.example_yaml("gateway.yaml", { workers = 2 }) }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("routes /api/v1/users to users-v1 with the prefix stripped, X-Gateway added", function()
    local res = client:get("/api/v1/users/42?expand=1")
    local j = cjson.decode(assert.res_status(200, res))
    assert.equal("users-v1", j.service)
    assert.equal("/42", j.path)
    assert.equal("expand=1", j.query)
    assert.equal("gw", res.headers["x-gateway"])
  end)

  it("sends X-API-Version: 2.0 to users-v2", function()
    local j = cjson.decode(assert.res_status(200, client:get("/api/v1/users/42", { headers = { ["X-API-Version"] = "2.0" } })))
    assert.equal("users-v2", j.service)
  end)

  it("orders: GET and POST only; the body comes back", function()
    assert.res_status(404, client:send{ method = "DELETE", path = "/api/v1/orders" })
    local j = cjson.decode(assert.res_status(200, client:post("/api/v1/orders", {
      body = '{"id":7}', headers = { ["Content-Type"] = "application/json" } })))
    assert.equal('{"id":7}', j.body)
  end)

  it("private: 401 without a key, alice with her key (and the key hidden)", function()
    assert.res_status(401, client:get("/api/v1/private"))
    local j = cjson.decode(assert.res_status(200, client:get("/api/v1/private", { headers = { apikey = "alice-key" } })))
    assert.equal("alice", j.headers["x-consumer-username"])
    assert.is_nil(j.headers["apikey"])
  end)

  it("404 JSON for no route; the admin API answers", function()
    local body = assert.res_status(404, client:get("/nowhere"))
    assert.equal("no Route matched with those values", cjson.decode(body).message)
    local admin = helpers.admin_client()
    assert.equal(2, #assert.jsonbody(admin:get("/status")).workers)
    admin:close()
  end)
end)
