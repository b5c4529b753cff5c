-- spec/02-integration/02-protocol_spec.lua — HTTP/1.x on the client side of gw, byte for byte:
-- limits (413/414/431; malformed requests are in 24-desync_spec.lua), pipelining, HTTP/1.0,
-- bodiless responses, Expect: 100-continue and the keep-alive timeout. Requests are written raw so that nothing in the
-- test client can tidy them up.
local helpers = require "spec.helpers"
-- On the ASan build (make test-asan) freed memory waits in ASan's quarantine: RSS bounds say
-- nothing there, so they are checked on the normal build only.
local ASAN = os.getenv("ASAN_OPTIONS") ~= nil
local socket = require "socket"

-- Sends `bytes` on a fresh connection and reads until gw closes it (or `timeout` s pass).
-- Returns everything read and whether the connection was closed by gw.
local function exchange(port, bytes, timeout)
  local s = assert(socket.tcp())
  s:settimeout(timeout or 3)
  assert(s:connect("127.0.0.1", port))
  assert(s:send(bytes))
  local data, err, partial = s:receive("*a")
  s:close()
  if data then return data, true end
  return partial or "", err == "closed"
end

local function status_of(raw)
  return tonumber(raw:match("^HTTP/1%.%d (%d%d%d)"))
end

-- True when gw closes the client's connection within `timeout` seconds (no bytes expected).
local function closed_by_peer(client, timeout)
  if not client.sock then return true end
  client.sock:settimeout(timeout or 2)
  local data, err, partial = client.sock:receive(1)
  if data or (partial and #partial > 0) then return false, "unexpected bytes: " .. tostring(data or partial) end
  return err == "closed", err
end

local function echo_of(res)
  return assert(helpers.json_decode(res.body), "not JSON: " .. tostring(res and res.body))
end

describe("protocol: malformed requests", function()
  local up, gw

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "proto" }
    gw = helpers.start_gw{ config = {
      services = { { name = "s", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/" } } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  local function expect_status(status, bytes)
    local raw, closed = exchange(gw.proxy_port, bytes)
    assert.equal(status, status_of(raw), "response:\n" .. raw)
    assert.is_true(closed, "gw kept the connection open after a " .. status)
    assert.truthy(raw:find("\r\nConnection: close\r\n", 1, true), raw)
    -- nothing after the one error response: a smuggled second request is never answered
    assert.equal(1, select(2, raw:gsub("HTTP/1%.1 %d%d%d", "")), raw)
    return raw
  end

  local H = "Host: t\r\n"

  -- framing, header syntax and Host strictness (400/501/505) are in 24-desync_spec.lua, with
  -- what the upstream receives

  it("414 for a request line over 8 KiB", function()
    expect_status(414, "GET /" .. string.rep("a", 8300) .. " HTTP/1.1\r\n" .. H .. "\r\n")
  end)

  it("accepts a request line just under 8 KiB", function()
    local path = "/" .. string.rep("a", 8000)
    local raw = exchange(gw.proxy_port, "GET " .. path .. " HTTP/1.1\r\n" .. H .. "Connection: close\r\n\r\n")
    assert.equal(200, status_of(raw), raw:sub(1, 300))
  end)

  it("431 for more than 100 header fields", function()
    local hs = {}
    for i = 1, 101 do hs[i] = "X-H" .. i .. ": v\r\n" end
    expect_status(431, "GET / HTTP/1.1\r\n" .. H .. table.concat(hs) .. "\r\n")
  end)

  it("accepts 99 header fields (100 with Host)", function()
    local hs = {}
    for i = 1, 98 do hs[i] = "X-H" .. i .. ": v\r\n" end
    local raw = exchange(gw.proxy_port, "GET / HTTP/1.1\r\n" .. H .. table.concat(hs) .. "Connection: close\r\n\r\n")
    assert.equal(200, status_of(raw), raw:sub(1, 300))
  end)

  it("431 for a head over 32 KiB", function()
    local hs = {}
    for i = 1, 5 do hs[i] = "X-Big" .. i .. ": " .. string.rep("b", 7000) .. "\r\n" end
    expect_status(431, "GET / HTTP/1.1\r\n" .. H .. table.concat(hs) .. "\r\n")
  end)

  it("431 for an oversized head that never ends (no blank line)", function()
    local s = assert(socket.tcp())
    s:settimeout(3)
    assert(s:connect("127.0.0.1", gw.proxy_port))
    s:send("GET / HTTP/1.1\r\n" .. H)
    for _ = 1, 10 do s:send("X-Fill: " .. string.rep("f", 4000) .. "\r\n") end
    local data, err, partial = s:receive("*a")
    s:close()
    local raw = data or partial
    assert.equal(431, status_of(raw), tostring(err) .. ": " .. raw)
  end)

  it("413 when Content-Length is over max_body_size (default 100m), without reading the body", function()
    local raw = exchange(gw.proxy_port, "POST / HTTP/1.1\r\n" .. H .. "Content-Length: 104857601\r\n\r\nxx")
    assert.equal(413, status_of(raw), raw)
  end)
end)

describe("protocol: configurable limits", function()
  local up, gw

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "limits" }
    gw = helpers.start_gw{ config = {
      gw = { limits = { max_request_line = 1024, max_header_size = "4k", max_headers = 10, max_body_size = "1k" } },
      services = { { name = "s", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/" } } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  local function status(bytes)
    local raw = exchange(gw.proxy_port, bytes)
    return status_of(raw), raw
  end

  it("max_request_line", function()
    assert.equal(414, (status("GET /" .. string.rep("a", 1100) .. " HTTP/1.1\r\nHost: t\r\n\r\n")))
    assert.equal(200, (status("GET /" .. string.rep("a", 900) .. " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")))
  end)

  it("max_headers", function()
    local hs = {}
    for i = 1, 10 do hs[i] = "X-H" .. i .. ": v\r\n" end
    assert.equal(431, (status("GET / HTTP/1.1\r\nHost: t\r\n" .. table.concat(hs) .. "\r\n")))
    assert.equal(200, (status("GET / HTTP/1.1\r\nHost: t\r\n" .. table.concat(hs, "", 1, 8) ..
      "Connection: close\r\n\r\n")))
  end)

  it("max_header_size", function()
    assert.equal(431, (status("GET / HTTP/1.1\r\nHost: t\r\nX-Big: " .. string.rep("b", 4200) .. "\r\n\r\n")))
    assert.equal(200, (status("GET / HTTP/1.1\r\nHost: t\r\nX-Big: " .. string.rep("b", 3000) ..
      "\r\nConnection: close\r\n\r\n")))
  end)

  it("413 for a Content-Length over max_body_size", function()
    local code, raw = status("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n" .. string.rep("x", 1025))
    assert.equal(413, code, raw)
    assert.equal(200, (status("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n" ..
      string.rep("x", 1024))))
  end)

  it("413 reaches a client that keeps sending its oversized body (no reset before it can read)", function()
    for _ = 1, 3 do
      local client = helpers.proxy_client()
      local size = 4 * 1024 * 1024
      assert(client:raw("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: " .. size .. "\r\n\r\n"))
      local block = string.rep("x", 65536)
      client.sock:settimeout(2)
      for _ = 1, size / #block do
        if not client.sock:send(block) then break end
      end
      local res, err = client:read_response()
      client:close()
      assert(res, "no response: " .. tostring(err))
      assert.res_status(413, res)
    end
  end)

  it("an error answer to a client still sending ends in an orderly close, not a reset", function()
    for _, head in ipairs({
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4194304\r\n\r\n",            -- 413
      "POST /" .. string.rep("u", 1100) .. " HTTP/1.1\r\nHost: t\r\n\r\n",           -- 414
    }) do
      local s = assert(socket.tcp())
      s:settimeout(3)
      assert(s:connect("127.0.0.1", gw.proxy_port))
      assert(s:send(head))
      local block = string.rep("x", 65536)
      for _ = 1, 8 do s:send(block) end
      socket.sleep(0.1)
      for _ = 1, 4 do s:send(block) end
      -- the body still coming is read and dropped, then gw closes with a FIN: the client reads
      -- the whole answer and a clean end, never "connection reset by peer"
      local data, err, partial = s:receive("*a")
      s:close()
      local raw = data or partial or ""
      assert.is_nil(err, tostring(err) .. " after: " .. raw:sub(1, 200))
      assert.truthy(raw:match("^HTTP/1%.1 41[34] "), raw:sub(1, 200))
    end
  end)

  it("413 for a chunked body growing over max_body_size", function()
    local chunk = string.rep("y", 600)
    local c600 = string.format("%x\r\n%s\r\n", #chunk, chunk)
    local code, raw = status("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" .. c600 .. c600 .. "0\r\n\r\n")
    assert.equal(413, code, raw)
    assert.truthy(raw:find("Connection: close", 1, true), raw)
    code = status("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" .. c600 .. "0\r\n\r\n")
    assert.equal(200, code)
  end)

  it("413 for a chunked body over the limit when sent slowly (after the upstream request started)", function()
    local client = helpers.proxy_client()
    assert(client:raw("POST /slow HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"))
    socket.sleep(0.2)
    local chunk = string.rep("z", 700)
    assert(client:raw(string.format("%x\r\n%s\r\n", #chunk, chunk)))
    socket.sleep(0.2)
    client:raw(string.format("%x\r\n%s\r\n0\r\n\r\n", #chunk, chunk))
    local res, err = client:read_response()
    client:close()
    assert(res, err)
    assert.res_status(413, res)
  end)
end)

describe("protocol: connection handling", function()
  local up, gw, client

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "conn" }
    gw = helpers.start_gw{ config = {
      gw = { timeouts = { keepalive = 500, client_header = 600 } },
      services = { { name = "s", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/" } } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("answers pipelined requests in order", function()
    assert(client:raw("GET /p1 HTTP/1.1\r\nHost: t\r\n\r\n" ..
                      "POST /p2 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc" ..
                      "GET /p3 HTTP/1.1\r\nHost: t\r\n\r\n"))
    local paths = {}
    for i = 1, 3 do
      local res = assert(client:read_response())
      assert.res_status(200, res)
      paths[i] = echo_of(res).path
      if i == 2 then assert.equal("abc", echo_of(res).body) end
    end
    assert.same({ "/p1", "/p2", "/p3" }, paths)
  end)

  it("answers pipelined requests in order when the first is slow", function()
    assert(client:raw("GET /delay/200 HTTP/1.1\r\nHost: t\r\n\r\n" ..
                      "GET /chunked/3 HTTP/1.1\r\nHost: t\r\n\r\n" ..
                      "HEAD /p3 HTTP/1.1\r\nHost: t\r\n\r\n" ..
                      "GET /p4 HTTP/1.1\r\nHost: t\r\n\r\n"))
    local r1 = assert(client:read_response())
    assert.equal("/delay/200", echo_of(r1).path)
    local r2 = assert(client:read_response())
    assert.equal("/chunked/3", echo_of(r2).path)
    local r3 = assert(client:read_response{ method = "HEAD" })
    assert.res_status(200, r3)
    local r4 = assert(client:read_response())
    assert.equal("/p4", echo_of(r4).path)
  end)

  it("HTTP/1.0: closes after the response unless keep-alive is asked for", function()
    local raw, closed = exchange(gw.proxy_port, "GET /ten HTTP/1.0\r\nHost: t\r\n\r\n")
    assert.equal(200, status_of(raw))
    assert.is_true(closed)
    assert.truthy(raw:find("\r\nConnection: close\r\n", 1, true), raw)
  end)

  it("HTTP/1.0: keeps the connection with Connection: keep-alive", function()
    assert(client:raw("GET /ka1 HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n"))
    local res = assert(client:read_response())
    assert.res_status(200, res)
    assert.equal("keep-alive", res.headers["connection"]:lower())
    assert.truthy(res.headers["content-length"])
    assert(client:raw("GET /ka2 HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n"))
    res = assert(client:read_response())
    assert.equal("/ka2", echo_of(res).path)
    -- the upstream sees HTTP/1.1 regardless
    assert.equal("1.1", echo_of(res).http_version)
  end)

  it("HTTP/1.0: a chunked upstream response is not sent chunked", function()
    for _, conn in ipairs({ "", "Connection: keep-alive\r\n" }) do
      local raw, closed = exchange(gw.proxy_port, "GET /chunked/4 HTTP/1.0\r\nHost: t\r\n" .. conn .. "\r\n")
      assert.equal(200, status_of(raw))
      local head, body = raw:match("^(.-\r\n)\r\n(.*)$")
      assert.is_nil(head:lower():find("transfer-encoding", 1, true), head)
      local cl = head:match("\r\n[Cc]ontent%-[Ll]ength: (%d+)")
      if cl then
        assert.equal(tonumber(cl), #body)
      else
        assert.is_true(closed, "close-delimited body but the connection stayed open")
      end
      local e = assert(helpers.json_decode(body), body)
      assert.equal("/chunked/4", e.path)
    end
  end)

  it("HEAD: no body, Content-Length of the GET kept, connection usable", function()
    local res = assert(client:send{ method = "HEAD", path = "/bytes/1000" })
    assert.res_status(200, res)
    assert.equal("1000", res.headers["content-length"])
    -- pipelined HEAD + GET: any stray body byte after the HEAD response would break the next one
    assert(client:raw("HEAD /x HTTP/1.1\r\nHost: t\r\n\r\nHEAD /chunked/3 HTTP/1.1\r\nHost: t\r\n\r\n" ..
                      "GET /y HTTP/1.1\r\nHost: t\r\n\r\n"))
    assert.res_status(200, assert(client:read_response{ method = "HEAD" }))
    assert.res_status(200, assert(client:read_response{ method = "HEAD" }))
    local r = assert(client:read_response())
    assert.equal("/y", echo_of(r).path)
  end)

  it("HEAD of a chunked or close-delimited resource invents no Content-Length", function()
    for _, path in ipairs({ "/chunked/3", "/no-length" }) do
      local res = assert(client:send{ method = "HEAD", path = path })
      assert.res_status(200, res)
      assert.is_nil(res.headers["content-length"], path .. ": Content-Length " .. tostring(res.headers["content-length"]))
    end
    assert.res_status(200, assert(client:get("/after")))
  end)

  it("absolute-form request target: routed by its authority, sent upstream in origin-form", function()
    assert(client:raw("GET http://abs.test:8080/abs/path?q=1 HTTP/1.1\r\nHost: ignored.test\r\n\r\n"))
    local res = assert(client:read_response())
    assert.res_status(200, res)
    local e = echo_of(res)
    assert.equal("/abs/path", e.path)
    assert.equal("q=1", e.query)
    assert.equal("/abs/path?q=1", e.uri)
    assert.equal("abs.test", e.headers["x-forwarded-host"])
  end)

  it("204 and 304: no body, connection usable", function()
    assert(client:raw("GET /status/204 HTTP/1.1\r\nHost: t\r\n\r\nGET /status/304 HTTP/1.1\r\nHost: t\r\n\r\n" ..
                      "GET /z HTTP/1.1\r\nHost: t\r\n\r\n"))
    local r1 = assert(client:read_response())
    assert.res_status(204, r1)
    assert.is_nil(r1.headers["transfer-encoding"])
    local r2 = assert(client:read_response())
    assert.res_status(304, r2)
    assert.is_nil(r2.headers["transfer-encoding"])
    local r3 = assert(client:read_response())
    assert.equal("/z", echo_of(r3).path)
  end)

  it("Expect: 100-continue gets 100 Continue, then the final response", function()
    assert(client:raw("POST /cont HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"))
    client.sock:settimeout(2)
    local line = client.sock:receive("*l")
    assert.equal("HTTP/1.1 100 Continue", line)
    assert.equal("", client.sock:receive("*l"))
    assert(client:raw("hello"))
    local res = assert(client:read_response())
    assert.res_status(200, res)
    local e = echo_of(res)
    assert.equal("hello", e.body)
    assert.is_nil(e.headers.expect)
    -- exactly one 100 (the upstream's own 100 Continue is not passed on)
    res = assert(client:get("/after"))
    assert.res_status(200, res)
    assert.same({}, res.informational)
  end)

  it("Expect: 100-continue with the body already sent gets no 100", function()
    assert(client:raw("POST /cont HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"))
    local res = assert(client:read_response())
    assert.res_status(200, res)
    assert.equal("hello", echo_of(res).body)
  end)

  it("Expect: 100-continue on a request refused up front gets the final status, no 100", function()
    assert(client:raw("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999999\r\nExpect: 100-continue\r\n\r\n"))
    local res = assert(client:read_response())
    assert.res_status(413, res)
    assert.same({}, res.informational)
  end)

  it("closes a keep-alive connection idle longer than timeouts.keepalive", function()
    local res = assert(client:get("/idle"))
    assert.res_status(200, res)
    local t0 = socket.gettime()
    local closed, err = closed_by_peer(client, 3)
    local dt = socket.gettime() - t0
    assert.is_true(closed, tostring(err))
    assert.is_true(dt >= 0.3 and dt < 2, "closed after " .. dt)
  end)

  it("does not close a connection that is busy longer than timeouts.keepalive", function()
    local res = assert(client:get("/delay/800"))
    assert.res_status(200, res)
    res = assert(client:get("/again"))
    assert.res_status(200, res)
  end)

  it("skips empty lines between pipelined requests", function()
    assert(client:raw("GET /e1 HTTP/1.1\r\nHost: t\r\n\r\n\r\n\r\nGET /e2 HTTP/1.1\r\nHost: t\r\n\r\n"))
    assert.equal("/e1", echo_of(assert(client:read_response())).path)
    assert.equal("/e2", echo_of(assert(client:read_response())).path)
  end)

  it("Connection: close from the client closes after the response", function()
    local res = assert(client:get("/bye", { headers = { Connection = "close" } }))
    assert.res_status(200, res)
    assert.equal("close", res.headers["connection"])
  end)

  it("parses a request head that arrives one byte at a time", function()
    local req = "POST /bytewise?q=1 HTTP/1.1\r\nHost: t\r\nX-A: 1\r\nContent-Length: 4\r\n\r\nbody"
    for i = 1, #req do
      assert(client:raw(req:sub(i, i)))
      if i % 16 == 0 then socket.sleep(0.001) end
    end
    local res = assert(client:read_response())
    assert.res_status(200, res)
    local e = echo_of(res)
    assert.equal("/bytewise", e.path)
    assert.equal("q=1", e.query)
    assert.equal("body", e.body)
    assert.equal("1", e.headers["x-a"])
  end)

  it("408 and close when a request head is not finished within timeouts.client_header", function()
    assert(client:raw("GET /slow HTTP/1.1\r\nHost: t\r\n"))
    local t0 = socket.gettime()
    local res, err = client:read_response()
    local dt = socket.gettime() - t0
    assert(res, err)
    assert.res_status(408, res)
    assert.is_true(dt >= 0.4 and dt < 3, "after " .. dt)
    assert.is_true((closed_by_peer(client, 2)))
  end)

  it("closes a fresh connection that sends nothing within timeouts.client_header", function()
    local t0 = socket.gettime()
    local closed = closed_by_peer(client, 3)
    local dt = socket.gettime() - t0
    assert.is_true(closed)
    assert.is_true(dt >= 0.4 and dt < 2, "after " .. dt)
  end)
end)

-- A plain connection waiting for a request is shrunk to a small idle record after about a second
-- (and from accept on); its buffers come back when a byte arrives (docs/architecture.md).
describe("protocol: connections shrunk while idle", function()
  local up, gw

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "shrink" }
    gw = helpers.start_gw{ config = {
      gw = { timeouts = { keepalive = 4000, client_header = 4000 } },
      services = { { name = "s", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/" } } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  it("serves the next requests (pipelined) of a connection that waited long enough to shrink", function()
    local client = helpers.proxy_client()
    assert.res_status(200, assert(client:get("/first")))
    socket.sleep(2.3)   -- shrunk by the once-a-second sweep after a second of silence
    assert(client:raw("GET /second HTTP/1.1\r\nHost: t\r\n\r\nGET /third HTTP/1.1\r\nHost: t\r\n\r\n"))
    local r2 = assert(client:read_response())
    assert.res_status(200, r2)
    local e = echo_of(r2)
    assert.equal("/second", e.path)
    -- the peer address is read back from the socket
    assert.equal("127.0.0.1", e.headers["x-real-ip"])
    assert.equal("127.0.0.1", e.headers["x-forwarded-for"])
    assert.equal("/third", echo_of(assert(client:read_response())).path)
    client:close()
  end)

  it("serves a first request sent long after accept", function()
    local client = helpers.proxy_client()
    socket.sleep(1.5)
    local res = assert(client:get("/late"))
    assert.res_status(200, res)
    assert.equal("/late", echo_of(res).path)
    client:close()
  end)

  it("still closes a shrunk connection at the keep-alive timeout, not later", function()
    local client = helpers.proxy_client()
    assert.res_status(200, assert(client:get("/idle")))
    local t0 = socket.gettime()
    local closed, err = closed_by_peer(client, 8)
    local dt = socket.gettime() - t0
    assert.is_true(closed, tostring(err))
    assert.is_true(dt >= 3.5 and dt < 5.5, "closed after " .. dt)
  end)

  it("600 connections going quiet together (most shrink at once) each serve a second request", function()
    local clients = {}
    for i = 1, 600 do
      clients[i] = helpers.proxy_client()
      assert.res_status(200, assert(clients[i]:get("/a" .. i)))
    end
    for i = 1, 600 do
      local res = assert(clients[i]:get("/b" .. i))
      assert.res_status(200, res)
      assert.equal("/b" .. i, echo_of(res).path)
      clients[i]:close()
    end
  end)
end)

describe("protocol: heavy pipelining", function()
  local up, gw

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "pipe" }
    gw = helpers.start_gw{ config = {
      services = { { name = "s", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/up" } } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  -- Sends `data` on s while reading; `quiet` seconds first without reading at all. Returns the
  -- number of complete "HTTP/1.1 404" responses seen and the worker's peak RSS while not reading.
  local function pipeline(s, data, expect, quiet, pid)
    s:settimeout(0)
    local i, n, carry, peak = 1, 0, "", 0
    local quiet_until = socket.gettime() + quiet
    local deadline = socket.gettime() + 30
    while n < expect and socket.gettime() < deadline do
      local progress = false
      if i <= #data then
        local last, err, partial = s:send(data, i)
        last = last or partial
        if last and last >= i then i = last + 1; progress = true end
        assert(err == nil or err == "timeout", err)
      end
      if socket.gettime() < quiet_until then
        local st = helpers.read_file("/proc/" .. pid .. "/status") or ""
        peak = math.max(peak, tonumber(st:match("VmRSS:%s*(%d+)")) or 0)
      else
        local d, err, partial = s:receive(65536)
        d = d or partial
        if d and #d > 0 then
          progress = true
          local buf = carry .. d
          n = n + select(2, buf:gsub("HTTP/1%.1 404 ", ""))
          carry = buf:sub(-12)
          -- do not count a match twice: the carry must not hold a whole one
          if carry:find("HTTP/1.1 404 ", 1, true) then carry = "" end
        elseif err == "closed" then
          break
        end
      end
      if not progress then socket.sleep(0.005) end
    end
    return n, peak
  end

  it("answers 50000 pipelined requests, buffering a bounded amount for a client that does not read", function()
    local pid = helpers.gw_worker_pids()[1]
    local s = assert(socket.tcp())
    s:settimeout(5)
    assert(s:connect("127.0.0.1", gw.proxy_port))
    local N = 50000
    local data = string.rep("GET /none HTTP/1.1\r\nHost: t\r\n\r\n", N)
    local n, peak = pipeline(s, data, N, 1.5, pid)
    s:close()
    assert.equal(N, n)
    assert.is_true(ASAN or peak < 24 * 1024, "worker RSS reached " .. peak .. " kB while the client did not read")
  end)

  it("answers thousands of pipelined requests queued behind a slow proxied one", function()
    local s = assert(socket.tcp())
    s:settimeout(5)
    assert(s:connect("127.0.0.1", gw.proxy_port))
    local N = 20000
    local data = "GET /up/delay/500 HTTP/1.1\r\nHost: t\r\n\r\n" .. string.rep("GET /none HTTP/1.1\r\nHost: t\r\n\r\n", N)
    local n = pipeline(s, data, N, 0, helpers.gw_worker_pids()[1])
    s:close()
    assert.equal(N, n)
    assert.equal(1, #helpers.gw_worker_pids())
  end)
end)

describe("protocol: client timeouts while a request is in progress", function()
  local up, client

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "tmo" }
    helpers.start_gw{ config = {
      gw = { timeouts = { client_body = 500, client_header = 500, keepalive = 500 } },
      services = { { name = "s", url = "http://127.0.0.1:" .. up[1], read_timeout = 5000,
                     routes = { { paths = { "/" } } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("a client that waits longer than client_body for a slow upstream keeps its response", function()
    local res = assert(client:get("/delay/1200"))
    assert.res_status(200, res)
    assert.res_status(200, assert(client:get("/again")))
  end)

  it("a streamed response longer than client_body is delivered whole", function()
    local res = assert(client:get("/chunked/5?delay=300"))
    assert.res_status(200, res)
    assert.equal(5, echo_of(res).chunks)
  end)

  it("a request body that stops coming is cut off after client_body", function()
    assert(client:raw("POST /stalled HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc"))
    local t0 = socket.gettime()
    client.sock:settimeout(3)
    local data, err, partial = client.sock:receive("*a")
    local dt = socket.gettime() - t0
    assert.is_true(err == nil or err == "closed", tostring(err))
    local raw = data or partial or ""
    -- either a 408 or a plain close, but never the upstream's answer to a truncated body
    assert.is_nil(raw:find("HTTP/1.1 200", 1, true), raw)
    assert.is_true(dt >= 0.4 and dt < 2, "after " .. dt)
  end)
end)
