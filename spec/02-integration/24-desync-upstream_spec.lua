-- spec/02-integration/24-desync-upstream_spec.lua — desync from the upstream side: the abuses of
-- 24-desync_spec.lua coming back in responses (RFC 9112 §4, §5, §6, §7, RFC 9110 §7.6.1, §15),
-- sent raw by spec/fixtures/raw_upstream.py. Each case: 502 with a JSON body while nothing of the
-- response reached the client yet, or the client connection aborted when the head had already
-- gone; and in every refusal the upstream connection is closed, never pooled, so the next request
-- opens a new one. Responses gw accepts are re-framed by gw for the client.
local helpers = require "spec.helpers"
local raw = require "spec.fixtures.raw_upstream"

local function resp(hdrs, body) return "HTTP/1.1 200 OK\r\n" .. hdrs .. "\r\n" .. (body or "") end
local CHUNKED = "Transfer-Encoding: chunked\r\n"

-- expect: 502 (answered by gw, nothing of the response forwarded), "abort" (the head was
-- forwarded, then the client connection is cut: the body never completes), or "forwarded" with
-- status/body the client must get. reuse: the upstream connection may go back to the pool (only
-- for clean responses); otherwise it must be closed and the next request must open a new one.
local cases = {
  -- RFC 9112 §6.3: Content-Length and Transfer-Encoding
  { "CL + TE", resp("Content-Length: 5\r\n" .. CHUNKED, "5\r\nhello\r\n0\r\n\r\n"), 502 },
  { "TE + CL", resp(CHUNKED .. "Content-Length: 5\r\n", "5\r\nhello\r\n0\r\n\r\n"), 502 },
  { "two differing CL", resp("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), 502 },
  { "a CL list that differs", resp("Content-Length: 5, 6\r\n", "hello!"), 502 },
  { "CL +5", resp("Content-Length: +5\r\n", "hello"), 502 },
  { "CL -1", resp("Content-Length: -1\r\n", "hello"), 502 },
  { "CL 0x5", resp("Content-Length: 0x5\r\n", "hello"), 502 },
  { "CL 5 5", resp("Content-Length: 5 5\r\n", "hello"), 502 },
  { "CL empty", resp("Content-Length:\r\n", "hello"), 502 },
  { "CL over int64", resp("Content-Length: 99999999999999999999\r\n", "hello"), 502 },
  { "identical duplicate CL", resp("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), "forwarded",
    status = 200, body = "hello", reuse = true },
  -- RFC 9112 §6.1: transfer codings
  { "TE chunked, gzip", resp("Transfer-Encoding: chunked, gzip\r\n", "hello"), 502 },
  { "TE gzip, chunked (a coding gw would strip)", resp("Transfer-Encoding: gzip, chunked\r\n",
    "5\r\nhello\r\n0\r\n\r\n"), 502 },
  { "TE gzip", resp("Transfer-Encoding: gzip\r\n", "hello"), 502 },
  { "TE xchunked", resp("Transfer-Encoding: xchunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), 502 },
  { "TE identity", resp("Transfer-Encoding: identity\r\n", "hello"), 502 },
  { "TE chunked twice", resp("Transfer-Encoding: chunked, chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), 502 },
  { "TE with a parameter", resp("Transfer-Encoding: chunked;q=1\r\n", "5\r\nhello\r\n0\r\n\r\n"), 502 },
  { "TE quoted", resp("Transfer-Encoding: \"chunked\"\r\n", "5\r\nhello\r\n0\r\n\r\n"), 502 },
  { "TE empty", resp("Transfer-Encoding:\r\n", "hello"), 502 },
  { "TE with a VT", resp("Transfer-Encoding: \11chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), 502 },
  { "TE in HTTP/1.0", "HTTP/1.0 200 OK\r\n" .. CHUNKED .. "\r\n5\r\nhello\r\n0\r\n\r\n", 502 },
  -- RFC 9112 §7.1: chunk sizes and extensions (the head has gone out: the client is cut off)
  { "chunk size 0x5", resp(CHUNKED, "0x5\r\nhello\r\n0\r\n\r\n"), "abort" },
  { "chunk size +5", resp(CHUNKED, "+5\r\nhello\r\n0\r\n\r\n"), "abort" },
  { "chunk size -5", resp(CHUNKED, "-5\r\nhello\r\n0\r\n\r\n"), "abort" },
  { "chunk size not hex", resp(CHUNKED, "zz\r\nhello\r\n0\r\n\r\n"), "abort" },
  { "chunk size with a leading space", resp(CHUNKED, " 5\r\nhello\r\n0\r\n\r\n"), "abort" },
  { "chunk size over 64 bits", resp(CHUNKED, "1ffffffffffffffff0\r\nhello\r\n0\r\n\r\n"), "abort" },
  { "chunk size ended by a bare LF", resp(CHUNKED, "5\nhello\r\n0\r\n\r\n"), "abort" },
  { "chunk data longer than its size", resp(CHUNKED, "3\r\nhello\r\n0\r\n\r\n"), "abort" },
  { "chunk extension with a NUL", resp(CHUNKED, "5;a=\0\r\nhello\r\n0\r\n\r\n"), "abort" },
  { "chunk extension over 1 KiB", resp(CHUNKED, "5;" .. string.rep("e", 1100) .. "\r\nhello\r\n0\r\n\r\n"), "abort" },
  { "trailer folded", resp(CHUNKED, "5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"), "abort" },
  { "chunked body cut by a close", resp(CHUNKED, "5\r\nhel"), "abort", close = true },
  { "CL body cut by a close", resp("Content-Length: 10\r\n", "hello"), "abort", close = true },
  { "chunk extensions and trailers are not forwarded",
    resp(CHUNKED, "2;a=b\r\nhe\r\n3 ; x=\"y\"\r\nllo\r\n0\r\nX-Trailer: 1\r\n\r\n"), "forwarded",
    status = 200, body = "hello", reuse = true, raw_lacks = { ";", "X-Trailer" } },
  -- RFC 9112 §2.2, §5.2, §5.1, RFC 9110 §5.5: the head
  { "status line ended by a bare LF", "HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok", 502 },
  { "header ended by a bare LF", resp("Content-Length: 2\nX-A: 1\r\n", "ok"), 502 },
  { "head ended by a bare LF", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\nok", 502 },
  { "bare CR in a value", resp("X-A: a\rb\r\nContent-Length: 2\r\n", "ok"), 502 },
  { "obs-fold", resp("X-A: 1\r\n folded\r\nContent-Length: 2\r\n", "ok"), 502 },
  { "space before the colon", resp("Content-Length : 2\r\n", "ok"), 502 },
  { "@ in a name", resp("X-A@: 1\r\nContent-Length: 2\r\n", "ok"), 502 },
  { "a non-ASCII name", resp("X-\196: 1\r\nContent-Length: 2\r\n", "ok"), 502 },
  { "NUL in a value", resp("X-A: a\0b\r\nContent-Length: 2\r\n", "ok"), 502 },
  { "DEL in a value", resp("X-A: a\127b\r\nContent-Length: 2\r\n", "ok"), 502 },
  { "a line without a colon", resp("X-A 1\r\nContent-Length: 2\r\n", "ok"), 502 },
  -- RFC 9112 §4: status line and version
  { "two-digit status", "HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok", 502 },
  { "four-digit status", "HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok", 502 },
  { "status 099", "HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\nok", 502 },
  { "status 600", "HTTP/1.1 600 High\r\nContent-Length: 2\r\n\r\nok", 502 },
  { "status not digits", "HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\nok", 502 },
  { "two spaces before the status", "HTTP/1.1  200 OK\r\nContent-Length: 2\r\n\r\nok", 502 },
  { "no space after the status", "HTTP/1.1 200OK\r\nContent-Length: 2\r\n\r\nok", 502 },
  { "control byte in the reason", "HTTP/1.1 200 O\1K\r\nContent-Length: 2\r\n\r\nok", 502 },
  { "lowercase version", "http/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 502 },
  { "HTTP/2", "HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok", 502 },
  { "HTTP/2.0", "HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 502 },
  { "HTTP/0.9", "HTTP/0.9 200 OK\r\nContent-Length: 2\r\n\r\nok", 502 },
  { "not HTTP", "ICY 200 OK\r\nContent-Length: 2\r\n\r\nok", 502 },
  { "garbage", "hello world\r\n\r\n", 502 },
  -- (a pooled connection closed before any byte is retried once on a new one: both close here)
  { "nothing, then a close", "", 502, close = true, twice = true },
  { "a head cut by a close", "HTTP/1.1 200 OK\r\nContent-Len", 502, close = true },
  { "a head over max_header_size", resp("X-Big: " .. string.rep("b", 40000) .. "\r\nContent-Length: 2\r\n", "ok"),
    502 },
  { "status 200 without a reason", "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", "forwarded",
    status = 200, body = "ok", reuse = true },
  -- RFC 9110 §15.2: 1xx
  { "100 Continue then 200", "HTTP/1.1 100 Continue\r\n\r\n" .. resp("Content-Length: 2\r\n", "ok"), "forwarded",
    status = 200, body = "ok", reuse = true },
  { "103 Early Hints, 102, then 200", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n" ..
    resp("Content-Length: 2\r\n", "ok"), "forwarded", status = 200, body = "ok", reuse = true, lacks = { "link" } },
  { "a 1xx with framing headers frames nothing", "HTTP/1.1 100 Continue\r\nContent-Length: 3\r\n\r\n" ..
    resp("Content-Length: 2\r\n", "ok"), "forwarded", status = 200, body = "ok", reuse = true },
  { "a bad head after a 100", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX : 1\r\n\r\n", 502 },
  { "101 not asked for", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 502 },
  -- RFC 9112 §6.3 item 1: no body after 204 / 304, whatever the head says
  { "204 with a Content-Length and a body", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", "forwarded",
    status = 204, body = "" },
  { "204 with a chunked body", "HTTP/1.1 204 No Content\r\n" .. CHUNKED .. "\r\n5\r\nhello\r\n0\r\n\r\n", "forwarded",
    status = 204, body = "" },
  { "304 with a chunked body", "HTTP/1.1 304 Not Modified\r\n" .. CHUNKED .. "\r\n5\r\nhello\r\n0\r\n\r\n", "forwarded",
    status = 304, body = "" },
  { "204 followed by bytes", "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "forwarded",
    status = 204, body = "" },
  { "a body longer than its Content-Length", resp("Content-Length: 2\r\n", "okHTTP/1.1 200 OK\r\n\r\n"), "forwarded",
    status = 200, body = "ok" },
  { "a close-delimited body", resp("", "hello"), "forwarded", status = 200, body = "hello", close = true },
  -- RFC 9110 §7.6.1: hop-by-hop fields
  { "hop-by-hop fields", resp("Connection: X-Up-Hop, keep-alive\r\nX-Up-Hop: 1\r\nKeep-Alive: timeout=5\r\n" ..
      "Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTrailer: X-T\r\nTE: trailers\r\nX-Kept: 2\r\nContent-Length: 2\r\n",
      "ok"), "forwarded", status = 200, body = "ok", reuse = true,
    lacks = { "x-up-hop", "keep-alive", "proxy-connection", "upgrade", "trailer", "te" }, has = { ["x-kept"] = "2" } },
}

describe("desync: upstream side #desync", function()
  local up, gw

  lazy_setup(function()
    up = raw.start("desync-up")
    gw = helpers.start_gw{ config = {
      services = { { name = "s", url = "http://127.0.0.1:" .. up.port, retries = 0,
                     routes = { { paths = { "/" } } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  for _, case in ipairs(cases) do
    local name, reply, expect = case[1], case[2], case[3]
    it(string.format("%s: %s", name, expect == "forwarded" and ("forwarded as " .. case.status) or expect), function()
      local r = { raw = reply, close = case.close }
      up:script(case.twice and { r, r } or { r })
      local s = raw.connect(gw.proxy_port)
      assert(s:send("GET /case HTTP/1.1\r\nHost: t\r\n\r\n"))
      local res, err = raw.read_response(s)
      local client_open = true
      if expect == 502 then
        assert(res, err)
        assert.equal(502, res.status, res.head)
        assert.equal("application/json", res.headers["content-type"])
        assert.truthy(helpers.json_decode(res.body).message, res.body)
        assert.is_nil(res.headers["x-a"])
      elseif expect == "abort" then
        -- the head may or may not have reached the client before the cut; the body never completes
        if res then
          assert.equal(200, res.status, res.head)
          assert.is_false(res.complete, "a complete body reached the client: " .. res.body)
        end
        local closed, cerr = raw.closed(s)
        assert.is_true(closed or cerr == "connection reset by peer", tostring(cerr))
        client_open = false
      else
        assert(res, err)
        assert.equal(case.status, res.status, res.head)
        assert.equal(case.body, res.body)
        assert.is_true(res.complete)
        for _, h in ipairs(case.lacks or {}) do assert.is_nil(res.headers[h], h .. " forwarded:\n" .. res.head) end
        for h, v in pairs(case.has or {}) do assert.equal(v, res.headers[h], res.head) end
        if res.headers.connection == "close" then client_open = false end
      end
      local log
      if not case.reuse then
        -- the upstream connection is closed by gw (or was closed by the fixture), not pooled
        log = up:wait_all_closed()
        assert.is_true(#log >= 1 and #log <= (case.twice and 2 or 1))
      end
      if client_open then
        -- the client connection is still in step, and the next request goes on a new upstream
        -- connection (or, for a clean response, may reuse the pooled one)
        assert(s:send("GET /next HTTP/1.1\r\nHost: t\r\n\r\n"))
        local r2 = assert(raw.read_response(s))
        assert.equal(200, r2.status, r2.head)
        assert.equal("ok", r2.body)
        local reqs = up:requests()
        local last = table.remove(reqs)
        assert.truthy(last.head:match("^GET /next "), last.head)
        assert.is_true(#reqs >= 1)
        for _, q in ipairs(reqs) do
          assert.truthy(q.head:match("^GET /case "), q.head)
          if not case.reuse then assert.not_equal(q.conn.id, last.conn.id) end
        end
      end
      s:close()
    end)
  end

  for _, c in ipairs({
    { "204 with a Content-Length", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n" },
    { "204 chunked", "HTTP/1.1 204 No Content\r\n" .. CHUNKED .. "\r\n" },
    { "304 chunked", "HTTP/1.1 304 Not Modified\r\n" .. CHUNKED .. "\r\n" },
  }) do
    it(c[1] .. " whose body comes later: the connection is not reused for the next request", function()
      up:script({ { raw = c[2], later = "5\r\nhello\r\n0\r\n\r\n", later_delay = 0.3 } })
      local s = raw.connect(gw.proxy_port)
      assert(s:send("GET /case HTTP/1.1\r\nHost: t\r\n\r\n"))
      local r1 = assert(raw.read_response(s))
      assert.equal(c[2]:match("^HTTP/1.1 (%d+)"), tostring(r1.status))
      assert(s:send("GET /next HTTP/1.1\r\nHost: t\r\n\r\n"))
      local r2 = assert(raw.read_response(s))
      s:close()
      assert.equal(200, r2.status, r2.head)
      assert.equal("ok", r2.body)
      local reqs = up:requests()
      assert.equal(2, #reqs)
      assert.not_equal(reqs[1].conn.id, reqs[2].conn.id)
    end)
  end

  it("a HEAD answer with a Content-Length and no body keeps both connections", function()
    up:script({ "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" })
    local s = raw.connect(gw.proxy_port)
    assert(s:send("HEAD /h HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n"))
    local r1 = assert(raw.read_response(s, "HEAD"))
    assert.equal(200, r1.status)
    assert.equal("1000", r1.headers["content-length"])
    local r2 = assert(raw.read_response(s))
    assert.equal("ok", r2.body)
    s:close()
    local reqs = up:requests()
    assert.equal(2, #reqs)
    assert.equal(reqs[1].conn.id, reqs[2].conn.id)
  end)

  it("a chunked response is re-chunked by gw: no extensions, no trailers on the wire", function()
    up:script({ resp(CHUNKED, "2;a=b\r\nhe\r\n3 ; x=\"y\"\r\nllo\r\n0\r\nX-Trailer: 1\r\n\r\n") })
    local s = raw.connect(gw.proxy_port)
    assert(s:send("GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
    s:settimeout(3)
    local data, _, partial = s:receive("*a")
    s:close()
    data = data or partial
    local body = data:match("\r\n\r\n(.*)$")
    assert.falsy(body:find(";", 1, true), body)
    assert.falsy(body:find("X-Trailer", 1, true), body)
    assert.truthy(body:match("0\r\n\r\n$"), body)
  end)

  it("an upstream that answers a 502-worthy head is not used again by the next client either", function()
    up:script({ resp("Content-Length: 5\r\n" .. CHUNKED, "0\r\n\r\n") })
    local s = raw.connect(gw.proxy_port)
    assert(s:send("GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
    assert.equal(502, assert(raw.read_response(s)).status)
    s:close()
    up:wait_all_closed()
    local s2 = raw.connect(gw.proxy_port)
    assert(s2:send("GET /b HTTP/1.1\r\nHost: t\r\n\r\n"))
    assert.equal(200, assert(raw.read_response(s2)).status)
    s2:close()
    local log = up:log()
    assert.equal(2, #log)
    assert.equal(1, #log[1].requests)
    assert.equal(1, #log[2].requests)
  end)
end)
