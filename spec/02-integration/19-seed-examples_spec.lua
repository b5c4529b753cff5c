-- The seed article's examples that earlier plugins cover, as shipped in examples/: each file
-- runs in a real gw (ports substituted) and does what its comments say.
local helpers = require "spec.helpers"
local cjson = require "cjson"
local jwt = require "gw.jwt"

local function example(name, replace)
  return (helpers.example_yaml(name, { workers = 2, replace = replace }))
end

describe("examples/jwt.yaml (the seed's authenticateToken)", function()
  local client
  lazy_setup(function() helpers.start_gw{ yaml = example("jwt.yaml") } end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("401 without a token", function()
    assert.res_status(401, client:get("/api/profile"))
  end)

  it("401 for a token signed with another secret, or expired", function()
    local forged = jwt.sign({ iss = "web-app", sub = "u1", exp = os.time() + 60 }, "HS256", "guess")
    assert.res_status(401, client:get("/api/profile", { headers = { Authorization = "Bearer " .. forged } }))
    local old = jwt.sign({ iss = "web-app", sub = "u1", exp = os.time() - 60 }, "HS256", "change-me: a long random JWT_SECRET")
    assert.res_status(401, client:get("/api/profile", { headers = { Authorization = "Bearer " .. old } }))
  end)

  it("the token of examples/jwt-token.lua passes; the upstream sees the user", function()
    local p = assert(io.popen(helpers.repo .. "/bin/gw lua " .. helpers.repo .. "/examples/jwt-token.lua user-7"))
    local token = p:read("*l")
    p:close()
    local j = cjson.decode(assert.res_status(200, client:get("/api/profile", { headers = { Authorization = "Bearer " .. token } })))
    assert.equal("/api/profile", j.path)
    assert.equal("web-app", j.headers["x-consumer-username"])
    assert.equal("user-7", j.headers["x-user-id"])
  end)
end)

describe("examples/rate-limiting.yaml (the seed's Kong config and Redis sliding window)", function()
  local client
  lazy_setup(function()
    local port = helpers.start_redis()
    helpers.start_gw{ yaml = example("rate-limiting.yaml", { ["redis_port: 6379"] = "redis_port: " .. port }) }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("v1: 100 a minute and 1000 an hour, shown to the client", function()
    local res = client:get("/api/v1/x")
    assert.res_status(200, res)
    assert.equal("100", res.headers["x-ratelimit-limit-minute"])
    assert.equal("1000", res.headers["x-ratelimit-limit-hour"])
    local before = tonumber(res.headers["x-ratelimit-remaining-minute"])
    res = client:get("/api/v1/x")
    assert.equal(before - 1, tonumber(res.headers["x-ratelimit-remaining-minute"]))
  end)

  it("v2: the 101st request of a user within the window gets 429; another user is not affected", function()
    for i = 1, 100 do
      local res = client:get("/api/v2/x", { headers = { ["X-User-Id"] = "alice" } })
      assert.equal(200, res.status, "request " .. i)
    end
    local res = client:get("/api/v2/x", { headers = { ["X-User-Id"] = "alice" } })
    assert.res_status(429, res)
    assert.is_truthy(tonumber(res.headers["retry-after"]))
    assert.res_status(200, client:get("/api/v2/x", { headers = { ["X-User-Id"] = "bob" } }))
  end)
end)

describe("examples/circuit-breaker.yaml (the seed's gobreaker ProductService)", function()
  lazy_setup(function() helpers.start_gw{ yaml = example("circuit-breaker.yaml") } end)
  lazy_teardown(helpers.stop_all)

  it("502 while closed, then after 3 requests at 100 % failures the fallback answers", function()
    local client = helpers.proxy_client()
    local statuses = {}
    for i = 1, 3 do statuses[i] = client:get("/api/v1/products/42").status end
    assert.same({ 502, 502, 502 }, statuses)
    local res = client:get("/api/v1/products/42")
    local j = cjson.decode(assert.res_status(200, res))
    assert.equal("open", res.headers["x-circuit-breaker"])
    assert.same({ available = false, message = "Product details temporarily unavailable" }, j)
    client:close()
    local admin = helpers.admin_client()
    local cbs = assert.jsonbody(admin:get("/circuit-breakers"))
    admin:close()
    local state
    for _, c in pairs(cbs.data or cbs) do
      if type(c) == "table" and c.name == "ProductService" then state = c.state end
    end
    assert.equal("open", state)
  end)
end)

describe("examples/caching.yaml (the seed's nginx product cache)", function()
  local client
  lazy_setup(function() helpers.start_gw{ yaml = example("caching.yaml") } end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("Miss, then Hit with the first answer, keyed by the URI", function()
    local res = client:get("/api/v1/products/1?full=1", { headers = { ["X-Req"] = "first" } })
    assert.res_status(200, res)
    assert.equal("Miss", res.headers["x-cache-status"])
    res = client:get("/api/v1/products/1?full=1", { headers = { ["X-Req"] = "second" } })
    local j = cjson.decode(assert.res_status(200, res))
    assert.equal("Hit", res.headers["x-cache-status"])
    assert.equal("first", j.headers["x-req"])
    res = client:get("/api/v1/products/2", { headers = { ["X-Req"] = "third" } })
    assert.equal("Miss", res.headers["x-cache-status"])
  end)
end)
