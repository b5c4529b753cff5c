-- The benchmark harness (make bench, bench/run.sh) in brief, so it cannot rot: one 1-second round
-- per target, a few idle connections, and the output must hold the whole table: every target's
-- throughput row, the gw/peer ratios, the idle-connection rows and one row per issue target.
-- Figures are not judged here (a smoke run on a busy machine proves nothing about speed).
local helpers = require "spec.helpers"
local socket = require "socket"

local function have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == 0
end

-- a port offset under which every port the bench uses (9001..9112 shifted) is free; below the
-- ephemeral range, so no spec's get_free_port can hand one of them out meanwhile
local function free_offset()
  for _ = 1, 50 do
    local off = math.random(1000, 20000)
    local ok = true
    for p = 9001 + off, 9112 + off do
      local s = socket.tcp()
      if not s:bind("127.0.0.1", p) then ok = false end
      s:close()
      if not ok then break end
    end
    if ok then return off end
  end
  error("no free port range for the bench")
end

describe("make bench smoke", function()
  local tools = have("nginx") and have("haproxy") and have("wrk") and have("curl")
    and io.open("/usr/lib/nginx/modules/ngx_http_lua_module.so") ~= nil

  if not tools then
    pending("needs nginx, libnginx-mod-http-lua, haproxy, wrk and curl")
    return
  end

  it("runs every workload and prints every target's row", function()
    math.randomseed(os.time() + helpers.get_free_port())
    local tmp = os.tmpname()
    os.remove(tmp)
    local cmd = ("BENCH_SECS=1 BENCH_ROUNDS=1 BENCH_IDLE=50 BENCH_SMOKE=1 BENCH_PORT_OFFSET=%d "
      .. "BENCH_TMP=%s bash bench/run.sh 2>&1; echo \"exit=$?\""):format(free_offset(), tmp)
    local p = io.popen(cmd)
    local out = p:read("*a")
    p:close()
    os.execute("rm -rf " .. tmp)
    assert.matches("exit=0", out, 1, true)
    -- workload 4: router and reload
    assert.matches("median: %d+ ns/lookup", out)
    assert.matches("POST /config answered in %d+ ms", out)
    -- workloads 1 and 2: a throughput row per target, numbers in every column
    for _, t in ipairs{ "nginx-proxy", "openresty-chain", "haproxy-proxy", "gw-proxy", "gw-chain" } do
      assert.matches("\n" .. t:gsub("%-", "%%-") .. " +%d+ +[%d.]+ +[%d.]+\n", out)
      assert.matches("check " .. t:gsub("%-", "%%-") .. ": HTTP 200", out)
    end
    assert.not_matches("warning gw", out, 1, true)
    -- the ratios gw/peer
    assert.matches("\ngw%-proxy +[%d.]+ +[%d.]+ +[%d.]+ +[%d.]+ +[%d.]+ +[%d.]+\n", out)
    assert.matches("\ngw%-chain +[%d.]+ +[%d.]+ +[%d.]+ +[%d.]+ +[%d.]+ +[%d.]+\n", out)
    -- workload 3: idle keep-alive connections
    for _, t in ipairs{ "nginx-proxy", "haproxy-proxy", "gw-proxy" } do
      assert.matches("\n" .. t:gsub("%-", "%%-") .. " +50 +%d+ +%d+ +%-?%d+\n", out)
    end
    -- one row per target of the issue, met or not
    for _, t in ipairs{ "proxy cpu/req", "chain cpu/req", "chain p99", "idle conn memory", "router match",
                        "reload 1k svc/5k routes" } do
      assert.matches("\n" .. t:gsub("%-", "%%-") .. " +[^\n]- (N?O?T? ?met)\n", out)
    end
  end)
end)
