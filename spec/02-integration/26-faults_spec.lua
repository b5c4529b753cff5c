-- Upstream faults (spec/fixtures/fault_upstream.py scripts each one per request), a client that
-- disconnects mid-upload, and a worker SIGKILLed under load. Each fault gets the documented answer
-- (docs/security.md "Faults"): 502/503/504 with a JSON body before the response head, an aborted
-- connection after it, and nothing hangs.
local helpers = require "spec.helpers"
local socket = require "socket"
local cjson = require "cjson"

local FIXTURE = "spec/fixtures/fault_upstream.py"
local MSG_502 = "An invalid response was received from the upstream server"
local MSG_504 = "The upstream server is timing out"

local fport, bport, closed_port

-- one request on a new connection: the response (or nil, err) and the seconds it took
local function request(method, path, opts)
  opts = opts or {}
  local c = helpers.proxy_client(opts.timeout or 10000)
  local t0 = socket.gettime()
  local res, err = c:send{ method = method, path = path, headers = opts.headers, body = opts.body }
  local took = socket.gettime() - t0
  c:close()
  return res, err, took
end

local function json_error(res, status, msg)
  assert.is_table(res)
  assert.equal(status, res.status)
  assert.matches("application/json", res.headers["content-type"], 1, true)
  local body = cjson.decode(res.body)
  assert.equal(msg, body.message)
  return body
end

-- raw request; returns everything received until the connection ends, whether it ended with a
-- reset ("aborted": luasocket reads a FIN as the end of "*a" and a reset as an error), the seconds
local function raw_exchange(path, timeout)
  local s = socket.tcp()
  s:settimeout(timeout or 10)
  assert(s:connect("127.0.0.1", helpers.gw_info().proxy_port))
  assert(s:send("GET " .. path .. " HTTP/1.1\r\nHost: faults\r\nConnection: close\r\n\r\n"))
  local t0 = socket.gettime()
  local data, err, partial = s:receive("*a")
  s:close()
  assert(err ~= "timeout", "no end after " .. (timeout or 10) .. " s")
  return data or partial or "", data == nil, socket.gettime() - t0
end

local function events(reset)
  local c = helpers.http_client("127.0.0.1", fport, 5000)
  local res = assert(c:get(reset and "/events/reset" or "/events"))
  c:close()
  return cjson.decode(res.body)
end

local function fd_count(pid)
  local _, out = helpers.execute("ls /proc/" .. pid .. "/fd | wc -l")
  return tonumber(out:match("%d+"))
end

describe("upstream faults", function()
  lazy_setup(function()
    local ports = helpers.start_fixture{ script = FIXTURE, ports = 2 }
    fport, bport = ports[1], ports[2]
    closed_port = helpers.get_free_port()   -- nothing listens there
    helpers.start_gw{ config = {
      upstreams = {
        { name = "pair", targets = { { target = "127.0.0.1:" .. closed_port }, { target = "127.0.0.1:" .. fport } },
          healthchecks = { passive = { failures = 2, cooldown = 30 } } },
      },
      services = {
        { name = "faults", url = "http://127.0.0.1:" .. fport, read_timeout = 1000, connect_timeout = 1000,
          retries = 0, routes = { { paths = { "/f" } } } },
        { name = "closed", url = "http://127.0.0.1:" .. closed_port, retries = 2,
          routes = { { paths = { "/closed" } } } },
        { name = "blackhole", url = "http://127.0.0.1:" .. bport, connect_timeout = 500, retries = 1,
          routes = { { paths = { "/blackhole" } } } },
        { name = "pair", url = "http://pair:" .. fport, retries = 1, routes = { { paths = { "/pair" } } } },
        -- a body_filter plugin: the response body is gathered before the head goes out
        { name = "gather", url = "http://127.0.0.1:" .. fport, read_timeout = 1000, retries = 0,
          routes = { { paths = { "/bf" } } },
          plugins = { { name = "response-transformer", config = { add = { json = { "gathered:true" } } } } } },
      },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  before_each(function() events(true) end)

  it("a healthy request passes (the fixture works)", function()
    local res = assert(request("GET", "/f/ok"))
    assert.equal(200, res.status)
    assert.equal('{"ok":true}', res.body)
    -- and a complete response ends cleanly (what "aborted" below is measured against)
    local data, aborted = raw_exchange("/f/ok")
    assert.matches('{"ok":true}$', data)
    assert.is_false(aborted)
  end)

  describe("before the response head", function()
    it("a reset gives 502 with a JSON body", function()
      local res = request("GET", "/f/reset_before_head")
      json_error(res, 502, MSG_502)
      assert.matches("closed the connection before a response", helpers.gw_log(), 1, true)
    end)

    it("a malformed status line gives 502", function()
      json_error(request("GET", "/f/malformed"), 502, MSG_502)
      assert.matches("sent an invalid response head", helpers.gw_log(), 1, true)
    end)

    it("bytes that are not HTTP give 502", function()
      json_error(request("GET", "/f/garbage"), 502, MSG_502)
    end)

    it("a stalled upstream gives 504 after read_timeout", function()
      local res, _, took = request("GET", "/f/stall")
      json_error(res, 504, MSG_504)
      assert(took >= 0.9 and took < 4, "504 after " .. took .. " s (read_timeout 1 s)")
      -- the upstream connection was closed by gw, not left open
      helpers.wait_until(function()
        local ev = events()
        return ev[1] and ev[1].fault == "stall" and ev[1].peer_closed
      end, 5)
    end)

    it("a closed port gives 502 after the retries", function()
      helpers.clean_gw_log()
      local res, _, took = request("GET", "/closed/x")
      json_error(res, 502, MSG_502)
      assert(took < 3, "took " .. took .. " s")
      local log = helpers.gw_log()
      for try = 1, 3 do
        assert.matches("127.0.0.1:" .. closed_port .. " connect failed (try " .. try .. ")", log, 1, true)
      end
    end)

    it("a blackholed address gives 504 after connect_timeout on each try", function()
      helpers.clean_gw_log()
      local res, _, took = request("GET", "/blackhole/x")
      json_error(res, 504, MSG_504)
      assert(took >= 0.9 and took < 4, "504 after " .. took .. " s (2 tries of 0.5 s)")
      local log = helpers.gw_log()
      assert.matches("127.0.0.1:" .. bport .. " connect timed out (try 1)", log, 1, true)
      assert.matches("127.0.0.1:" .. bport .. " connect timed out (try 2)", log, 1, true)
    end)

    it("a closed target of a balanced upstream is retried on the other and marked down", function()
      helpers.clean_gw_log()
      for _ = 1, 8 do
        local res = assert(request("GET", "/pair/ok"))
        assert.equal(200, res.status)
      end
      assert.matches("upstream target 127.0.0.1:" .. closed_port .. " marked down", helpers.gw_log(), 1, true)
    end)
  end)

  describe("interim responses", function()
    it("100 Continue then the final answer", function()
      local res = assert(request("GET", "/f/continue"))
      assert.equal(200, res.status)
      assert.equal('{"ok":true}', res.body)
    end)

    it("103 Early Hints then the final answer (with its Link header)", function()
      local res = assert(request("GET", "/f/early_hints"))
      assert.equal(200, res.status)
      assert.equal('{"ok":true}', res.body)
      assert.matches("rel=preload", res.headers["link"], 1, true)
    end)

    it("several interim answers in a row", function()
      local res = assert(request("GET", "/f/many_interim"))
      assert.equal(200, res.status)
      assert.equal('{"ok":true}', res.body)
    end)
  end)

  describe("after the response head", function()
    -- what the client got: the head, the body bytes after it, and how the connection ended
    local function split(data)
      local head, body = data:match("^(.-\r\n\r\n)(.*)$")
      return assert(head, "no response head in: " .. data:sub(1, 200)), body
    end

    it("a reset in a Content-Length body aborts the client connection: the body is short", function()
      local data, aborted = raw_exchange("/f/reset_after_head")
      local head, body = split(data)
      assert.matches("^HTTP/1.1 200", head)
      assert.matches("Content-Length: 100000", head, 1, true)
      assert(#body < 100000, "the body looks complete")
      assert.is_true(aborted)
    end)

    it("a clean close in a Content-Length body (short body) aborts the client connection", function()
      local data, aborted = raw_exchange("/f/short_body")
      local head, body = split(data)
      assert.matches("Content-Length: 100000", head, 1, true)
      assert(#body < 100000, "the body looks complete")
      -- a reset, not a FIN: a client reading until close cannot mistake it for the whole body
      assert.is_true(aborted)
      assert.matches("closed the connection in the response body", helpers.gw_log(), 1, true)
    end)

    it("a reset in a chunked body: the client gets no terminating chunk", function()
      local data, aborted = raw_exchange("/f/reset_chunked")
      assert.is_true(aborted)
      local head, body = split(data)
      assert.matches("Transfer-Encoding: chunked", head, 1, true)
      assert.matches("^3e8\r\n", body)
      assert.is_nil(body:find("\r\n0\r\n\r\n", 1, true))
    end)

    it("a clean close in a chunked body: the client gets no terminating chunk", function()
      local data, aborted = raw_exchange("/f/short_chunked")
      local _, body = split(data)
      assert.matches("^3e8\r\n", body)
      assert.is_nil(body:find("\r\n0\r\n\r\n", 1, true))
      assert.is_true(aborted)
    end)

    it("a stall in the body aborts the client connection after read_timeout", function()
      local data, aborted, took = raw_exchange("/f/stall_body")
      local _, body = split(data)
      assert(#body < 100000, "the body looks complete")
      assert.is_true(aborted)
      assert(took >= 0.9 and took < 4, "aborted after " .. took .. " s (read_timeout 1 s)")
    end)
  end)

  describe("while a body_filter plugin gathers the body (nothing sent yet)", function()
    for _, f in ipairs({ "reset_after_head", "short_body", "reset_chunked", "short_chunked" }) do
      it(f .. " gives 502 with a JSON body", function()
        -- a local response goes through body_filter like any other (architecture.md, step 12)
        assert.equal("true", json_error(request("GET", "/bf/" .. f), 502, MSG_502).gathered)
      end)
    end

    it("a stall in the body gives 504 after read_timeout", function()
      local res, _, took = request("GET", "/bf/stall_body")
      assert.equal("true", json_error(res, 504, MSG_504).gathered)
      assert(took >= 0.9 and took < 4, "504 after " .. took .. " s (read_timeout 1 s)")
    end)
  end)

  it("an upstream that answers early and closes while the client still uploads: the answer is relayed", function()
    for _ = 1, 3 do
      local s = socket.tcp()
      s:settimeout(10)
      assert(s:connect("127.0.0.1", helpers.gw_info().proxy_port))
      assert(s:send("POST /f/early_reply HTTP/1.1\r\nHost: faults\r\nContent-Length: 4000000\r\n\r\n"))
      assert(s:send(string.rep("u", 65536)))
      local data, _, partial = s:receive("*a")
      s:close()
      data = data or partial or ""
      assert.matches("^HTTP/1.1 413 ", data)
      assert.matches("Connection: close", data, 1, true)     -- the rest of the body is not read
      assert.matches('{"message":"too big for me"}', data, 1, true)
    end
  end)

  it("a client that disconnects mid-upload: the upstream request is aborted, descriptors return", function()
    local pid = helpers.gw_worker_pids()[1]
    -- settle: pooled upstream connections of earlier tests are closed by the fixture
    local base = helpers.wait_until(function()
      local a = fd_count(pid)
      socket.sleep(0.3)
      return a == fd_count(pid) and a
    end, 10)
    for round = 1, 3 do
      local s = socket.tcp()
      s:settimeout(5)
      assert(s:connect("127.0.0.1", helpers.gw_info().proxy_port))
      assert(s:send("POST /f/upload HTTP/1.1\r\nHost: faults\r\nContent-Length: 10000000\r\n\r\n"))
      assert(s:send(string.rep("u", 200000)))
      helpers.wait_until(function()
        local ev = events()
        return ev[round] and ev[round].fault == "upload" and ev[round].body_received > 0
      end, 5)
      if round == 2 then s:setoption("linger", { on = true, timeout = 0 }) end   -- a reset this time
      s:close()
      local ev = helpers.wait_until(function()
        local e = events()[round]
        return e and e.peer_closed and e
      end, 5)
      assert(ev.body_received < ev.body_expected, "the upstream got the whole body")
    end
    helpers.wait_until(function() return fd_count(pid) == base end, 5)
    -- and the worker goes on
    assert.equal(200, assert(request("GET", "/f/ok")).status)
  end)

  it("nothing is left hanging: the worker's descriptors are back after every fault", function()
    local pid = helpers.gw_worker_pids()[1]
    local base = fd_count(pid)
    for _, f in ipairs({ "reset_before_head", "malformed", "short_body", "reset_chunked", "stall" }) do
      raw_exchange("/f/" .. f)
    end
    helpers.wait_until(function() return fd_count(pid) <= base end, 5)
  end)
end)

describe("a worker SIGKILLed under load", function()
  lazy_setup(function()
    fport = helpers.start_fixture{ script = FIXTURE }[1]
    helpers.start_gw{ config = {
      gw = { workers = 2 },
      services = { { name = "slow", url = "http://127.0.0.1:" .. fport, routes = { { paths = { "/" } } } } },
    } }
    helpers.wait_until(function() return #helpers.gw_worker_pids() == 2 end, 10)
  end)
  lazy_teardown(helpers.stop_all)

  it("is respawned; only its in-flight requests fail", function()
    local N = 16
    local socks = {}
    for i = 1, N do
      local s = socket.tcp()
      s:settimeout(10)
      assert(s:connect("127.0.0.1", helpers.gw_info().proxy_port))
      assert(s:send("GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
      socks[i] = s
    end
    -- every request is in flight (the upstream takes 1 s): how many does each worker hold?
    local victim, held
    helpers.wait_until(function()
      local admin = helpers.admin_client()
      local res = admin:get("/status")
      admin:close()
      local st = cjson.decode(res.body)
      local total = 0
      for _, w in ipairs(st.workers) do total = total + (w.connections or 0) end
      if total ~= N then return false end
      for _, w in ipairs(st.workers) do
        if (w.connections or 0) > 0 then victim, held = w.pid, w.connections end
      end
      return true
    end, 5)
    helpers.execute("kill -KILL " .. victim)
    local ok, failed = 0, 0
    for _, s in ipairs(socks) do
      local data, _, partial = s:receive("*a")
      data = data or partial or ""
      s:close()
      if data:match("^HTTP/1.1 200") and data:find('{"ok":true}', 1, true) then ok = ok + 1
      else
        assert.equal("", data)   -- a failed one got nothing at all, not half a response
        failed = failed + 1
      end
    end
    assert.equal(held, failed)
    assert.equal(N - held, ok)
    -- respawned, and every new request succeeds
    helpers.wait_until(function()
      local p = helpers.gw_worker_pids()
      return #p == 2 and p[1] ~= victim and p[2] ~= victim
    end, 5)
    assert.matches("worker " .. victim .. " died on signal 9, respawning", helpers.gw_log(), 1, true)
    for _ = 1, 10 do
      local c = helpers.proxy_client()
      local res = assert(c:get("/ok"))
      c:close()
      assert.equal(200, res.status)
    end
  end)
end)
