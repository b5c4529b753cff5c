-- spec/02-integration/24-desync_spec.lua — request smuggling / desync, client side: a table of
-- raw requests after RFC 9112 §2.2, §3, §5, §6, §7, §11 and RFC 9110 §5.5, §7.2, §7.6.1, §10.1.1,
-- each with the status gw answers (or "forwarded"), whether gw closes the connection, and for
-- forwarded requests what the upstream got: the upstream is spec/fixtures/raw_upstream.py, which
-- records the exact bytes. The property kept: what gw forwards is framed by gw (its own
-- Content-Length, or its own chunked encoding), so the upstream reads exactly the body gw read;
-- a request gw refuses never reaches the upstream whole; and after a refusal the connection is
-- closed, so nothing the client sent after it is read as a request.
local helpers = require "spec.helpers"
local raw = require "spec.fixtures.raw_upstream"

local FIXTURES = helpers.repo .. "/spec/fixtures/plugins"
local H = "Host: t\r\n"
local function post(hdrs, body) return "POST / HTTP/1.1\r\n" .. H .. hdrs .. "\r\n" .. (body or "") end
local function get(hdrs) return "GET / HTTP/1.1\r\n" .. H .. (hdrs or "") .. "\r\n" end
local CHUNKED = "Transfer-Encoding: chunked\r\n"
local SMUGGLED = "GET /smuggled HTTP/1.1\r\n" .. H .. "\r\n"
-- a plugin that reports what plugins see: the header names with '_', the Host header and host
local PROBE = [[
  local n = {}
  for k in pairs(gw.request.get_headers()) do
    if k:find("_", 1, true) then n[#n + 1] = k end
  end
  table.sort(n)
  gw.response.set_header("X-Underscored", #n == 0 and "none" or table.concat(n, ","))
  gw.response.set_header("X-Host-Seen", gw.request.get_header("host") .. " " .. gw.request.get_host())
]]

-- status: a number (gw answers it itself and closes), or "forwarded" (the upstream answers 200,
-- the connection stays usable). body: what the upstream must read (forwarded). framing: how gw
-- frames it upstream ("length", "chunked", "none"). has/lacks: text the upstream head must /
-- must not contain. partial: the refusal comes while the body streams, so the upstream may have
-- the head (never a complete request).
local cases = {
  -- RFC 9112 §6.1, §6.3: Content-Length and Transfer-Encoding together
  { "CL then TE", post("Content-Length: 5\r\n" .. CHUNKED, "0\r\n\r\n" .. SMUGGLED), 400 },
  { "TE then CL", post(CHUNKED .. "Content-Length: 5\r\n", "0\r\n\r\n" .. SMUGGLED), 400 },
  { "CL with a TE gw does not know", post("Content-Length: 5\r\nTransfer-Encoding: foo\r\n", "hello"), 400 },
  { "CL + TE in HTTP/1.0", "POST / HTTP/1.0\r\nContent-Length: 5\r\n" .. CHUNKED .. "\r\n0\r\n\r\n", 400 },
  -- RFC 9112 §6.3 item 5, RFC 9110 §8.6: differing or malformed Content-Length
  { "two differing CL", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), 400 },
  { "a CL list that differs", post("Content-Length: 5, 6\r\n", "hello!"), 400 },
  { "CL +5", post("Content-Length: +5\r\n", "hello"), 400 },
  { "CL -5", post("Content-Length: -5\r\n", "hello"), 400 },
  { "CL 0x5", post("Content-Length: 0x5\r\n", "hello"), 400 },
  { "CL 5a", post("Content-Length: 5a\r\n", "hello"), 400 },
  { "CL 5 5", post("Content-Length: 5 5\r\n", "hello"), 400 },
  { "CL 1e3", post("Content-Length: 1e3\r\n", "hello"), 400 },
  { "CL empty", post("Content-Length:\r\n", "hello"), 400 },
  { "CL trailing comma", post("Content-Length: 5,\r\n", "hello"), 400 },
  { "CL over int64", post("Content-Length: 99999999999999999999\r\n", "hello"), 400 },
  { "CL with a VT", post("Content-Length: 5\11\r\n", "hello"), 400 },
  { "identical duplicate CL", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), "forwarded",
    body = "hello", framing = "length" },
  { "a CL list of equal values", post("Content-Length: 5, 5\r\n", "hello"), "forwarded",
    body = "hello", framing = "length", lacks = { "5, 5" } },
  { "CL with leading zeros", post("Content-Length: 005\r\n", "hello"), "forwarded",
    body = "hello", framing = "length", lacks = { "Content-Length: 005" } },
  { "CL 0 on a POST", post("Content-Length: 0\r\n"), "forwarded", body = "", framing = "length" },
  -- RFC 9112 §6.1, §7: Transfer-Encoding where chunked is not final, or obfuscated
  { "TE chunked, gzip", post("Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n"), 400 },
  { "TE chunked then gzip on two lines", post(CHUNKED .. "Transfer-Encoding: gzip\r\n", "0\r\n\r\n"), 400 },
  { "TE gzip alone", post("Transfer-Encoding: gzip\r\n", "hello"), 400 },
  { "TE chunked twice", post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"), 400 },
  { "TE xchunked", post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"), 501 },
  { "TE chunkedx", post("Transfer-Encoding: chunkedx\r\n", "0\r\n\r\n"), 501 },
  { "TE identity", post("Transfer-Encoding: identity\r\n", "hello"), 501 },
  { "TE quoted", post("Transfer-Encoding: \"chunked\"\r\n", "0\r\n\r\n"), 400 },
  { "TE with a parameter", post("Transfer-Encoding: chunked;q=1\r\n", "0\r\n\r\n"), 400 },
  { "TE empty", post("Transfer-Encoding:\r\n", "0\r\n\r\n"), 400 },
  { "TE with a VT", post("Transfer-Encoding: \11chunked\r\n", "0\r\n\r\n"), 400 },
  { "TE with a NUL", post("Transfer-Encoding: chunked\0\r\n", "0\r\n\r\n"), 400 },
  { "TE with a space before the colon", post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"), 400 },
  { "TE folded", post("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"), 400 },
  { "TE in HTTP/1.0", "POST / HTTP/1.0\r\n" .. CHUNKED .. "\r\n0\r\n\r\n", 400 },
  { "TE Chunked (case)", post("Transfer-Encoding: Chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), "forwarded",
    body = "hello", framing = "chunked", te = "chunked" },
  { "TE with empty list elements", post("Transfer-Encoding: , chunked,\r\n", "5\r\nhello\r\n0\r\n\r\n"),
    "forwarded", body = "hello", framing = "chunked", te = "chunked" },
  { "TE gzip, chunked (the coding stays declared)", post("Transfer-Encoding: gzip,chunked\r\n",
    "5\r\nhello\r\n0\r\n\r\n"), "forwarded", body = "hello", framing = "chunked", te = "gzip, chunked" },
  -- RFC 9112 §7.1: chunk sizes and extensions
  { "chunk size 0x5", post(CHUNKED, "0x5\r\nhello\r\n0\r\n\r\n"), 400, partial = true },
  { "chunk size +5", post(CHUNKED, "+5\r\nhello\r\n0\r\n\r\n"), 400, partial = true },
  { "chunk size -5", post(CHUNKED, "-5\r\nhello\r\n0\r\n\r\n"), 400, partial = true },
  { "chunk size empty", post(CHUNKED, "\r\nhello\r\n0\r\n\r\n"), 400, partial = true },
  { "chunk size with a leading space", post(CHUNKED, " 5\r\nhello\r\n0\r\n\r\n"), 400, partial = true },
  { "chunk size with a trailing space", post(CHUNKED, "5 \r\nhello\r\n0\r\n\r\n"), 400, partial = true },
  { "chunk size over 64 bits", post(CHUNKED, "1ffffffffffffffff0\r\nhello\r\n0\r\n\r\n"), 400, partial = true },
  { "chunk size ending in a bare LF", post(CHUNKED, "5\nhello\r\n0\r\n\r\n"), 400, partial = true },
  { "chunk size ending in a bare CR", post(CHUNKED, "5\rhello\r\n0\r\n\r\n"), 400, partial = true },
  { "chunk data longer than its size", post(CHUNKED, "3\r\nhello\r\n0\r\n\r\n"), 400, partial = true },
  { "chunk data ended by a bare LF", post(CHUNKED, "5\r\nhello\n0\r\n\r\n"), 400, partial = true },
  { "chunk extension with a bare LF", post(CHUNKED, "5;a\nhello\r\n0\r\n\r\n"), 400, partial = true },
  { "chunk extension with a NUL", post(CHUNKED, "5;a=\0\r\nhello\r\n0\r\n\r\n"), 400, partial = true },
  { "chunk extension over 1 KiB", post(CHUNKED, "5;" .. string.rep("e", 1100) .. "\r\nhello\r\n0\r\n\r\n"), 400,
    partial = true },
  { "last chunk without the final CRLF, then a request", post(CHUNKED, "0\r\n" .. SMUGGLED), 400, partial = true },
  { "trailer folded", post(CHUNKED, "0\r\nX-T: 1\r\n 2\r\n\r\n"), 400, partial = true },
  { "trailer with a bare LF", post(CHUNKED, "0\r\nX-T: 1\n\r\n"), 400, partial = true },
  { "chunk extensions are dropped", post(CHUNKED, "2;a=b\r\nhe\r\n3 ; x=\"y;z\"\r\nllo\r\n0;last\r\n\r\n"),
    "forwarded", body = "hello", framing = "chunked" },
  { "trailers are dropped", post(CHUNKED, "5\r\nhello\r\n0\r\nX-Trailer: 1\r\nContent-Length: 99\r\n\r\n"),
    "forwarded", body = "hello", framing = "chunked" },
  { "chunk sizes with leading zeros", post(CHUNKED, "0005\r\nhello\r\n000\r\n\r\n"), "forwarded",
    body = "hello", framing = "chunked" },
  -- RFC 9112 §2.2: bare CR, bare LF
  { "request line ended by a bare LF", "GET / HTTP/1.1\n" .. H .. "\r\n", 400 },
  { "header line ended by a bare LF", "GET / HTTP/1.1\r\nHost: t\nX-A: 1\r\n\r\n", 400 },
  { "head ended by a bare LF", "GET / HTTP/1.1\r\n" .. H .. "\n", 400 },
  { "all lines ended by bare LFs", "GET / HTTP/1.1\nHost: t\n\n", 400 },
  { "bare CR in a value", get("X-A: a\rb\r\n"), 400 },
  { "bare CR ending a value", get("X-A: a\r\r\n"), 400 },
  { "bare CR in the target", "GET /a\rb HTTP/1.1\r\n" .. H .. "\r\n", 400 },
  { "bare CR before the request line", "\rGET / HTTP/1.1\r\n" .. H .. "\r\n", 400 },
  { "bare LF before the request line", "\nGET / HTTP/1.1\r\n" .. H .. "\r\n", 400 },
  { "CRLF before the request line", "\r\n\r\nGET / HTTP/1.1\r\n" .. H .. "\r\n", "forwarded", framing = "none" },
  -- RFC 9112 §5.2: obs-fold
  { "obs-fold", get("X-A: 1\r\n  continued\r\n"), 400 },
  { "obs-fold with a tab", get("X-A: 1\r\n\tcontinued\r\n"), 400 },
  { "whitespace before the first header", "GET / HTTP/1.1\r\n " .. H .. "\r\n", 400 },
  -- RFC 9112 §5.1: whitespace between the field name and the colon
  { "space before the colon", get("X-A : 1\r\n"), 400 },
  { "tab before the colon", get("X-A\t: 1\r\n"), 400 },
  { "Host with a space before the colon", "GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400 },
  { "Content-Length with a space before the colon", post("Content-Length : 5\r\n", "hello"), 400 },
  -- RFC 9110 §5.1, §5.5: invalid bytes in field names and values
  { "@ in a name", get("X-A@: 1\r\n"), 400 },
  { "NUL in a name", get("X\0A: 1\r\n"), 400 },
  { "a non-ASCII name", get("X-\196: 1\r\n"), 400 },
  { "empty name", get(": 1\r\n"), 400 },
  { "a line without a colon", get("X-A 1\r\n"), 400 },
  { "NUL in a value", get("X-A: a\0b\r\n"), 400 },
  { "SOH in a value", get("X-A: a\1b\r\n"), 400 },
  { "DEL in a value", get("X-A: a\127b\r\n"), 400 },
  { "ESC in a value", get("X-A: a\27b\r\n"), 400 },
  { "obs-text in a value is kept as sent", get("X-Obs: caf\233 \128\255\r\n"), "forwarded", framing = "none",
    has = { "\r\nX-Obs: caf\233 \128\255\r\n" } },
  { "OWS around a value is not forwarded", get("X-Ows: \t v \t \r\n"), "forwarded", framing = "none",
    has = { "\r\nX-Ows: v\r\n" } },
  -- RFC 9112 §3: bad request lines and versions
  { "two spaces after the method", "GET  / HTTP/1.1\r\n" .. H .. "\r\n", 400 },
  { "two spaces before the version", "GET /  HTTP/1.1\r\n" .. H .. "\r\n", 400 },
  { "a tab as separator", "GET\t/ HTTP/1.1\r\n" .. H .. "\r\n", 400 },
  { "a space after the version", "GET / HTTP/1.1 \r\n" .. H .. "\r\n", 400 },
  { "a space before the method", " GET / HTTP/1.1\r\n" .. H .. "\r\n", 400 },
  { "a space inside the target", "GET /a b HTTP/1.1\r\n" .. H .. "\r\n", 400 },
  { "no version", "GET /\r\n" .. H .. "\r\n", 400 },
  { "only a method", "GET\r\n" .. H .. "\r\n", 400 },
  { "lowercase version", "GET / http/1.1\r\n" .. H .. "\r\n", 400 },
  { "version without minor", "GET / HTTP/1\r\n" .. H .. "\r\n", 400 },
  { "version 1.10", "GET / HTTP/1.10\r\n" .. H .. "\r\n", 400 },
  { "version 01.1", "GET / HTTP/01.1\r\n" .. H .. "\r\n", 400 },
  { "version 2.0", "GET / HTTP/2.0\r\n" .. H .. "\r\n", 505 },
  { "version 0.9", "GET / HTTP/0.9\r\n" .. H .. "\r\n", 505 },
  { "version 1.2", "GET / HTTP/1.2\r\n" .. H .. "\r\n", 505 },
  { "an invalid method", "G@T / HTTP/1.1\r\n" .. H .. "\r\n", 400 },
  { "NUL in the target", "GET /a\0 HTTP/1.1\r\n" .. H .. "\r\n", 400 },
  { "DEL in the target", "GET /a\127 HTTP/1.1\r\n" .. H .. "\r\n", 400 },
  { "a relative target", "GET a/b HTTP/1.1\r\n" .. H .. "\r\n", 400 },
  { "asterisk-form with GET", "GET * HTTP/1.1\r\n" .. H .. "\r\n", 400 },
  { "absolute-form with userinfo", "GET http://u@t/ HTTP/1.1\r\n" .. H .. "\r\n", 400 },
  { "absolute-form with an empty authority", "GET http:///x HTTP/1.1\r\n" .. H .. "\r\n", 400 },
  { "authority-form outside CONNECT", "GET t:80 HTTP/1.1\r\n" .. H .. "\r\n", 400 },
  -- RFC 9112 §3.2, RFC 9110 §7.2: Host
  { "HTTP/1.1 without Host", "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400 },
  { "two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400 },
  { "two equal Host headers", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400 },
  { "a Host list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400 },
  { "Host with a slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400 },
  { "Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400 },
  { "absolute-form without Host in HTTP/1.1", "GET http://t/ HTTP/1.1\r\n\r\n", 400 },
  { "HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", "forwarded", framing = "none", close = true },
  -- RFC 9110 §7.6.1: hop-by-hop fields are not forwarded
  { "hop-by-hop fields", get("Connection: keep-alive, X-Hop, x-other-hop\r\nX-Hop: 1\r\nX-Other-Hop: 2\r\n" ..
      "Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nProxy-Connection: keep-alive\r\n" ..
      "X-Kept: 3\r\n"), "forwarded", framing = "none", has = { "\r\nX-Kept: 3\r\n" },
    lacks = { "X-Hop", "X-Other-Hop", "Keep-Alive", "\r\nTE:", "Trailer", "Upgrade", "Proxy-Connection",
              "\r\nConnection:" } },
  { "Connection naming framing headers does not unframe the body",
    post("Connection: Content-Length, Transfer-Encoding\r\nContent-Length: 5\r\n", "hello"), "forwarded",
    body = "hello", framing = "length" },
  { "Expect is not forwarded", post("Expect: 100-continue\r\nContent-Length: 5\r\n", "hello"), "forwarded",
    body = "hello", framing = "length", lacks = { "Expect" } },
}

-- Checks what the upstream read for a forwarded case.
local function check_upstream(case, req)
  local head = req.head
  assert.is_true(req.complete, "the upstream did not get the whole request:\n" .. req.raw)
  assert.truthy(head:match("^%u+ /[^ ]* HTTP/1%.1\r\n"), head)
  local cl = select(2, head:lower():gsub("\r\ncontent%-length:", ""))
  local te = select(2, head:lower():gsub("\r\ntransfer%-encoding:", ""))
  local framing = case.framing
  if framing == "length" then
    assert.equal(1, cl, head)
    assert.equal(0, te, head)
    assert.truthy(head:find("\r\nContent-Length: " .. #case.body .. "\r\n", 1, true), head)
  elseif framing == "chunked" then
    assert.equal(0, cl, head)
    assert.equal(1, te, head)
    assert.truthy(head:find("\r\nTransfer-Encoding: " .. (case.te or "chunked") .. "\r\n", 1, true), head)
    -- gw's own chunks: bare hex sizes, no extensions, no trailers
    local rest = req.raw:sub(#head + 1)
    local body, pos = {}, 1
    while true do
      local size, e = rest:match("^(%x+)\r\n()", pos)
      assert(size, "not gw's chunk framing: " .. rest)
      size = tonumber(size, 16)
      if size == 0 then
        assert.equal("\r\n", rest:sub(e))
        break
      end
      body[#body + 1] = rest:sub(e, e + size - 1)
      assert.equal("\r\n", rest:sub(e + size, e + size + 1))
      pos = e + size + 2
    end
    assert.equal(case.body, table.concat(body))
  else
    assert.equal(0, cl, head)
    assert.equal(0, te, head)
  end
  if case.body then assert.equal(case.body, req.body) end
  for _, s in ipairs(case.has or {}) do assert.truthy(head:find(s, 1, true), s .. " not in\n" .. head) end
  for _, s in ipairs(case.lacks or {}) do assert.falsy(head:find(s, 1, true), s .. " in\n" .. head) end
end

describe("desync: client side #desync", function()
  local up, gw

  lazy_setup(function()
    up = raw.start("desync")
    local url = "http://127.0.0.1:" .. up.port
    gw = helpers.start_gw{ config = {
      gw = { plugins_path = { FIXTURES } },
      services = {
        { name = "s", url = url, routes = { { paths = { "/" } } } },
        { name = "via-a", url = url .. "/via-a", routes = { { hosts = { "abs.test" }, paths = { "/" },
                                                              preserve_host = true } } },
        { name = "via-b", url = url .. "/via-b", routes = { { hosts = { "host.test" }, paths = { "/" },
                                                              preserve_host = true } } },
        { name = "plug", url = url, routes = { { paths = { "/plug" }, plugins = { { name = "code", config = { access = PROBE } } } } } },
      },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  for _, case in ipairs(cases) do
    local name, bytes, status = case[1], case[2], case[3]
    it(string.format("%s: %s", name, status == "forwarded" and "forwarded, re-framed by gw" or status), function()
      up:script()
      local s = raw.connect(gw.proxy_port)
      assert(s:send(bytes))
      local res = assert(raw.read_response(s))
      if status == "forwarded" then
        assert.equal(200, res.status, res.head)
        local reqs = up:requests()
        assert.equal(1, #reqs)
        check_upstream(case, reqs[1])
        if case.close then
          assert.is_true((raw.closed(s)))
        else
          -- the connection is still in step: the next request is read where gw said the last ended
          assert(s:send("GET /next HTTP/1.1\r\n" .. H .. "\r\n"))
          res = assert(raw.read_response(s))
          assert.equal(200, res.status, res.head)
          reqs = up:requests()
          assert.equal(2, #reqs)
          assert.truthy(reqs[2].head:match("^GET /next HTTP/1%.1\r\n"), reqs[2].head)
        end
      else
        assert.equal(status, res.status, res.head)
        assert.equal("close", res.headers.connection)
        assert.equal("application/json", res.headers["content-type"])
        assert.truthy(helpers.json_decode(res.body).message, res.body)
        assert.is_true((raw.closed(s)), "gw kept the connection open after " .. status)
        -- never a whole request upstream, and any upstream connection opened for it is closed
        local log = up:wait_all_closed()
        for _, c in ipairs(log) do
          for _, r in ipairs(c.requests) do
            assert.is_true(case.partial == true, "the upstream got a head:\n" .. r.head)
            assert.is_false(r.complete, "the upstream got a whole request:\n" .. r.raw)
            assert.falsy(r.raw:find("smuggled", 1, true))
          end
        end
      end
      s:close()
    end)
  end

  it("absolute-form: the authority wins over a different Host, for routing and upstream", function()
    up:script()
    local s = raw.connect(gw.proxy_port)
    assert(s:send("GET http://abs.test/x?q=1 HTTP/1.1\r\nHost: host.test\r\n\r\n"))
    local res = assert(raw.read_response(s))
    assert.equal(200, res.status, res.head)
    local req = up:requests()[1]
    assert.truthy(req.head:match("^GET /via%-a/x%?q=1 HTTP/1%.1\r\n"), req.head)
    assert.truthy(req.head:find("\r\nHost: abs.test\r\n", 1, true), req.head)
    assert.falsy(req.head:find("host.test", 1, true), req.head)
    -- the same Host in origin-form goes the other way
    up:script()
    assert(s:send("GET /x HTTP/1.1\r\nHost: host.test\r\n\r\n"))
    res = assert(raw.read_response(s))
    assert.equal(200, res.status, res.head)
    req = up:requests()[1]
    assert.truthy(req.head:match("^GET /via%-b/x HTTP/1%.1\r\n"), req.head)
    assert.truthy(req.head:find("\r\nHost: host.test\r\n", 1, true), req.head)
    s:close()
  end)

  it("absolute-form: plugins see the authority as the Host header", function()
    up:script()
    local s = raw.connect(gw.proxy_port)
    assert(s:send("GET http://plug.test/plug HTTP/1.1\r\nHost: host.test\r\n\r\n"))
    local res = assert(raw.read_response(s))
    s:close()
    assert.equal(200, res.status, res.head)
    assert.equal("plug.test plug.test", res.headers["x-host-seen"])
    local req = up:requests()[1]
    assert.truthy(req.head:find("\r\nX-Forwarded-Host: plug.test\r\n", 1, true), req.head)
    assert.falsy(req.head:find("host.test", 1, true), req.head)
  end)

  it("pipelined: a valid request then an invalid one: the first answered, then 400 and close", function()
    for _, bad in ipairs({
      "GET / HTTP/1.1\r\nHost : t\r\n\r\n",
      "POST / HTTP/1.1\r\n" .. H .. "Content-Length: 3\r\n" .. CHUNKED .. "\r\n0\r\n\r\n",
      "GET / HTTP/1.1\r\n" .. H .. "X-A: 1\r\n folded\r\n\r\n",
      "GET / HTTP/1.1\n" .. H .. "\r\n",
    }) do
      up:script()
      local s = raw.connect(gw.proxy_port)
      assert(s:send("POST /one HTTP/1.1\r\n" .. H .. "Content-Length: 5\r\n\r\nhello" .. bad .. SMUGGLED))
      local r1 = assert(raw.read_response(s))
      assert.equal(200, r1.status, r1.head)
      local r2 = assert(raw.read_response(s))
      assert.equal(400, r2.status, r2.head)
      assert.equal("close", r2.headers.connection)
      assert.is_true((raw.closed(s)))
      s:close()
      local reqs = up:requests()
      assert.equal(1, #reqs)
      assert.truthy(reqs[1].head:match("^POST /one HTTP/1%.1\r\n"), reqs[1].head)
      assert.equal("hello", reqs[1].body)
      assert.equal("", reqs[1].conn.trailing)
    end
  end)

  it("pipelined: a chunked request whose last chunk is followed by the next request", function()
    up:script()
    local s = raw.connect(gw.proxy_port)
    assert(s:send("POST /one HTTP/1.1\r\n" .. H .. CHUNKED .. "\r\n5\r\nhello\r\n0\r\n\r\n" ..
                  "POST /two HTTP/1.1\r\n" .. H .. "Content-Length: 3\r\n\r\nabc"))
    assert.equal(200, assert(raw.read_response(s)).status)
    assert.equal(200, assert(raw.read_response(s)).status)
    s:close()
    local reqs = up:requests()
    assert.equal(2, #reqs)
    assert.equal("hello", reqs[1].body)
    assert.truthy(reqs[2].head:match("^POST /two "), reqs[2].head)
    assert.equal("abc", reqs[2].body)
  end)

  it("a body on a GET is forwarded with gw's framing, never read as the next request", function()
    up:script()
    local s = raw.connect(gw.proxy_port)
    local inner = "GET /inner HTTP/1.1\r\n" .. H .. "\r\n"
    assert(s:send("GET /outer HTTP/1.1\r\n" .. H .. "Content-Length: " .. #inner .. "\r\n\r\n" .. inner))
    assert.equal(200, assert(raw.read_response(s)).status)
    s:close()
    local reqs = up:requests()
    assert.equal(1, #reqs)
    assert.equal(inner, reqs[1].body)
    assert.truthy(reqs[1].head:find("\r\nContent-Length: " .. #inner .. "\r\n", 1, true))
  end)

  it("Expect: 100-continue with an early final response: forwarded, then the connection closed", function()
    up:script({ { raw = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\n\r\nno way", read_body = false } })
    local s = raw.connect(gw.proxy_port)
    assert(s:send("POST /upload HTTP/1.1\r\n" .. H .. "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"))
    assert.equal("HTTP/1.1 100 Continue", s:receive("*l"))
    assert.equal("", s:receive("*l"))
    local res = assert(raw.read_response(s))
    assert.equal(401, res.status, res.head)
    assert.equal("no way", res.body)
    assert.equal("close", res.headers.connection)
    -- what the client sends now (its body, then anything) is not read as a request
    s:send("hello" .. SMUGGLED)
    assert.is_true((raw.closed(s)))
    s:close()
    local log = up:wait_all_closed()
    assert.equal(1, #log)
    assert.equal(1, #log[1].requests)
    assert.falsy(log[1].trailing:find("smuggled", 1, true))
  end)

  it("Expect: 100-continue, early final response while the body is half sent", function()
    up:script({ { raw = "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n", read_body = false } })
    local s = raw.connect(gw.proxy_port)
    assert(s:send("POST /upload HTTP/1.1\r\n" .. H .. "Content-Length: 10\r\nExpect: 100-continue\r\n\r\nhello"))
    local res = assert(raw.read_response(s))
    assert.equal(413, res.status, res.head)
    assert.equal("close", res.headers.connection)
    s:send("world" .. SMUGGLED)
    assert.is_true((raw.closed(s)))
    s:close()
    local reqs = up:requests()
    assert.equal(1, #reqs)
  end)
end)

describe("desync: underscores in header names #desync", function()
  local up, gw

  local function start(flag)
    up = raw.start("underscores")
    gw = helpers.start_gw{ config = {
      gw = { plugins_path = { FIXTURES }, underscores_in_headers = flag, log_level = "info" },
      services = {
        { name = "plug", url = "http://127.0.0.1:" .. up.port, routes = { { paths = { "/" }, plugins = {
          { name = "code", config = { access = PROBE } } } } } },
      },
    } }
  end

  local function send(bytes)
    up:script()
    local s = raw.connect(gw.proxy_port)
    assert(s:send(bytes))
    local res = assert(raw.read_response(s))
    s:close()
    return res, up:requests()
  end

  describe("default (false)", function()
    lazy_setup(function() start(nil) end)
    lazy_teardown(helpers.stop_all)

    it("drops a header named with '_' before plugins and upstream, and logs it", function()
      local res, reqs = send("GET / HTTP/1.1\r\n" .. H .. "X_Api_Key: secret\r\nX-Api-Key: real\r\n\r\n")
      assert.equal(200, res.status, res.head)
      assert.equal("none", res.headers["x-underscored"])
      assert.falsy(reqs[1].head:find("X_Api_Key", 1, true), reqs[1].head)
      assert.truthy(reqs[1].head:find("\r\nX-Api-Key: real\r\n", 1, true), reqs[1].head)
      helpers.wait_until(function()
        return (helpers.gw_log() or ""):find("header names with '_' dropped", 1, true) ~= nil
      end, 5)
    end)

    it("a dropped Transfer_Encoding frames nothing", function()
      local res, reqs = send("POST / HTTP/1.1\r\n" .. H .. "Transfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello")
      assert.equal(200, res.status, res.head)
      assert.equal("hello", reqs[1].body)
      assert.falsy(reqs[1].head:lower():find("transfer", 1, true), reqs[1].head)
    end)
  end)

  describe("gw.underscores_in_headers: true", function()
    lazy_setup(function() start(true) end)
    lazy_teardown(helpers.stop_all)

    it("passes them through to plugins and upstream", function()
      local res, reqs = send("GET / HTTP/1.1\r\n" .. H .. "X_Api_Key: secret\r\n\r\n")
      assert.equal(200, res.status, res.head)
      assert.equal("x_api_key", res.headers["x-underscored"])
      assert.truthy(reqs[1].head:find("\r\nX_Api_Key: secret\r\n", 1, true), reqs[1].head)
    end)
  end)

  it("the config key is a boolean", function()
    local rc, out = helpers.gw_check('_format_version: "3.0"\ngw:\n  underscores_in_headers: sometimes\n')
    assert.not_equal(0, rc, out)
    assert.truthy(out:find("gw.underscores_in_headers", 1, true), out)
    rc, out = helpers.gw_check('_format_version: "3.0"\ngw:\n  underscores_in_headers: true\n')
    assert.equal(0, rc, out)
  end)
end)
