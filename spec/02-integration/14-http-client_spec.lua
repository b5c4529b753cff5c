-- gw.http: the non-blocking HTTP/1.1 client (runtime/lua/http.c, lua/gw/http.lua).
-- Through a worker: a fixture plugin (spec/fixtures/plugins/http-probe) calls gw.http from
-- access, log and a timer against the real mock upstream, while other requests keep being served.
-- In `gw test` itself (the main thread, where gw.http runs the loop until the answer is in):
-- hostile responses from a scripted server, TLS with and without verification, gw.test.context.
local helpers = require "spec.helpers"
local cjson = require "cjson"
local socket = require "socket"

local FIXTURES = helpers.repo .. "/spec/fixtures/plugins"

-- A scripted server: each path answers with fixed (often broken) bytes. X-Conn numbers the
-- connection. With a certificate and key as arguments it speaks TLS.
local RAW = [=[
import asyncio, ssl, sys
port = int(sys.argv[1])
tls = None
if len(sys.argv) > 3:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[2], sys.argv[3])
conns = 0

def ok(conn, body=b"ok", extra=""):
    return (("HTTP/1.1 200 OK\r\nX-Conn: %d\r\nContent-Length: %d\r\n" % (conn, len(body))) + extra + "\r\n").encode() + body

async def handle(reader, writer):
    global conns
    conns += 1
    conn, nreq = conns, 0
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except Exception:
                return
            nreq += 1
            path = head.split(b" ")[1].decode().split("?")[0]
            w = writer.write
            if path == "/bad-status":
                w(b"HTTP/1.1 2xx Whatever\r\nContent-Length: 0\r\n\r\n")
            elif path == "/garbage":
                w(b"NOT HTTP AT ALL\r\n\r\n")
            elif path == "/big-head":
                w(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100000 + b"\r\nContent-Length: 0\r\n\r\n")
            elif path == "/many-headers":
                w(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(500)) + b"Content-Length: 0\r\n\r\n")
            elif path == "/cl-te":
                w(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            elif path == "/neg-cl":
                w(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")
            elif path == "/bad-chunk":
                w(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
            elif path == "/huge-chunk":
                w(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffffffff\r\nabc")
            elif path == "/chunk-bomb":
                w(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for i in range(64):
                    w(b"4000\r\n" + b"x" * 16384 + b"\r\n")
                    await writer.drain()
                w(b"0\r\n\r\n")
            elif path == "/truncated":
                w(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
                await writer.drain()
                return
            elif path == "/close-now":
                return
            elif path == "/half-head":
                w(b"HTTP/1.1 200 OK\r\nX-A: b\r\n")
                await writer.drain()
                return
            elif path == "/interim":
                w(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok(conn))
            elif path == "/extra":
                w(ok(conn) + b"GARBAGE")
            elif path == "/http10":
                w(b"HTTP/1.0 200 OK\r\nX-Conn: %d\r\n\r\nuntil close" % conn)
                await writer.drain()
                return
            elif path == "/stale":
                if nreq >= 2:
                    return     # an idle keep-alive connection closed just as a request came
                w(ok(conn))
            elif path == "/slow-body":
                w(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
                await writer.drain()
                await asyncio.sleep(3)
                return
            elif path == "/trickle":
                for i, b in enumerate(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(conn, b"trickled", "X-Slow: 1\r\n")):
                    w(bytes([b]))
                    await writer.drain()
                    if i % 8 == 0:
                        await asyncio.sleep(0.001)
            elif path == "/head":
                w(b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n")
            elif path == "/no-content":
                w(b"HTTP/1.1 204 No Content\r\nX-Conn: %d\r\n\r\n" % conn)
            else:
                w(ok(conn))
            await writer.drain()
    finally:
        writer.close()

async def main():
    await asyncio.start_server(handle, "127.0.0.1", port, ssl=tls)
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
]=]

local function start_raw(dir, cert, key)
  helpers.write_file(dir .. "/raw_http.py", RAW)
  local port = helpers.get_free_port()
  local proc = helpers.spawn{ kind = "rawhttp", marker = "raw_http.py",
    cmd = "python3 " .. dir .. "/raw_http.py " .. port .. (cert and (" " .. cert .. " " .. key) or "") }
  helpers.wait_until(function() return helpers.port_open(port) end, 10)
  return port, proc
end

local function now() return socket.gettime() end

describe("gw.http through a worker", function()
  local up, client, closed_port

  local function probe(args)
    local res = assert(client:get("/probe", { query = args }))
    assert.res_status(200, res)
    return cjson.decode(res.body)
  end
  local function url(path) return "http://127.0.0.1:" .. up[1] .. path end

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "httpc" }
    closed_port = helpers.get_free_port()
    helpers.start_gw{ plugins_path = { FIXTURES }, config = {
      services = {
        { name = "probe", url = "echo://", routes = { { paths = { "/probe" } } },
          plugins = { { name = "http-probe" } } },
        { name = "plain", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/plain" } } } },
      },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("GET: status, headers, body; Host and User-Agent are set", function()
    local r = probe{ url = url("/hello?x=1"), hdr = "p" }
    assert.is_nil(r.err)
    assert.equal(200, r.status)
    assert.equal("access", r.phase)
    assert.equal("application/json", r.content_type)
    local echo = cjson.decode(r.body)
    assert.equal("GET", echo.method)
    assert.equal("/hello", echo.path)
    assert.equal("x=1", echo.query)
    assert.equal("127.0.0.1:" .. up[1], echo.headers.host)
    assert.equal("gw/0.1.0", echo.headers["user-agent"])
    assert.equal("p", echo.headers["x-probe"])
  end)

  it("POST with a body: sent with its Content-Length", function()
    local r = probe{ url = url("/post"), method = "POST", body = "a=1&b=2" }
    assert.equal(200, r.status)
    local echo = cjson.decode(r.body)
    assert.equal("POST", echo.method)
    assert.equal("a=1&b=2", echo.body)
    assert.equal("7", echo.headers["content-length"])
  end)

  it("user:password in the URL becomes Basic credentials", function()
    local r = probe{ url = "http://u%40x:p%3Aw@127.0.0.1:" .. up[1] .. "/auth?a=1" }
    assert.equal(200, r.status)
    local echo = cjson.decode(r.body)
    assert.equal("Basic dUB4OnA6dw==", echo.headers.authorization)   -- base64("u@x:p:w")
    assert.equal("/auth", echo.path)
  end)

  it("a host name from /etc/hosts (localhost) resolves", function()
    local r = probe{ url = "http://localhost:" .. up[1] .. "/named" }
    assert.is_nil(r.err)
    assert.equal(200, r.status)
  end)

  it("keeps connections alive: many calls, one upstream connection", function()
    helpers.mock_stats(up[1], true)
    local ids = {}
    for i = 1, 6 do
      local r = probe{ url = url("/ka/" .. i) }
      assert.equal(200, r.status)
      ids[cjson.decode(r.body).connection_id] = true
    end
    local n = 0
    for _ in pairs(ids) do n = n + 1 end
    assert.equal(1, n)
    -- at most one new connection (the pool may hold one from an earlier test), plus the stats
    -- call's own
    assert.is_true(helpers.mock_stats(up[1]).connections <= 2)
  end)

  it("keepalive = false: a connection per call", function()
    helpers.mock_stats(up[1], true)
    for i = 1, 3 do assert.equal(200, probe{ url = url("/nka/" .. i), keepalive = "0" }.status) end
    assert.equal(4, helpers.mock_stats(up[1]).connections)
  end)

  it("chunked, Content-Length and close-delimited bodies", function()
    local r = probe{ url = url("/chunked/7") }
    assert.equal(200, r.status)
    assert.equal(7, cjson.decode(r.body).chunks)
    r = probe{ url = url("/bytes-chunked/300000") }
    assert.equal(300000, #r.body)
    r = probe{ url = url("/bytes/200000") }
    assert.equal(200000, #r.body)
    r = probe{ url = url("/no-length") }
    assert.equal("/no-length", cjson.decode(r.body).path)
  end)

  it("a body over max_body_size is an error, not a truncated body", function()
    local r = probe{ url = url("/bytes/100000"), max_body = 1000 }
    assert.is_nil(r.status)
    assert.matches("response body too large", r.err, 1, true)
    r = probe{ url = url("/bytes-chunked/100000"), max_body = 1000 }
    assert.matches("response body too large", r.err, 1, true)
  end)

  it("timeout: the whole call, and read between bytes", function()
    local r = probe{ url = url("/delay/3000"), timeout = 300 }
    assert.is_nil(r.status)
    assert.equal("timeout", r.err)
    assert.is_true(r.ms >= 250 and r.ms < 1500, "took " .. r.ms .. " ms")
    r = probe{ url = url("/delay/3000"), read = 300 }
    assert.equal("read timeout", r.err)
    assert.is_true(r.ms < 1500, "took " .. r.ms .. " ms")
  end)

  it("connection refused and unknown hosts: nil, reason", function()
    local r = probe{ url = "http://127.0.0.1:" .. closed_port .. "/" }
    assert.is_nil(r.status)
    assert.matches("connect failed", r.err, 1, true)
    r = probe{ url = "http://no-such-host.invalid/", timeout = 3000 }
    assert.is_nil(r.status)
    assert.truthy(r.err:find("could not resolve", 1, true) or r.err == "timeout", r.err)
  end)

  it("a slow call does not hold up the worker's other requests", function()
    local slow = helpers.http_client(helpers.gw_info().proxy_host, helpers.gw_info().proxy_port)
    local t0 = now()
    assert(slow:raw("GET /probe?url=" .. url("/delay/1500") .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
    socket.sleep(0.1)
    local other = helpers.proxy_client()
    for i = 1, 5 do
      local res = assert(other:get("/plain/fast/" .. i))
      assert.res_status(200, res)
      -- and another gw.http call, concurrent with the slow one
      assert.equal(200, probe{ url = url("/fast/" .. i) }.status)
    end
    other:close()
    assert.is_true(now() - t0 < 1.2, "the other requests waited for the slow call")
    local res = assert(slow:read_response())
    assert.res_status(200, res)
    local r = cjson.decode(res.body)
    assert.equal(200, r.status)
    assert.is_true(r.ms >= 1400, "took " .. r.ms .. " ms")
    slow:close()
  end)

  it("request_multi runs calls at once and returns them in order", function()
    local res = assert(client:get("/probe", { query = "mode=multi&url=" .. url("/delay/600?i=1") ..
      "&url=" .. "http://127.0.0.1:" .. closed_port .. "/" .. "&url=" .. url("/delay/600?i=3") ..
      "&url=" .. url("/delay/600?i=4") }))
    local r = cjson.decode(assert.res_status(200, res))
    assert.equal(4, r.n)
    assert.is_true(r.ms < 1500, "took " .. r.ms .. " ms: not concurrent")
    assert.equal("i=1", cjson.decode(r.results[1].body).query)
    assert.is_nil(r.results[2].status)
    assert.matches("connect failed", r.results[2].err, 1, true)
    assert.equal("i=3", cjson.decode(r.results[3].body).query)
    assert.equal("i=4", cjson.decode(r.results[4].body).query)
  end)

  it("works in a timer, twice in the same timer coroutine", function()
    assert.same({ started = true }, probe{ mode = "timer", id = "t1", url = url("/from-timer") })
    local r = helpers.wait_until(function()
      local x = probe{ mode = "result", id = "t1" }
      return not x.missing and x
    end, 10)
    assert.equal(200, r.first.status)
    assert.equal("timer", r.first.phase)
    assert.equal("/from-timer", cjson.decode(r.first.body).path)
    assert.equal(200, r.second.status)
  end)

  it("a timer suspended many times (gw.sleep, gw.http) is not pinned in the registry", function()
    assert.same({ started = true }, probe{ mode = "timer-loop", url = url("/loop") })
    socket.sleep(0.3)
    local a = probe{ mode = "registry" }
    socket.sleep(1)
    local b = probe{ mode = "registry" }
    assert.is_true(b.loops > a.loops + 10, "the timer did not run")
    assert.is_true(b.entries < a.entries + 20, "registry grew from " .. a.entries .. " to " .. b.entries)
  end)

  it("works in the log phase, after the response went out", function()
    local res = assert(client:get("/probe", { query = { mode = "log", id = "l1", url = url("/from-log") } }))
    assert.res_status(200, res) -- the echo service's answer
    local r = helpers.wait_until(function()
      local x = probe{ mode = "result", id = "l1" }
      return not x.missing and x
    end, 10)
    assert.equal(200, r.status)
    assert.equal("log", r.phase)
    assert.equal("/from-log", cjson.decode(r.body).path)
  end)

  it("misuse raises with the function's name", function()
    local r = probe{ mode = "misuse" }
    assert.is_false(r.ok)
    assert.matches("gw.http.request: unsupported scheme \"ftp\"", r.errs[1], 1, true)
    assert.matches("gw.http.request: header value must not contain CR, LF or NUL", r.errs[2], 1, true)
    assert.matches("gw.http.request_multi: url must be a string", r.errs[3], 1, true)
    assert.matches("gw.http.request: timeout must be a number of milliseconds > 0", r.errs[4], 1, true)
  end)

  it("refuses to suspend a coroutine the plugin created", function()
    local r = probe{ mode = "own-coroutine", url = url("/x") }
    assert.is_false(r.ok)
    assert.matches("cannot suspend a coroutine created by the plugin", r.err, 1, true)
  end)

  it("is not allowed in header_filter", function()
    local res = assert(client:get("/probe", { query = { mode = "header_filter" } }))
    -- no mode handled in access: the echo service answers, header_filter reports the error
    assert.res_status(200, res)
    assert.matches("gw.http.request: not allowed in the header_filter phase", res.headers["x-http-error"], 1, true)
  end)

  it("a client that goes away mid-call cancels it; the worker carries on", function()
    local pids = helpers.gw_worker_pids()
    for _ = 1, 5 do
      local c = helpers.proxy_client()
      assert(c:raw("GET /probe?url=" .. url("/delay/500") .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
      socket.sleep(0.05)
      c:close()
    end
    socket.sleep(0.8)
    assert.equal(200, probe{ url = url("/after") }.status)
    assert.same(pids, helpers.gw_worker_pids())
    assert.logfile().has.no.line("died", true)
  end)
end)

describe("gw.http against hostile servers", function()
  local port, proc, client

  lazy_setup(function()
    port, proc = start_raw(helpers.tmpdir("rawhttp"))
    helpers.start_gw{ plugins_path = { FIXTURES }, config = {
      services = { { name = "probe", url = "echo://", routes = { { paths = { "/probe" } } },
                     plugins = { { name = "http-probe" } } } },
    } }
  end)
  lazy_teardown(function()
    helpers.stop_all()
    helpers.stop_process(proc)
  end)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  local function call(path, extra)
    local req = { url = "http://127.0.0.1:" .. port .. path, timeout = 5000 }
    for k, v in pairs(extra or {}) do req[k] = v end
    return gw.http.request(req)
  end

  local bad = {
    { "/bad-status", "invalid response" },
    { "/garbage", "invalid response" },
    { "/big-head", "invalid response" },
    { "/many-headers", "invalid response" },
    { "/cl-te", "invalid response" },
    { "/neg-cl", "invalid response" },
    { "/bad-chunk", "invalid chunked body" },
    { "/huge-chunk", "invalid chunked body" },
    { "/truncated", "connection closed before the response body was complete" },
    { "/close-now", "connection closed before a response" },
    { "/half-head", "connection closed in the response head" },
  }
  for _, case in ipairs(bad) do
    it("answers nil, reason for " .. case[1], function()
      local res, err = call(case[1])
      assert.is_nil(res)
      assert.matches(case[2], err, 1, true)
    end)
  end

  it("a chunked body over the limit stops at the limit", function()
    local res, err = call("/chunk-bomb", { max_body_size = 100000 })
    assert.is_nil(res)
    assert.matches("response body too large", err, 1, true)
    res = assert(call("/chunk-bomb"))
    assert.equal(64 * 16384, #res.body)
  end)

  it("skips interim responses, reads HTTP/1.0 close-delimited bodies, 204 and HEAD without a body", function()
    local res = assert(call("/interim"))
    assert.equal(200, res.status)
    assert.equal("ok", res.body)
    res = assert(call("/http10"))
    assert.equal("until close", res.body)
    res = assert(call("/no-content"))
    assert.equal(204, res.status)
    assert.equal("", res.body)
    res = assert(call("/head", { method = "HEAD" }))
    assert.equal("12345", res.headers["content-length"])
    assert.equal("", res.body)
  end)

  it("a head and body trickled a byte at a time", function()
    local res = assert(call("/trickle"))
    assert.equal(200, res.status)
    assert.equal("1", res.headers["x-slow"])
    assert.equal("trickled", res.body)
  end)

  it("a connection with bytes after the response is not reused", function()
    local a = assert(call("/extra"))
    local b = assert(call("/x"))
    assert.are_not.equal(a.headers["x-conn"], b.headers["x-conn"])
  end)

  it("a pooled connection the server closed is replayed once on a fresh one", function()
    local a = assert(call("/stale"))
    local b = assert(call("/stale"))
    assert.equal(200, b.status)
    assert.are_not.equal(a.headers["x-conn"], b.headers["x-conn"])
  end)

  it("read timeout in the middle of a body", function()
    local res, err = call("/slow-body", { timeout = { read = 300 } })
    assert.is_nil(res)
    assert.equal("read timeout", err)
  end)

  it("a worker calling them keeps serving", function()
    local pids = helpers.gw_worker_pids()
    for _, case in ipairs(bad) do
      local res = assert(client:get("/probe", { query = { url = "http://127.0.0.1:" .. port .. case[1], timeout = 3000 } }))
      local r = cjson.decode(assert.res_status(200, res))
      assert.is_nil(r.status)
      assert.matches(case[2], r.err, 1, true)
    end
    assert.same(pids, helpers.gw_worker_pids())
  end)
end)

describe("gw.http over TLS", function()
  local port, proc, dir

  lazy_setup(function()
    dir = helpers.tmpdir("httpstls")
    local rc, out = helpers.execute("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost " ..
      "-addext subjectAltName=DNS:localhost -keyout " .. dir .. "/key.pem -out " .. dir .. "/cert.pem")
    assert(rc == 0, out)
    port, proc = start_raw(dir, dir .. "/cert.pem", dir .. "/key.pem")
  end)
  lazy_teardown(function() helpers.stop_process(proc) end)

  it("verifies the certificate by default (system CA store): a self-signed one fails", function()
    local res, err = gw.http.request{ url = "https://localhost:" .. port .. "/x", timeout = 5000 }
    assert.is_nil(res)
    assert.matches("certificate verify failed", err, 1, true)
  end)

  it("ssl_verify = false accepts it", function()
    local res = assert(gw.http.request{ url = "https://localhost:" .. port .. "/x", ssl_verify = false })
    assert.equal(200, res.status)
    assert.equal("ok", res.body)
  end)

  it("ssl_ca_file trusts a private CA, and the name is checked", function()
    local res = assert(gw.http.request{ url = "https://localhost:" .. port .. "/x", ssl_ca_file = dir .. "/cert.pem" })
    assert.equal(200, res.status)
    local res2, err = gw.http.request{ url = "https://127.0.0.1:" .. port .. "/x", ssl_ca_file = dir .. "/cert.pem" }
    assert.is_nil(res2)
    assert.matches("certificate verify failed", err, 1, true)
  end)

  it("keeps TLS connections alive", function()
    local a = assert(gw.http.request{ url = "https://localhost:" .. port .. "/a", ssl_verify = false })
    local b = assert(gw.http.request{ url = "https://localhost:" .. port .. "/b", ssl_verify = false })
    assert.equal(a.headers["x-conn"], b.headers["x-conn"])
  end)

  it("TLS to a plain HTTP port fails cleanly", function()
    local up = helpers.start_mock_upstream{ name = "plain-for-https" }
    local res, err = gw.http.request{ url = "https://127.0.0.1:" .. up[1] .. "/", ssl_verify = false, timeout = 3000 }
    assert.is_nil(res)
    assert.is_string(err)
    helpers.stop_mock_upstream("plain-for-https")
  end)
end)

describe("gw.http in gw.test.context", function()
  local up
  lazy_setup(function() up = helpers.start_mock_upstream{ name = "httpc-ctx" } end)
  lazy_teardown(function() helpers.stop_mock_upstream("httpc-ctx") end)

  it("a handler's call suspends and resumes like gw.sleep", function()
    local handler = { access = function(_, conf)
      local res, err = gw.http.request{ url = conf.url, method = "POST", body = "hi" }
      gw.ctx.shared.status = res and res.status or err
      gw.ctx.shared.body = res and res.body
      local ress = gw.http.request_multi{ { url = conf.url }, { url = conf.url } }
      gw.ctx.shared.multi = #ress
      gw.service.request.set_header("X-After", "yes")
    end }
    local ctx = gw.test.context{}
    assert.is_true(ctx:run(handler, "access", { url = "http://127.0.0.1:" .. up[1] .. "/ctx" }))
    assert.equal(200, ctx.shared.status)
    assert.equal("hi", cjson.decode(ctx.shared.body).body)
    assert.equal(2, ctx.shared.multi)
    assert.equal("yes", ctx:upstream_header("X-After"))
  end)

  it("query tables are appended to the URL's query, encoded", function()
    local handler = { access = function(_, conf)
      local res = assert(gw.http.request{ url = conf.url, query = { b = "x y", a = { "1", "2" }, flag = true } })
      gw.ctx.shared.query = cjson.decode(res.body).query
    end }
    local ctx = gw.test.context{}
    ctx:run(handler, "access", { url = "http://127.0.0.1:" .. up[1] .. "/q?z=0" })
    assert.equal("z=0&a=1&a=2&b=x%20y&flag", ctx.shared.query)
  end)

  it("is refused in header_filter", function()
    local handler = { header_filter = function() gw.http.request{ url = "http://127.0.0.1:1/" } end }
    local ctx = gw.test.context{}
    assert.has_error(function() ctx:run(handler, "header_filter", {}) end)
  end)
end)
