-- proxy-cache with strategy redis: a real redis-server (helpers.start_redis), the real mock
-- upstream, two gw workers sharing one cache through Redis; Redis down -> Bypass, never an error.
local helpers = require "spec.helpers"
local redis = require "gw.redis"

describe("proxy-cache strategy redis", function()
  local up, rport

  local function upstream_requests() return helpers.mock_stats(up[1]).requests - 1 end

  local function get(path)
    local c = helpers.proxy_client()
    local res = assert(c:get(path))
    c:close()
    return res
  end

  local function config()
    return {
      gw = { workers = 2 },
      services = { {
        name = "r", url = "http://127.0.0.1:" .. up[1] .. "/r", routes = { { paths = { "/r" } } },
        plugins = { { name = "proxy-cache", config = {
          strategy = "redis", redis_port = rport, redis_timeout = 300, cache_ttl = 60, cache_key_header = true,
        } } },
      } },
    }
  end

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "pc-redis-up" }
    rport = helpers.start_redis()
    helpers.start_gw{ config = config() }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() helpers.mock_stats(up[1], true) end)

  it("Miss, then Hit from Redis; the entry has a TTL there", function()
    local r1 = get("/r/a?y=2&x=1")
    assert.res_status(200, r1)
    assert.equal("Miss", r1.headers["x-cache-status"])
    local key = r1.headers["x-cache-key"]
    -- the entry is written to Redis after the response went out: a request that comes first is
    -- another Miss (and goes upstream), never an error
    local r, misses = nil, 1
    helpers.wait_until(function()
      r = get("/r/a?x=1&y=2")
      if r.headers["x-cache-status"] == "Miss" then misses = misses + 1 end
      return r.headers["x-cache-status"] == "Hit"
    end, 5)
    assert.equal(r1.body, assert.res_status(200, r))
    for _ = 1, 5 do assert.equal("Hit", get("/r/a?x=1&y=2").headers["x-cache-status"]) end
    assert.equal(misses, upstream_requests())   -- every Hit came from Redis
    local cli = assert(redis.connect{ port = rport })
    local ttl = assert(cli:command("TTL", "proxy-cache:" .. key))
    assert.truthy(ttl > 60 and ttl <= 120, tostring(ttl))
  end)

  it("Redis down: Bypass, the request still goes upstream; Redis back: cached again", function()
    helpers.stop_redis()
    for _ = 1, 3 do
      local r = get("/r/down")
      assert.res_status(200, r)
      assert.equal("Bypass", r.headers["x-cache-status"])
    end
    assert.equal(3, upstream_requests())
    rport = helpers.start_redis()   -- a new port: reload gw onto it
    helpers.start_gw{ config = config() }
    assert.equal("Miss", get("/r/down").headers["x-cache-status"])
    helpers.wait_until(function() return get("/r/down").headers["x-cache-status"] == "Hit" end, 5)
  end)
end)
