-- spec/02-integration/25-limits_spec.lua — the limits and timeouts that bound a connection
-- (docs/security.md#limits-and-timeouts): the request head as a deadline (slowloris), a request
-- body that must keep a minimum rate (slow POST), the send timeout to a client that does not read,
-- the upstream write timeout, max_connections.
-- Proven elsewhere and not repeated here: the size limits (414/431/413), the keep-alive idle
-- timeout, a head or a body that stops coming (02-protocol_spec.lua); the upstream connect and
-- read timeouts (504, 01-proxy_spec.lua); a TLS handshake that never starts (22-tls_spec.lua).
local helpers = require "spec.helpers"
local socket = require "socket"
local PKI = require "spec.fixtures.tls"

local function status_of(raw)
  return tonumber((raw or ""):match("^HTTP/1%.%d (%d%d%d)"))
end

local function connect(port)
  local s = assert(socket.tcp())
  s:settimeout(3)
  assert(s:connect("127.0.0.1", port))
  return s
end

local function readable(s, wait)
  local r = socket.select({ s }, nil, wait or 0)
  return r and #r > 0
end

-- Sends `bytes` one byte every `every` seconds until gw answers or closes (or `max` seconds).
-- Returns what gw sent, seconds from the first byte, and how many bytes went out.
local function trickle(s, bytes, every, max)
  local t0 = socket.gettime()
  local i = 0
  while socket.gettime() - t0 < max do
    if readable(s, every) then break end
    i = i + 1
    if i > #bytes then i = #bytes end
    local ok = s:send(bytes:sub(i, i))
    if not ok then break end
  end
  local dt = socket.gettime() - t0
  s:settimeout(3)
  local data, _, partial = s:receive("*a")
  return data or partial or "", dt, i
end

-- Reads one response off a keep-alive connection (head + Content-Length body).
local function read_response(s)
  local head = {}
  while true do
    local line, err = s:receive("*l")
    if not line then return nil, err end
    if line == "" then break end
    head[#head + 1] = line
  end
  local len = 0
  for _, l in ipairs(head) do
    local v = l:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")
    if v then len = tonumber(v) end
  end
  local body = len > 0 and s:receive(len) or ""
  return { status = status_of(head[1]), head = table.concat(head, "\n"), body = body }
end

describe("limits: the request head is a deadline", function()
  local gw

  lazy_setup(function()
    local up = helpers.start_mock_upstream{ name = "lim-head" }
    gw = helpers.start_gw{ config = {
      gw = { timeouts = { client_header = 1000, keepalive = 3000 } },
      services = { { name = "s", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/" } } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  it("a head trickled a byte at a time (slowloris) gets 408 and a close at client_header", function()
    local s = connect(gw.proxy_port)
    -- every byte comes well within client_header of the one before it
    local raw, dt, sent = trickle(s, "GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " .. ("a"):rep(200), 0.1, 5)
    s:close()
    assert.equal(408, status_of(raw), raw)
    assert.truthy(raw:find("\r\nConnection: close\r\n", 1, true), raw)
    assert.is_true(dt >= 0.8 and dt < 2.5, "408 after " .. dt .. " s")
    assert.is_true(sent >= 5, "sent " .. sent)
  end)

  it("a keep-alive connection: the next head's deadline runs from its first byte", function()
    local s = connect(gw.proxy_port)
    assert(s:send("GET /first HTTP/1.1\r\nHost: t\r\n\r\n"))
    assert.equal(200, assert(read_response(s)).status)
    -- idle (under keepalive) longer than client_header: that time is not the head's
    socket.sleep(1.3)
    local raw, dt = trickle(s, "GET /second HTTP/1.1\r\nHost: t\r\nX-Slow: " .. ("b"):rep(200), 0.1, 5)
    s:close()
    assert.equal(408, status_of(raw), raw)
    assert.is_true(dt >= 0.8 and dt < 2.5, "408 after " .. dt .. " s from the head's first byte")
  end)

  it("a head that begins pipelined behind an answered request cannot extend its time", function()
    local s = connect(gw.proxy_port)
    assert(s:send("GET /p1 HTTP/1.1\r\nHost: t\r\n\r\nGET /p2 HTTP/1.1\r\n"))
    local t0 = socket.gettime()
    assert.equal(200, assert(read_response(s)).status)
    local raw = trickle(s, "Host: t\r\nX-Slow: " .. ("c"):rep(200), 0.1, 5)
    local dt = socket.gettime() - t0
    s:close()
    assert.equal(408, status_of(raw), raw)
    assert.is_true(dt >= 0.8 and dt < 2.5, "408 after " .. dt .. " s")
  end)

  it("empty lines trickled before a request line do not hold the connection past the deadline", function()
    local s = connect(gw.proxy_port)
    local t0 = socket.gettime()
    local closed = false
    while socket.gettime() - t0 < 5 do
      if readable(s, 0.1) then break end
      if not s:send("\r\n") then break end
    end
    s:settimeout(2)
    local data, err = s:receive(1)
    closed = data == nil and err == "closed"
    local dt = socket.gettime() - t0
    s:close()
    assert.is_true(closed, tostring(data or err))
    assert.is_true(dt >= 0.8 and dt < 2.5, "closed after " .. dt .. " s")
  end)

  it("a head in pieces that is complete within client_header is served", function()
    local s = connect(gw.proxy_port)
    local req = "GET /pieces HTTP/1.1\r\nHost: t\r\n\r\n"
    for i = 1, #req, 8 do
      assert(s:send(req:sub(i, i + 7)))
      socket.sleep(0.05)
    end
    local res = assert(read_response(s))
    s:close()
    assert.equal(200, res.status)
  end)
end)

describe("limits: a TLS handshake trickled byte by byte", function()
  local port

  lazy_setup(function()
    local pki = PKI.new(helpers.tmpdir("lim-pki"))
    local ca = pki:ca("ca")
    local cert = pki:cert("a", { cn = "a.test", san = { "DNS:a.test" }, ca = ca })
    port = helpers.get_free_port()
    helpers.start_gw{ config = {
      gw = { listen = { "127.0.0.1:" .. helpers.get_free_port(), "127.0.0.1:" .. port .. " ssl" },
             ssl_cert = cert.cert, ssl_cert_key = cert.key, timeouts = { client_header = 1000 } },
      services = { { name = "e", protocol = "echo", routes = { { paths = { "/" } } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  it("is closed at client_header", function()
    local s = connect(port)
    -- a TLS record header announcing a 512-byte handshake message, then its bytes one by one:
    -- OpenSSL waits for the whole record, each byte arriving well within client_header
    local hello = "\22\3\1\2\0" .. ("\0"):rep(512)
    local t0 = socket.gettime()
    local i = 0
    while socket.gettime() - t0 < 5 do
      if readable(s, 0.1) then break end
      i = i + 1
      if not s:send(hello:sub(i, i)) then break end
    end
    s:settimeout(2)
    local data, err = s:receive(1)
    local dt = socket.gettime() - t0
    s:close()
    assert.is_nil(data)
    assert.truthy(err == "closed" or err:find("reset"), err)
    assert.is_true(dt >= 0.8 and dt < 2.5, "closed after " .. dt .. " s")
  end)
end)

describe("limits: a request body must keep timeouts.client_body_min_rate", function()
  local up, gw, gw_off

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "lim-body" }
    local services = { { name = "s", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/" } } } },
                       { name = "e", protocol = "echo", routes = { { paths = { "/echo" } } } },
                       { name = "p", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/plugin" } } },
                         plugins = { { name = "code", config = {
                           access = [[gw.ctx.shared.n = #gw.request.get_raw_body()]] } } } } }
    gw = helpers.start_gw{ config = {
      gw = { timeouts = { client_body = 1000, client_body_min_rate = 1000 },
             plugins_path = { helpers.repo .. "/spec/fixtures/plugins" } }, services = services } }
  end)
  lazy_teardown(helpers.stop_all)

  -- Sends a POST head, then `piece` bytes every `every` s until `total` bytes are sent or gw
  -- answers. Returns what gw sent, the seconds it took and the bytes sent.
  local function upload(port, total, piece, every, path)
    local s = connect(port)
    assert(s:send("POST " .. (path or "/sink") .. " HTTP/1.1\r\nHost: t\r\nContent-Length: " .. total .. "\r\n\r\n"))
    local t0, sent = socket.gettime(), 0
    while sent < total and socket.gettime() - t0 < 8 do
      if readable(s, every) then break end
      local n = math.min(piece, total - sent)
      if not s:send(("x"):rep(n)) then break end
      sent = sent + n
    end
    s:settimeout(5)
    local data, _, partial = s:receive("*a")
    local dt = socket.gettime() - t0
    s:close()
    return data or partial or "", dt, sent
  end

  it("a body trickled below the rate (but never silent for client_body) gets 408 and a close", function()
    -- 50 bytes every 0.1 s: 500 B/s, half the minimum. After n bytes the body is due
    -- client_body + n / rate, so it falls behind after about 2 s.
    local raw, dt, sent = upload(gw.proxy_port, 100000, 50, 0.1)
    assert.equal(408, status_of(raw), raw)
    assert.truthy(raw:find("\r\nConnection: close\r\n", 1, true), raw)
    assert.truthy(raw:find("Request body timeout", 1, true), raw)
    assert.is_true(dt >= 1.5 and dt < 4.5, "408 after " .. dt .. " s")
    assert.is_true(sent < 100000)
  end)

  for _, path in ipairs({ "/echo", "/plugin" }) do
    it("the same when gw reads the body itself (" .. path .. ")", function()
      local raw, dt = upload(gw.proxy_port, 100000, 50, 0.1, path)
      assert.equal(408, status_of(raw), raw)
      assert.truthy(raw:find("Request body timeout", 1, true), raw)
      assert.is_true(dt >= 1.5 and dt < 4.5, "408 after " .. dt .. " s")
    end)
  end

  it("an upload above the rate that lasts longer than client_body is delivered", function()
    -- 500 bytes every 0.1 s (about 5 KB/s) for about 2.5 s
    local raw, dt = upload(gw.proxy_port, 12500, 500, 0.1)
    assert.equal(200, status_of(raw), raw)
    assert.truthy(raw:find('"body_size": ?12500'), raw)
    assert.is_true(dt >= 2, "took " .. dt)
  end)

  it("0 turns the rate off: the same trickle is delivered", function()
    helpers.stop_all()
    up = helpers.start_mock_upstream{ name = "lim-body" }
    gw_off = helpers.start_gw{ config = {
      gw = { timeouts = { client_body = 1000, client_body_min_rate = 0 } },
      services = { { name = "s", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/" } } } } },
    } }
    local raw, dt = upload(gw_off.proxy_port, 1250, 50, 0.1)
    assert.equal(200, status_of(raw), raw)
    assert.truthy(raw:find('"body_size": ?1250'), raw)
    assert.is_true(dt >= 2, "took " .. dt)
  end)
end)

describe("limits: timeouts.send", function()
  local gw

  lazy_setup(function()
    local up = helpers.start_mock_upstream{ name = "lim-send" }
    gw = helpers.start_gw{ config = {
      gw = { timeouts = { send = 500 } },
      services = { { name = "s", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/" } } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  it("a client that stops reading its response is closed after send", function()
    local total = 64 * 1024 * 1024
    local s = connect(gw.proxy_port)
    assert(s:send("GET /bytes/" .. total .. " HTTP/1.1\r\nHost: t\r\n\r\n"))
    -- do not read for well over `send`: the kernel buffers fill and gw's writes stop
    socket.sleep(3)
    s:settimeout(5)
    local got, closed = 0, false
    while true do
      local data, err, partial = s:receive(65536)
      got = got + #(data or partial or "")
      if not data then closed = err == "closed" or (err or ""):find("reset") ~= nil; break end
    end
    s:close()
    assert.is_true(closed, "the connection was not closed")
    assert.is_true(got < total, "the whole response arrived (" .. got .. " bytes)")
  end)
end)

describe("limits: upstream write_timeout", function()
  local server, gw

  lazy_setup(function()
    -- an upstream that accepts (the kernel completes the handshake) but never reads
    server = assert(socket.tcp())
    assert(server:bind("127.0.0.1", 0))
    assert(server:listen(16))
    local _, port = server:getsockname()
    gw = helpers.start_gw{ config = {
      services = { { name = "deaf", url = "http://127.0.0.1:" .. port, write_timeout = 500, read_timeout = 10000,
                     retries = 0, routes = { { paths = { "/" } } } } },
    } }
  end)
  lazy_teardown(function()
    helpers.stop_all()
    if server then server:close() end
  end)

  it("504 when the upstream takes no request bytes for write_timeout", function()
    local s = connect(gw.proxy_port)
    local total = 64 * 1024 * 1024
    assert(s:send("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: " .. total .. "\r\n\r\n"))
    local piece = ("z"):rep(65536)
    s:settimeout(0.05)
    local t0, last = socket.gettime(), nil
    while socket.gettime() - t0 < 20 do
      if readable(s, 0) then break end
      local n, err, part = s:send(piece)
      if n or (part or 0) > 0 then last = socket.gettime()
      elseif err ~= "timeout" then break end
    end
    s:settimeout(3)
    local data, _, partial = s:receive("*a")
    local raw = data or partial or ""
    local dt = socket.gettime() - last
    s:close()
    assert.equal(504, status_of(raw), raw)
    -- the upload stopped moving once the kernel buffers on the way were full
    assert.is_true(dt < 3, "504 " .. dt .. " s after the upload stopped moving")
  end)
end)

describe("limits: gw.max_connections", function()
  local gw, admin

  lazy_setup(function()
    local up = helpers.start_mock_upstream{ name = "lim-conns" }
    gw = helpers.start_gw{ config = {
      gw = { workers = 1, max_connections = 5 },
      services = { { name = "s", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/" } } } } },
    } }
    admin = gw.admin_port
  end)
  lazy_teardown(helpers.stop_all)

  it("refuses the connection past the limit at once with a 503; the open ones keep working", function()
    local open = {}
    for i = 1, 5 do
      local s = connect(gw.proxy_port)
      assert(s:send("GET /c" .. i .. " HTTP/1.1\r\nHost: t\r\n\r\n"))
      assert.equal(200, assert(read_response(s)).status)
      open[i] = s
    end
    local extra = connect(gw.proxy_port)
    local t0 = socket.gettime()
    extra:send("GET /extra HTTP/1.1\r\nHost: t\r\n\r\n")
    extra:settimeout(2)
    local data, err, partial = extra:receive("*a")
    local dt = socket.gettime() - t0
    extra:close()
    local raw = data or partial or ""
    assert.is_true(dt < 1, "refused after " .. dt .. " s (" .. tostring(err) .. ")")
    assert.equal(503, status_of(raw), raw)
    assert.truthy(raw:find('{"message":"Too many open connections"}', 1, true), raw)
    assert.truthy(raw:find("\r\nConnection: close\r\n", 1, true), raw)
    -- the five are unharmed
    for i, s in ipairs(open) do
      assert(s:send("GET /again" .. i .. " HTTP/1.1\r\nHost: t\r\n\r\n"))
      assert.equal(200, assert(read_response(s)).status)
    end
    -- one goes: a new connection is served again
    open[1]:close()
    local ok = helpers.wait_until(function()
      local s = connect(gw.proxy_port)
      s:send("GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
      local res = read_response(s)
      s:close()
      return res and res.status == 200
    end, 5, 0.1)
    assert.truthy(ok)
    for i = 2, 5 do open[i]:close() end
    -- counted in the metrics
    local ac = helpers.admin_client()
    local res = assert(ac:get("/metrics"))
    ac:close()
    local body = res.body or ""
    local n = tonumber(body:match("\ngateway_connections_refused_total (%d+)"))
    assert.truthy(n and n >= 1, body:match("gateway_connections_refused_total[^\n]*"))
  end)

  it("rejects an out of range max_connections at config check", function()
    local rc, out = helpers.gw_check("gw: { max_connections: 0 }\n")
    assert.not_equal(0, rc)
    assert.truthy(tostring(out):find("max_connections", 1, true), out)
  end)
end)
