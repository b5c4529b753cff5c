-- rate-limiting README: its YAML compiles, and run against a real gw (backends replaced by the
-- mock upstream, Redis by a real redis-server) it limits as described.
local helpers = require "spec.helpers"
local config = require "gw.config"

local function yaml_blocks(text) return helpers.fenced_blocks(text, "yaml") end

describe("rate-limiting README", function()
  local text = assert(helpers.read_file(helpers.repo .. "/plugins/rate-limiting/README.md"))

  it("the YAML compiles", function()
    local yamls = yaml_blocks(text)
    assert.is_true(#yamls > 0)
    for _, y in ipairs(yamls) do
      local c, errs = config.load_string(y, "rate-limiting/README.md")
      assert(c, errs and table.concat(errs, "\n"))
    end
  end)

  it("the example runs: local per consumer, redis per IP", function()
    local up = helpers.start_mock_upstream{ name = "rl-readme" }
    local rport = helpers.start_redis()
    finally(helpers.stop_all)
    local y = yaml_blocks(text)[1]:gsub("127%.0%.0%.1:900[01]", "127.0.0.1:" .. up[1])
      :gsub("redis_port: 6379", "redis_port: " .. rport)
      :gsub("\ngw:\n", '\ngw:\n  listen: ["127.0.0.1:{PROXY_PORT}"]\n  admin_listen: "127.0.0.1:{ADMIN_PORT}"\n  workers: 1\n', 1)
    helpers.start_gw{ yaml = y }
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
