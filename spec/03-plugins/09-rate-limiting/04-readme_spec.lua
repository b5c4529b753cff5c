-- rate-limiting README: its YAML compiles, and run against a real gw (backends replaced by the
-- mock upstream, Redis by a real redis-server) it limits as described.
local helpers = require "spec.helpers"

describe("rate-limiting README", function()
  local readme = helpers.readme("rate-limiting")

  it("the YAML compiles", function()
    helpers.assert_yaml_compiles(readme)
  end)

  it("the example runs: local per consumer, redis per IP", function()
    local up = helpers.start_mock_upstream{ name = "rl-readme" }
    local rport = helpers.start_redis()
    finally(helpers.stop_all)
    helpers.start_gw{ yaml = helpers.local_gw_yaml(readme.yamls[1], { workers = 1, replace = {
      ["127%.0%.0%.1:900[01]"] = "127.0.0.1:" .. up[1], ["redis_port: 6379"] = "redis_port: " .. rport } }) }
    local c = helpers.proxy_client()
    local res = assert(c:get("/api/x", { headers = { apikey = "alice-key" } }))
    assert.res_status(200, res)
    assert.equal("100", res.headers["x-ratelimit-limit-minute"])
    assert.equal("1000", res.headers["x-ratelimit-limit-hour"])
    c:close()
    -- the public service: 10 a second by IP, through Redis
    local socket = require "socket"
    local t = socket.gettime()
    helpers.sleep(math.ceil(t) - t + 0.02)
    local codes = {}
    for i = 1, 12 do
      local c2 = helpers.proxy_client()
      codes[i] = assert(c2:get("/public/x")).status
      c2:close()
    end
    local ok = 0
    for _, s in ipairs(codes) do if s == 200 then ok = ok + 1 end end
    assert.equal(10, ok)
  end)
end)
