-- spec/02-integration/29-io_spec.lua — the stream under each connection (runtime/io.c): heads are
-- read straight into the connection's head buffers and parsed there when they come in one read;
-- these cases make them come in several, or together with what follows them, on both sides, so
-- the paths that move bytes from the head buffer to the input are taken. And the edge-triggered
-- reads: a FIN that comes with the last bytes, a response bigger than one read.
local helpers = require "spec.helpers"
local raw = require "spec.fixtures.raw_upstream"
local socket = require "socket"

describe("io: heads across reads #io", function()
  local up, gw

  lazy_setup(function()
    up = raw.start("io-up")
    gw = helpers.start_gw{ config = {
      services = { { name = "s", url = "http://127.0.0.1:" .. up.port, retries = 0,
                     routes = { { paths = { "/" } } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  local OK = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

  it("a request head in three pieces is parsed whole", function()
    up:script({ OK })
    local s = raw.connect(gw.proxy_port)
    for _, piece in ipairs({ "GET /pie", "ces?a=1 HTTP/1.1\r\nHost: t\r\nX-One: 1", "\r\nX-Two: 2\r\n\r\n" }) do
      assert(s:send(piece))
      socket.sleep(0.05)
    end
    local r = assert(raw.read_response(s))
    s:close()
    assert.equal(200, r.status)
    assert.equal("ok", r.body)
    local req = up:requests()[1]
    assert.matches("^GET /pieces%?a=1 HTTP/1.1\r\n", req.head)
    assert.matches("\r\nX%-One: 1\r\n", req.head)
    assert.matches("\r\nX%-Two: 2\r\n", req.head)
  end)

  it("a body (and the next request) that come with the head go upstream exactly", function()
    up:script({ OK, OK })
    local s = raw.connect(gw.proxy_port)
    assert(s:send("POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: t\r\n\r\n"))
    local r1 = assert(raw.read_response(s))
    local r2 = assert(raw.read_response(s))
    s:close()
    assert.same({ 200, "ok", 200, "ok" }, { r1.status, r1.body, r2.status, r2.body })
    local reqs = up:requests()
    assert.equal(2, #reqs)
    assert.equal("hello", reqs[1].body)
    assert.matches("^GET /next ", reqs[2].head)
  end)

  it("a head split just before its blank line, the body with the rest", function()
    up:script({ OK })
    local s = raw.connect(gw.proxy_port)
    assert(s:send("POST /split HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"))
    socket.sleep(0.05)
    assert(s:send("\r\nabc"))
    local r = assert(raw.read_response(s))
    s:close()
    assert.equal(200, r.status)
    assert.equal("abc", up:requests()[1].body)
  end)

  it("a response head in two pieces is parsed whole, and the connection is kept", function()
    up:script({ { raw = "HTTP/1.1 200 OK\r\nX-Up: 1\r\nContent-Le", later = "ngth: 5\r\n\r\nhello", later_delay = 0.1 }, OK })
    local s = raw.connect(gw.proxy_port)
    assert(s:send("GET /one HTTP/1.1\r\nHost: t\r\n\r\n"))
    local r1 = assert(raw.read_response(s))
    assert(s:send("GET /two HTTP/1.1\r\nHost: t\r\n\r\n"))
    local r2 = assert(raw.read_response(s))
    s:close()
    assert.same({ 200, "hello", "1" }, { r1.status, r1.body, r1.headers["x-up"] })
    assert.same({ 200, "ok" }, { r2.status, r2.body })
    local reqs = up:requests()
    assert.equal(2, #reqs)
    assert.equal(reqs[1].conn.id, reqs[2].conn.id)
  end)

  it("a response whose body comes in the same read as its head, then later", function()
    up:script({ { raw = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", later = "world", later_delay = 0.1 } })
    local s = raw.connect(gw.proxy_port)
    assert(s:send("GET /half HTTP/1.1\r\nHost: t\r\n\r\n"))
    local r = assert(raw.read_response(s))
    s:close()
    assert.equal(200, r.status)
    assert.equal("helloworld", r.body)
  end)

  it("a close-delimited response that ends with the FIN in the same segment arrives whole", function()
    for i = 1, 5 do
      up:script({ { raw = "HTTP/1.1 200 OK\r\n\r\nbody-" .. i, close = true } })
      local s = raw.connect(gw.proxy_port)
      assert(s:send("GET /fin HTTP/1.1\r\nHost: t\r\n\r\n"))
      local r = assert(raw.read_response(s))
      s:close()
      assert.equal(200, r.status)
      assert.equal("body-" .. i, r.body)
      assert.is_true(r.complete)
    end
  end)

  it("a response larger than one read (1 MiB) arrives byte for byte", function()
    local body = {}
    for i = 1, 1024 do body[i] = string.format("%08d", i) .. string.rep(string.char(97 + i % 26), 1015) .. "\n" end
    body = table.concat(body)
    up:script({ "HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body })
    local s = raw.connect(gw.proxy_port)
    s:settimeout(10)
    assert(s:send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n"))
    local r = assert(raw.read_response(s))
    s:close()
    assert.equal(200, r.status)
    assert.equal(#body, #r.body)
    assert.is_true(r.body == body)
  end)
end)
