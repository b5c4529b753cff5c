-- spec/02-integration/03-bodies_spec.lua — request and response bodies through gw: chunked both
-- ways, close-delimited upstream responses, streaming (bytes move before the whole body exists),
-- and 1 GiB each way with the gw worker's memory bounded (its RSS sampled from /proc).
local helpers = require "spec.helpers"
-- On the ASan build (make test-asan) freed memory waits in ASan's quarantine: RSS bounds say
-- nothing there, so they are checked on the normal build only.
local ASAN = os.getenv("ASAN_OPTIONS") ~= nil
local socket = require "socket"

local GiB = 1024 * 1024 * 1024
local RSS_LIMIT_KB = 64 * 1024

local function echo_of(res)
  return assert(helpers.json_decode(res.body), "not JSON: " .. tostring(res and res.body))
end

-- VmRSS of a process in kB.
local function rss_kb(pid)
  local s = helpers.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

-- The one gw worker (specs run with workers: 1).
local function worker_pid()
  local pids = helpers.gw_worker_pids()
  assert.equal(1, #pids)
  return pids[1]
end

describe("bodies", function()
  local up, client

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "bodies" }
    helpers.start_gw{ config = {
      gw = { limits = { max_body_size = "2g" } },
      services = { { name = "s", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/" } } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("streams a chunked request body upstream intact", function()
    local res = assert(client:post("/up", { chunks = { "hel", "lo ", "", "world", string.rep("z", 70000) } }))
    assert.res_status(200, res)
    local e = echo_of(res)
    assert.equal("hello world" .. string.rep("z", 70000), e.body)
    assert.equal(11 + 70000, e.body_size)
    assert.equal("chunked", e.headers["transfer-encoding"])
    assert.is_nil(e.headers["content-length"])
    -- and the connection goes on
    res = assert(client:post("/up2", { chunks = { "again" } }))
    assert.equal("again", echo_of(res).body)
  end)

  it("keeps the client's other transfer codings (gzip, chunked) when forwarding a chunked body", function()
    assert(client:raw("POST /te HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" ..
      "4\r\nGZIP\r\n0\r\n\r\n"))
    local res = assert(client:read_response())
    assert.res_status(200, res)
    local e = echo_of(res)
    -- gw undoes and redoes only the chunked framing; the gzip coding is the upstream's to undo
    assert.equal("gzip, chunked", e.headers["transfer-encoding"])
    assert.equal("GZIP", e.body)
  end)

  it("passes chunk extensions and trailers without corrupting the body", function()
    assert(client:raw("POST /ext HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" ..
      "5;name=value\r\nhello\r\n6 ; x\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"))
    local res = assert(client:read_response())
    assert.res_status(200, res)
    assert.equal("hello world", echo_of(res).body)
    res = assert(client:get("/next"))
    assert.res_status(200, res)
  end)

  it("streams a Content-Length request body sent in slow pieces", function()
    assert(client:raw("POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 12\r\n\r\nabc"))
    socket.sleep(0.1)
    assert(client:raw("def"))
    socket.sleep(0.1)
    assert(client:raw("ghijkl"))
    local res = assert(client:read_response())
    assert.equal("abcdefghijkl", echo_of(res).body)
  end)

  it("keeps an upstream chunked response chunked and complete for an HTTP/1.1 client", function()
    for _, n in ipairs({ 1, 7, 50 }) do
      local res = assert(client:get("/chunked/" .. n))
      assert.res_status(200, res)
      assert.equal("chunked", res.headers["transfer-encoding"])
      assert.is_nil(res.headers["content-length"])
      local e = echo_of(res)
      assert.equal(n, e.chunks)
      assert.equal("/chunked/" .. n, e.path)
    end
  end)

  it("forwards a large chunked response byte for byte", function()
    local n = 5 * 1024 * 1024 + 123
    local res = assert(client:get("/bytes-chunked/" .. n))
    assert.res_status(200, res)
    assert.equal(n, #res.body)
    local pattern = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_\n"
    local block = string.rep(pattern, math.floor(65536 / #pattern) + 1):sub(1, 65536)
    assert.equal(block, res.body:sub(1, 65536))
    assert.equal(block:sub(1, 123), res.body:sub(-123))
  end)

  it("streams response chunks as they come (does not wait for the whole body)", function()
    local t0 = socket.gettime()
    local first
    local res = assert(client:send{ path = "/chunked/5", query = "delay=300",
      body_handler = function() first = first or socket.gettime() end })
    local total = socket.gettime() - t0
    assert.res_status(200, res)
    assert.is_true(total >= 1.1, "total " .. total)
    -- buffered, nothing would arrive before the last chunk (after 1.2 s)
    assert.is_true(first - t0 < 0.9, "first body bytes after " .. (first - t0))
  end)

  it("delivers a close-delimited upstream response complete (re-framed as chunked for 1.1)", function()
    for i = 1, 3 do
      local res = assert(client:get("/no-length", { query = { i = i } }))
      assert.res_status(200, res)
      local e = echo_of(res)
      assert.equal("/no-length", e.path)
      assert.equal("i=" .. i, e.query)
      -- framed for the client, so its connection can be kept
      assert.is_true(res.headers["transfer-encoding"] == "chunked" or res.headers["connection"] == "close")
    end
  end)

  it("HEAD of a close-delimited upstream response has no body", function()
    local res = assert(client:send{ method = "HEAD", path = "/no-length" })
    assert.res_status(200, res)
    res = assert(client:get("/after-head"))
    assert.equal("/after-head", echo_of(res).path)
  end)

  it("keeps pipelined chunked requests apart", function()
    assert(client:raw("POST /c1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" ..
                      "POST /c2 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n" ..
                      "GET /c3 HTTP/1.1\r\nHost: t\r\n\r\n"))
    local r1 = echo_of(assert(client:read_response()))
    local r2 = echo_of(assert(client:read_response()))
    local r3 = echo_of(assert(client:read_response()))
    assert.same({ "/c1", "abc" }, { r1.path, r1.body })
    assert.same({ "/c2", "de" }, { r2.path, r2.body })
    assert.same({ "/c3", "" }, { r3.path, r3.body })
  end)

  it("survives clients that disconnect in the middle of a download or an upload", function()
    local pid = worker_pid()
    for _ = 1, 5 do
      local c = helpers.proxy_client()
      assert(c:raw("GET /bytes/" .. (64 * 1024 * 1024) .. " HTTP/1.1\r\nHost: t\r\n\r\n"))
      c.sock:receive(100000)
      c:close()
      c = helpers.proxy_client()
      assert(c:raw("POST /sink HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n" .. string.rep("u", 300000)))
      c:close()
      c = helpers.proxy_client()
      assert(c:raw("POST /sink HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n" .. string.rep("u", 1000)))
      c:close()
    end
    socket.sleep(0.2)
    assert.equal(pid, worker_pid())
    local res = assert(client:get("/still-alive"))
    assert.res_status(200, res)
    -- nothing leaked upstream: the aborted requests' upstream connections are closed
    helpers.wait_until(function() return helpers.mock_stats(up[1]).active <= 3 end, 5)
  end)

  it("applies backpressure to a slow reader (bounded worker RSS)", function()
    local pid = worker_pid()
    local size = 48 * 1024 * 1024
    local max_rss, got = rss_kb(pid), 0
    assert(client:raw("GET /bytes/" .. size .. " HTTP/1.1\r\nHost: t\r\n\r\n"))
    local res = assert(client:read_response{ body_handler = function(d)
      got = got + #d
      if got % (4 * 1024 * 1024) < #d then
        socket.sleep(0.05)
        max_rss = math.max(max_rss, rss_kb(pid))
      end
    end })
    assert.res_status(200, res)
    assert.equal(size, got)
    assert.is_true(ASAN or max_rss < 16 * 1024, "worker RSS reached " .. max_rss .. " kB")
  end)

  it("downloads 1 GiB with the worker's RSS under 64 MiB", function()
    local pid = worker_pid()
    local pattern = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_\n"
    local block = string.rep(pattern, math.floor(65536 / #pattern) + 1):sub(1, 65536)
    local off, bad, max_rss, n = 0, nil, rss_kb(pid), 0
    local t0 = socket.gettime()
    local res, err = client:send{ path = "/bytes/" .. GiB, body_handler = function(d)
      -- the body is `block` repeated: check every byte lands where it should
      local pos, i = off % 65536, 1
      while i <= #d and not bad do
        local take = math.min(65536 - pos, #d - i + 1)
        if d:sub(i, i + take - 1) ~= block:sub(pos + 1, pos + take) then bad = off + i - 1 end
        i, pos = i + take, 0
      end
      off = off + #d
      n = n + 1
      if n % 256 == 0 then max_rss = math.max(max_rss, rss_kb(pid)) end
    end }
    local dt = socket.gettime() - t0
    assert(res, err)
    assert.res_status(200, res)
    assert.equal(GiB, off)
    assert.is_nil(bad, "body differs at byte " .. tostring(bad))
    max_rss = math.max(max_rss, rss_kb(pid))
    print(string.format("\n1 GiB download: %.1f s, %.0f MiB/s, worker max RSS %d kB", dt, 1024 / dt, max_rss))
    assert.is_true(ASAN or max_rss < RSS_LIMIT_KB, "worker RSS reached " .. max_rss .. " kB")
  end)

  it("uploads 1 GiB (chunked, generated on the fly) with the worker's RSS under 64 MiB", function()
    local pid = worker_pid()
    local block = string.rep("0123456789abcdef", 4096)
    local count, sent, max_rss = GiB / #block, 0, rss_kb(pid)
    local t0 = socket.gettime()
    local res, err = client:send{ method = "POST", path = "/sink", query = "sha1=1",
      body = function()
        if sent == count then return nil end
        sent = sent + 1
        if sent % 256 == 0 then max_rss = math.max(max_rss, rss_kb(pid)) end
        return block
      end }
    local dt = socket.gettime() - t0
    assert(res, err)
    assert.res_status(200, res)
    local e = echo_of(res)
    assert.equal(GiB, e.body_size)
    local p = assert(io.popen("python3 -c 'import hashlib\nh=hashlib.sha1()\nb=b\"0123456789abcdef\"*4096\n" ..
      "for _ in range(" .. count .. "): h.update(b)\nprint(h.hexdigest())'"))
    local want = p:read("*l")
    p:close()
    assert.equal(want, e.sha1)
    max_rss = math.max(max_rss, rss_kb(pid))
    print(string.format("\n1 GiB upload: %.1f s, %.0f MiB/s, worker max RSS %d kB", dt, 1024 / dt, max_rss))
    assert.is_true(ASAN or max_rss < RSS_LIMIT_KB, "worker RSS reached " .. max_rss .. " kB")
  end)

  it("uploads 256 MiB with Content-Length with the worker's RSS under 64 MiB", function()
    local pid = worker_pid()
    local block = string.rep("0123456789abcdef", 4096)
    local size = 256 * 1024 * 1024
    local max_rss = rss_kb(pid)
    assert(client:raw("POST /sink HTTP/1.1\r\nHost: t\r\nContent-Length: " .. size .. "\r\n\r\n"))
    for i = 1, size / #block do
      assert(client:raw(block))
      if i % 256 == 0 then max_rss = math.max(max_rss, rss_kb(pid)) end
    end
    local res = assert(client:read_response())
    assert.res_status(200, res)
    assert.equal(size, echo_of(res).body_size)
    assert.is_true(ASAN or max_rss < RSS_LIMIT_KB, "worker RSS reached " .. max_rss .. " kB")
  end)
end)
