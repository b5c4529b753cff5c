-- The access log: one JSON line per request by default (parsed here), a custom text format, the
-- consumer and latencies, lines from two workers never mixed, written within ~100 ms, reopened on
-- SIGUSR1 after a logrotate-style rename; a bad format is a config error.
local helpers = require "spec.helpers"
local cjson = require "cjson"
local config = require "gw.config"

local function lines(path)
  local out = {}
  for l in (helpers.read_file(path) or ""):gmatch("[^\n]+") do out[#out + 1] = l end
  return out
end

local function wait_lines(path, n)
  assert(helpers.wait_until(function() return #lines(path) >= n end, 5), "fewer than " .. n .. " lines in " .. path)
  return lines(path)
end

describe("access log (JSON, the default format) #integration", function()
  local up, log, client

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "al" }
    log = os.tmpname()
    helpers.start_gw{ config = {
      gw = { workers = 2, access_log = log },
      services = {
        { name = "api", url = "http://127.0.0.1:" .. up[1], routes = { { name = "api-route", paths = { "/api" } } },
          plugins = { { name = "key-auth", config = { key_names = { "apikey" } } } } },
        { name = "local", url = "echo://", routes = { { name = "echo-route", paths = { "/echo" } } } },
      },
      consumers = { { username = "alice", keyauth_credentials = { { key = "alice-key" } } } },
    } }
  end)
  lazy_teardown(function() helpers.stop_all(); os.remove(log); os.remove(log .. ".1") end)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("writes one JSON object per request with the request's figures", function()
    local res = client:get("/api/users?x=\"q\"", { headers = { apikey = "alice-key", ["User-Agent"] = 'spec "agent"' } })
    assert.res_status(200, res)
    local l = wait_lines(log, 1)
    local e = cjson.decode(l[#l])
    assert.equal("GET", e.method)
    assert.equal('/api/users?x="q"', e.uri)
    assert.equal(200, e.status)
    assert.equal("api-route", e.route)
    assert.equal("api", e.service)
    assert.equal("alice", e.consumer)
    assert.equal("127.0.0.1", e.client)
    assert.equal('spec "agent"', e.user_agent)
    assert.equal("127.0.0.1:" .. up[1], e.upstream)
    assert.matches("^%x+%-%x+$", e.request_id)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", e.time)
    assert.is_true(e.bytes_sent > 100 and e.request_length > 40)
    assert.is_true(e.latency_ms > 0 and e.upstream_latency_ms > 0)
    assert.is_true(e.upstream_latency_ms <= e.latency_ms)
    assert.near(e.latency_ms - e.upstream_latency_ms, e.gateway_latency_ms, 0.002)
  end)

  it("a request gw answers itself: no upstream latency (null), no consumer", function()
    local before = #lines(log)
    assert.res_status(401, client:get("/api/users"))
    assert.res_status(200, client:get("/echo"))
    local l = wait_lines(log, before + 2)
    local a, b = cjson.decode(l[before + 1]), cjson.decode(l[before + 2])
    assert.equal(401, a.status)
    assert.equal(cjson.null, a.upstream_latency_ms)
    assert.equal("", a.consumer)
    assert.equal(200, b.status)
    assert.equal("echo-route", b.route)
  end)

  it("two workers, many requests: every line whole", function()
    local before = #lines(log)
    for i = 1, 100 do
      local c = helpers.proxy_client()
      assert.res_status(200, c:get("/echo/" .. i))
      c:close()
    end
    local l = wait_lines(log, before + 100)
    local seen = {}
    for i = before + 1, #l do
      local e = cjson.decode(l[i])
      seen[e.uri] = true
    end
    for i = 1, 100 do assert.is_true(seen["/echo/" .. i], "/echo/" .. i) end
  end)

  it("SIGUSR1 reopens it: after a rename, new lines go to a new file", function()
    assert.res_status(200, client:get("/echo/before"))
    wait_lines(log, 1)
    assert(helpers.wait_until(function() return (helpers.read_file(log) or ""):find("/echo/before", 1, true) end, 5))
    assert(os.rename(log, log .. ".1"))
    helpers.signal_gw("USR1")
    assert(helpers.wait_until(function()
      local _, n = helpers.gw_log():gsub("access_log [^\n]* reopened", "")
      return n >= 2
    end, 5))
    assert.res_status(200, client:get("/echo/after"))
    local l = wait_lines(log, 1)
    assert.equal(1, #l)
    assert.equal("/echo/after", cjson.decode(l[1]).uri)
    assert.is_nil((helpers.read_file(log .. ".1") or ""):find("/echo/after", 1, true))
  end)
end)

describe("access log (a text format)", function()
  it("fills the variables, with - for what is absent", function()
    local log = os.tmpname()
    finally(function() helpers.stop_all(); os.remove(log) end)
    helpers.start_gw{ config = {
      gw = { workers = 1, access_log = log,
             access_log_format = '$remote_addr "$request_method $request_uri $server_protocol" $status $body_bytes_sent "$http_x_missing" "$http_user_agent" $sent_http_content_type rt=$request_time' },
      services = { { name = "e", url = "echo://", routes = { { paths = { "/e" } } } } },
    } }
    local c = helpers.proxy_client()
    assert.res_status(200, c:get("/e/x?y=1", { headers = { ["User-Agent"] = "ua/1" } }))
    c:close()
    local l = wait_lines(log, 1)
    assert.matches('^127%.0%.0%.1 "GET /e/x%?y=1 HTTP/1%.1" 200 %d+ "%-" "ua/1" application/json rt=%d+%.%d%d%d$', l[1])
  end)

  it("stdout: whole lines on gw's standard output", function()
    finally(helpers.stop_all)
    helpers.start_gw{ config = {
      gw = { workers = 2, access_log = "stdout", access_log_format = "ACCESS $status $uri" },
      services = { { name = "e", url = "echo://", routes = { { paths = { "/e" } } } } },
    } }
    for i = 1, 20 do
      local c = helpers.proxy_client()
      assert.res_status(200, c:get("/e/" .. i))
      c:close()
    end
    assert(helpers.wait_until(function()
      return select(2, helpers.gw_log():gsub("ACCESS 200 /e/%d+", "")) == 20
    end, 5))
    for line in helpers.gw_log():gmatch("[^\n]*ACCESS[^\n]*") do
      assert.matches("^ACCESS 200 /e/%d+$", line)
    end
  end)

  it("an unknown variable is a config error", function()
    local c, errs = config.load_string('_format_version: "3.0"\ngw:\n  access_log_format: "$status $nope"\n', "al.yaml")
    assert.is_nil(c)
    assert.matches("al.yaml:3:%d+: gw.access_log_format: unknown variable %$nope", table.concat(errs, "\n"))
  end)
end)
