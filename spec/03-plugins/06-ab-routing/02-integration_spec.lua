-- ab-routing in a running gw with two mock upstreams: the split is sticky per user across
-- requests (and across the two workers), rules by regex and cookie pick their side.
local helpers = require "spec.helpers"
local cjson = require "cjson"

describe("ab-routing (integration)", function()
  local client

  lazy_setup(function()
    local v1 = helpers.start_mock_upstream{ name = "v1" }
    local v2 = helpers.start_mock_upstream{ name = "v2" }
    helpers.start_gw{ config = {
      gw = { workers = 2 },
      upstreams = {
        { name = "up-v1", targets = { { target = "127.0.0.1:" .. v1[1] } } },
        { name = "up-v2", targets = { { target = "127.0.0.1:" .. v2[1] } } },
      },
      services = {
        { name = "api", url = "http://up-v1", routes = { { paths = { "/api" } } },
          plugins = { { name = "ab-routing", config = {
            rules = { { header = "X-API-Version", regex = "^2\\.", upstream = "up-v2" },
                      { cookie = "canary", value = "always", upstream = "up-v2" } },
            split = { { upstream = "up-v1", weight = 50 }, { upstream = "up-v2", weight = 50 } },
            hash_on = "header", hash_on_header = "X-User" } } } },
      },
    } }
    client = helpers.proxy_client()
  end)

  lazy_teardown(function() helpers.stop_all() end)

  local function side(headers)
    local res = assert(client:get("/api/x", { headers = headers }))
    local body = cjson.decode(assert.res_status(200, res))
    return body.upstream, body.headers["x-upstream-selected"]
  end

  it("keeps each user on one side across requests", function()
    local sides = {}
    for u = 1, 40 do
      local first = side{ ["X-User"] = "u" .. u }
      sides[first] = true
      for _ = 1, 5 do assert.equal(first, (side{ ["X-User"] = "u" .. u })) end
    end
    assert.is_true(sides.v1 and sides.v2)     -- 40 users at 50/50 reach both sides
  end)

  it("rules by regex and by cookie win over the split", function()
    for u = 1, 10 do
      assert.equal("v2", (side{ ["X-User"] = "u" .. u, ["X-API-Version"] = "2.3" }))
      assert.equal("v2", (side{ ["X-User"] = "u" .. u, Cookie = "canary=always" }))
    end
    local up, sel = side{ ["X-API-Version"] = "2.0" }
    assert.equal("v2", up)
    assert.equal("up-v2", sel)
  end)
end)
