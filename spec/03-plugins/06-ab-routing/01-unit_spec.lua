-- ab-routing: schema, rules (header exact/regex, cookie), the weighted split and its stickiness,
-- on gw.test.context requests (the context knows one service, "test-service").
local helpers = require "spec.helpers"

local handler = dofile(helpers.repo .. "/plugins/ab-routing/handler.lua")

local function conf(c)
  return assert(helpers.validate_plugin_config("ab-routing", c))
end

-- runs the split choice on a request; returns the chosen name
local function choose(c, req)
  local chosen
  local probe = { access = function(_, cf) chosen = handler._pick(cf) end }
  gw.test.context(req or {}):run(probe, "access", c)
  return chosen
end

describe("ab-routing schema", function()
  it("keeps the header-rules shape of 1.0", function()
    local c = conf{ rules = { { value = "2.0", upstream = "users-v2" } } }
    assert.equal("X-API-Version", c.header)
    assert.equal("none", c.hash_on)
    assert.same({}, c.split)
  end)

  it("refuses rules without value or regex, both, bad regexes, empty configs and zero weights", function()
    local function errs(c) return helpers.plugin_config_errors("ab-routing", c) end
    assert.matches("exactly one of value or regex", errs{ rules = { { upstream = "a" } } }, 1, true)
    assert.matches("exactly one of value or regex", errs{ rules = { { upstream = "a", value = "1", regex = "1" } } }, 1, true)
    assert.matches("invalid regex", errs{ rules = { { upstream = "a", regex = "(" } } }, 1, true)
    assert.matches("at least one rule or a split", errs{}, 1, true)
    assert.matches("weights must add up", errs{ split = { { upstream = "a", weight = 0 } } }, 1, true)
    assert.matches("hash_on_header", errs{ split = { { upstream = "a", weight = 1 } }, hash_on = "header" }, 1, true)
    assert.matches("expected one of", errs{ split = { { upstream = "a", weight = 1 } }, hash_on = "moon" }, 1, true)
  end)
end)

describe("ab-routing rules", function()
  local function run(c, req)
    local ctx = gw.test.context(req)
    local r = ctx:run(handler, "access", conf(c))
    return ctx, r
  end

  it("routes by an exact header value and leaves others alone", function()
    local c = { rules = { { value = "2.0", upstream = "test-service" } } }
    local ctx = run(c, { headers = { ["X-API-Version"] = "2.0" } })
    assert.equal("test-service", ctx:upstream_header("X-Upstream-Selected"))
    ctx = run(c, { headers = { ["X-API-Version"] = "2.01" } })
    assert.is_nil(ctx:upstream_header("X-Upstream-Selected"))
    ctx = run(c, {})
    assert.is_nil(ctx:upstream_header("X-Upstream-Selected"))
  end)

  it("routes by a regex on a header of the rule's own", function()
    local c = { rules = { { header = "X-Client", regex = "^beta-[0-9]+$", upstream = "test-service" } } }
    assert.equal("test-service", run(c, { headers = { ["X-Client"] = "beta-42" } }):upstream_header("X-Upstream-Selected"))
    assert.is_nil(run(c, { headers = { ["X-Client"] = "beta-x" } }):upstream_header("X-Upstream-Selected"))
  end)

  it("routes by a cookie's value (exact or regex)", function()
    local c = { rules = { { cookie = "canary", value = "yes", upstream = "test-service" } } }
    assert.equal("test-service",
      run(c, { headers = { Cookie = "a=1; canary=yes; b=2" } }):upstream_header("X-Upstream-Selected"))
    assert.is_nil(run(c, { headers = { Cookie = "canary=no" } }):upstream_header("X-Upstream-Selected"))
    assert.is_nil(run(c, { headers = { Cookie = "notcanary=yes" } }):upstream_header("X-Upstream-Selected"))
    c = { rules = { { cookie = "group", regex = "^(qa|staff)$", upstream = "test-service" } } }
    assert.equal("test-service", run(c, { headers = { Cookie = "group=staff" } }):upstream_header("X-Upstream-Selected"))
  end)

  it("first matching rule wins; an unknown upstream is 503", function()
    local c = { rules = { { value = "2.0", upstream = "missing" }, { regex = ".", upstream = "test-service" } } }
    local ctx, r = run(c, { headers = { ["X-API-Version"] = "2.0" } })
    assert.equal("exit", r)
    assert.equal(503, ctx.exit_status)
    assert.equal("test-service", run(c, { headers = { ["X-API-Version"] = "3" } }):upstream_header("X-Upstream-Selected"))
  end)

  it("a rule match wins over the split; the split takes the rest", function()
    local c = { rules = { { value = "2.0", upstream = "test-service" } },
                split = { { upstream = "test-service", weight = 1 } } }
    assert.equal("test-service", run(c, {}):upstream_header("X-Upstream-Selected"))
  end)
end)

describe("ab-routing split", function()
  local SPLIT = { { upstream = "v1", weight = 90 }, { upstream = "v2", weight = 10 } }

  local function within(n, total, share)
    local got = n / total
    assert(math.abs(got - share) <= 0.02, ("share %.4f, expected %.2f +- 0.02"):format(got, share))
  end

  it("10,000 requests at 90/10 at random land within 2%", function()
    local c = conf{ split = SPLIT }
    local v2 = 0
    for _ = 1, 10000 do if choose(c) == "v2" then v2 = v2 + 1 end end
    within(v2, 10000, 0.10)
  end)

  it("10,000 users hashed by a header at 90/10 land within 2%, each always on one side", function()
    local c = conf{ split = SPLIT, hash_on = "header", hash_on_header = "X-User" }
    local v2, side = 0, {}
    for i = 1, 10000 do
      local s = choose(c, { headers = { ["X-User"] = "user-" .. i } })
      side[i] = s
      if s == "v2" then v2 = v2 + 1 end
    end
    within(v2, 10000, 0.10)
    for i = 1, 10000, 97 do assert.equal(side[i], choose(c, { headers = { ["X-User"] = "user-" .. i } })) end
  end)

  it("hashes a cookie, the client IP or the consumer; no key falls back to random", function()
    local c = conf{ split = SPLIT, hash_on = "cookie", hash_on_cookie = "sid" }
    local v2 = 0
    for i = 1, 10000 do
      local s = choose(c, { headers = { Cookie = "sid=s" .. i } })
      if s == "v2" then v2 = v2 + 1 end
      if i % 500 == 0 then assert.equal(s, choose(c, { headers = { Cookie = "x=1; sid=s" .. i } })) end
    end
    within(v2, 10000, 0.10)

    c = conf{ split = SPLIT, hash_on = "ip" }
    local a = choose(c, { client_ip = "10.1.2.3" })
    for _ = 1, 20 do assert.equal(a, choose(c, { client_ip = "10.1.2.3" })) end

    c = conf{ split = SPLIT, hash_on = "consumer" }
    local seen = {}
    for _ = 1, 200 do seen[choose(c) or "?"] = true end      -- no consumer: random
    assert.is_true(seen.v1 and seen.v2)
  end)

  it("a zero weight never receives traffic", function()
    local c = conf{ split = { { upstream = "v1", weight = 0 }, { upstream = "v2", weight = 5 } } }
    for _ = 1, 500 do assert.equal("v2", choose(c)) end
  end)
end)

describe("ab-routing README", function()
  it("its YAML compiles", function()
    local readme = helpers.readme("ab-routing")
    helpers.assert_yaml_compiles(readme)
    assert.equal(2, #readme.yamls)
  end)
end)
