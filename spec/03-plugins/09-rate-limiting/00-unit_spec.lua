-- rate-limiting (unit): the handler in gw.test.context, policy local on a gw.shared dict of this
-- process, policy redis against a real redis-server.
local helpers = require "spec.helpers"
local shared_c = require "gw.shared_c"
pcall(shared_c.create, "rl_unit", "1m")

local handler = dofile(helpers.repo .. "/plugins/rate-limiting/handler.lua")

local function conf(over)
  local c = assert(helpers.validate_plugin_config("rate-limiting", over))
  return c
end

local function run(c, spec)
  local ctx = gw.test.context(spec or { client_ip = "10.0.0.1" })
  local r = ctx:run(handler, "access", c)
  return ctx, r
end

describe("rate-limiting (unit)", function()
  it("policy local: counts per identifier, 429 past the limit with the headers", function()
    local c = conf{ day = 2, limit_by = "header", header_name = "X-T", dict = "rl_unit" }
    local spec = { headers = { ["X-T"] = "u1" } }
    local ctx = run(c, spec)
    assert.is_nil(ctx.exit_status)
    assert.equal("1", ctx:response_header("X-RateLimit-Remaining-Day"))
    run(c, spec)
    ctx = run(c, spec)
    assert.equal(429, ctx.exit_status)
    assert.equal("0", ctx:response_header("X-RateLimit-Remaining-Day"))
    assert.truthy(tonumber(ctx:response_header("Retry-After")) > 0)
    assert.is_nil(run(c, { headers = { ["X-T"] = "u2" } }).exit_status)
  end)

  it("policy local: an undeclared dict is a counter failure", function()
    local ctx = run(conf{ day = 1, limit_by = "ip", dict = "rl_nope" })
    assert.is_nil(ctx.exit_status)
    ctx = run(conf{ day = 1, limit_by = "ip", dict = "rl_nope", fault_tolerant = false })
    assert.equal(500, ctx.exit_status)
  end)

  describe("policy redis", function()
    local port
    lazy_setup(function() port = helpers.start_redis() end)
    lazy_teardown(function() helpers.stop_redis() end)

    it("one script call per request; refused requests are not counted", function()
      local c = conf{ day = 2, month = 10, limit_by = "ip", policy = "redis", redis_host = "127.0.0.1", redis_port = port }
      local spec = { client_ip = "10.0.0.9" }
      assert.is_nil(run(c, spec).exit_status)
      assert.is_nil(run(c, spec).exit_status)
      local ctx = run(c, spec)
      assert.equal(429, ctx.exit_status)
      assert.equal("8", ctx:response_header("X-RateLimit-Remaining-Month"))
      ctx = run(c, spec)
      assert.equal("8", ctx:response_header("X-RateLimit-Remaining-Month"))
      assert.is_nil(run(c, { client_ip = "10.0.0.10" }).exit_status)
    end)

    it("Redis unreachable: passes when fault tolerant, 500 otherwise", function()
      local dead = helpers.get_free_port()
      local base = { day = 1, limit_by = "ip", policy = "redis", redis_host = "127.0.0.1", redis_port = dead }
      assert.is_nil(run(conf(base)).exit_status)
      base.fault_tolerant = false
      assert.equal(500, run(conf(base)).exit_status)
    end)
  end)
end)
