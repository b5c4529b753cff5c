-- spec/02-integration/01-proxy_spec.lua — the proxy core end to end: a real gw in front of the
-- real mock upstream (spec/fixtures/mock_upstream.py), real sockets. Covers routing, the headers
-- gw adds and removes, query passing, upstream keep-alive, error mapping (502/504), failures after
-- the response head, retries, passive health checks and weighted balancing.
local helpers = require "spec.helpers"
local socket = require "socket"

local function echo_of(res)
  return assert(helpers.json_decode(res.body), "not JSON: " .. tostring(res and res.body))
end

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

describe("proxy: routing", function()
  local up, client

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "route" }
    local base = "http://127.0.0.1:" .. up[1]
    local function svc(name, path, routes)
      return { name = name, url = base .. path, routes = routes }
    end
    helpers.start_gw{ config = {
      services = {
        svc("short", "/short", { { name = "short", paths = { "/r" } } }),
        svc("long", "/long", { { name = "long", paths = { "/r/long" } } }),
        svc("longer", "/longer", { { name = "longer", paths = { "/r/long/er" } } }),
        svc("regex", "/regex", { { name = "regex", paths = { "~/users/\\d+$" }, strip_path = false } }),
        svc("regex-strip", "/rs", { { name = "regex-strip", paths = { "~/items/[a-z]+" } } }),
        svc("host-exact", "/host-exact", { { name = "host-exact", hosts = { "example.com" }, paths = { "/h" } } }),
        svc("host-wild", "/host-wild", { { name = "host-wild", hosts = { "*.example.org" }, paths = { "/h" } } }),
        svc("host-prefix", "/host-prefix", { { name = "host-prefix", hosts = { "api.*" }, paths = { "/h" } } }),
        svc("no-host", "/no-host", { { name = "no-host", paths = { "/h" } } }),
        svc("m-post", "/m-post", { { name = "m-post", paths = { "/m" }, methods = { "POST" } } }),
        svc("m-get", "/m-get", { { name = "m-get", paths = { "/m" }, methods = { "GET", "HEAD" } } }),
        svc("hdr-v2", "/hdr-v2", { { name = "hdr-v2", paths = { "/hdr" }, headers = { ["x-version"] = { "2", "2.1" } } } }),
        svc("hdr-any", "/hdr-any", { { name = "hdr-any", paths = { "/hdr" } } }),
        svc("keep", "/keep-svc", { { name = "keep", paths = { "/keep" }, strip_path = false } }),
        svc("strip", "", { { name = "strip", paths = { "/strip" } } }),
        svc("join", "/base", { { name = "join", paths = { "/join" } } }),
        svc("join-slash", "/base/", { { name = "join-slash", paths = { "/jslash" } } }),
        svc("ph", "", { { name = "ph", paths = { "/ph" }, preserve_host = true } }),
        svc("noph", "", { { name = "noph", paths = { "/noph" } } }),
      },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  local function path_for(method, path, headers)
    local res = assert(client:send{ method = method, path = path, headers = headers })
    assert.res_status(200, res)
    return echo_of(res).path, res
  end

  it("longest prefix wins", function()
    assert.equal("/short", path_for("GET", "/r"))
    assert.equal("/short/x", path_for("GET", "/r/x"))
    assert.equal("/long", path_for("GET", "/r/long"))
    assert.equal("/long/y", path_for("GET", "/r/long/y"))
    assert.equal("/longer/z", path_for("GET", "/r/long/er/z"))
  end)

  it("regex paths (~) take precedence over prefixes and can keep the path", function()
    assert.equal("/regex/users/42", path_for("GET", "/users/42"))
    -- anchored at the end: no match, and no other route covers /users
    local res = assert(client:get("/users/42/x"))
    assert.res_status(404, res)
    -- strip_path with a regex strips what the regex matched
    assert.equal("/rs/rest", path_for("GET", "/items/abc/rest"))
  end)

  it("matches hosts exactly, by *.suffix and by prefix.*, ignoring the port and case", function()
    assert.equal("/host-exact", path_for("GET", "/h", { Host = "example.com" }))
    assert.equal("/host-exact", path_for("GET", "/h", { Host = "EXAMPLE.com:8080" }))
    assert.equal("/host-wild", path_for("GET", "/h", { Host = "a.example.org" }))
    assert.equal("/host-wild", path_for("GET", "/h", { Host = "x.y.example.org" }))
    -- "*.example.org" does not cover the bare domain
    assert.equal("/no-host", path_for("GET", "/h", { Host = "example.org" }))
    assert.equal("/host-prefix", path_for("GET", "/h", { Host = "api.anything.net" }))
    assert.equal("/no-host", path_for("GET", "/h", { Host = "other.test" }))
  end)

  it("matches methods", function()
    assert.equal("/m-post", path_for("POST", "/m"))
    assert.equal("/m-get", path_for("GET", "/m"))
    local res = assert(client:send{ method = "PUT", path = "/m" })
    assert.res_status(404, res)
  end)

  it("matches header conditions (any listed value, case-insensitive)", function()
    assert.equal("/hdr-v2", path_for("GET", "/hdr", { ["X-Version"] = "2" }))
    assert.equal("/hdr-v2", path_for("GET", "/hdr", { ["x-version"] = "2.1" }))
    assert.equal("/hdr-any", path_for("GET", "/hdr", { ["X-Version"] = "3" }))
    assert.equal("/hdr-any", path_for("GET", "/hdr"))
  end)

  it("strip_path false keeps the matched prefix, after the service path", function()
    assert.equal("/keep-svc/keep/a", path_for("GET", "/keep/a"))
    assert.equal("/keep-svc/keep", path_for("GET", "/keep"))
  end)

  it("strip_path true removes the prefix; an empty rest becomes /", function()
    assert.equal("/a/b", path_for("GET", "/strip/a/b"))
    assert.equal("/", path_for("GET", "/strip"))
    assert.equal("/", path_for("GET", "/strip/"))
  end)

  it("joins the service path and the rest with exactly one slash", function()
    assert.equal("/base", path_for("GET", "/join"))
    assert.equal("/base/x", path_for("GET", "/join/x"))
    assert.equal("/base/x/y/", path_for("GET", "/join/x/y/"))
    assert.equal("/base/", path_for("GET", "/jslash"))
    assert.equal("/base/x", path_for("GET", "/jslash/x"))
  end)

  it("rewrites Host to the service's unless preserve_host", function()
    local _, res = path_for("GET", "/noph", { Host = "client.test" })
    assert.equal("127.0.0.1:" .. up[1], assert.request(res).has.header("host"))
    _, res = path_for("GET", "/ph", { Host = "client.test:1234" })
    assert.equal("client.test:1234", assert.request(res).has.header("host"))
  end)

  it("passes the query string through untouched", function()
    local res = assert(client:get("/strip/q?a=1&b=%20x&c&d=%C3%A9&e=a+b"))
    assert.res_status(200, res)
    local e = echo_of(res)
    assert.equal("/q", e.path)
    assert.equal("a=1&b=%20x&c&d=%C3%A9&e=a+b", e.query)
    -- an empty query (bare "?") is not invented into anything else
    res = assert(client:get("/strip/q2"))
    assert.equal("", echo_of(res).query)
  end)

  it("answers 404 with a JSON message when no route matches", function()
    local res = assert(client:get("/nothing/here"))
    assert.res_status(404, res)
    assert.truthy(res.headers["content-type"]:find("application/json", 1, true))
    local body = assert.jsonbody(res)
    assert.equal("no Route matched with those values", body.message)
    -- the connection is still usable
    res = assert(client:get("/strip/after"))
    assert.res_status(200, res)
  end)
end)

describe("proxy: header forwarding", function()
  local up, client, gw

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "hdrs" }
    gw = helpers.start_gw{ config = {
      services = { { name = "s", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/" } } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("removes hop-by-hop and Connection-listed request headers", function()
    local res = assert(client:get("/x", { headers = {
      Connection = "keep-alive, X-Drop-Me, x-drop-too",
      ["X-Drop-Me"] = "1", ["X-Drop-Too"] = "2", ["X-Keep"] = "3",
      ["Keep-Alive"] = "timeout=5", TE = "trailers", ["Proxy-Connection"] = "keep-alive",
    } }))
    assert.res_status(200, res)
    for _, name in ipairs({ "x-drop-me", "x-drop-too", "keep-alive", "te", "proxy-connection" }) do
      assert.request(res).has.no.header(name)
    end
    assert.equal("3", assert.request(res).has.header("x-keep"))
    local conn = echo_of(res).headers.connection
    assert.is_true(conn == nil or not tostring(conn):lower():find("drop", 1, true))
  end)

  it("appends the client address to X-Forwarded-For and sets X-Real-IP and X-Forwarded-*", function()
    local res = assert(client:get("/x", { headers = {
      Host = "front.test:9999", ["X-Forwarded-For"] = "1.2.3.4",
      ["X-Real-IP"] = "9.9.9.9", ["X-Forwarded-Proto"] = "https", ["X-Forwarded-Host"] = "evil",
      ["X-Forwarded-Port"] = "1",
    } }))
    assert.res_status(200, res)
    local h = echo_of(res).headers
    assert.equal("1.2.3.4, 127.0.0.1", h["x-forwarded-for"])
    assert.equal("127.0.0.1", h["x-real-ip"])
    assert.equal("http", h["x-forwarded-proto"])
    assert.equal("front.test", h["x-forwarded-host"])
    assert.equal(tostring(gw.proxy_port), h["x-forwarded-port"])
    assert.equal("127.0.0.1:" .. up[1], h["host"])
  end)

  it("keeps every earlier X-Forwarded-For hop when the header is repeated", function()
    local res = assert(client:get("/x", { headers = { ["X-Forwarded-For"] = { "1.1.1.1", "2.2.2.2, 3.3.3.3" } } }))
    assert.res_status(200, res)
    assert.equal("1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1", assert.request(res).has.header("x-forwarded-for"))
  end)

  it("sets X-Forwarded-For when the client sent none", function()
    local res = assert(client:get("/x"))
    assert.equal("127.0.0.1", assert.request(res).has.header("x-forwarded-for"))
  end)

  it("forwards end-to-end response headers, drops hop-by-hop and Connection-listed ones", function()
    local res = assert(client:get("/headers?set=X-Up:1&set=Keep-Alive:timeout%3D9" ..
      "&set=Connection:X-Secret&set=X-Secret:s&set=Proxy-Connection:x&set=Upgrade:h2c"))
    assert.res_status(200, res)
    assert.equal("1", res.headers["x-up"])
    assert.is_nil(res.headers["keep-alive"])
    assert.is_nil(res.headers["x-secret"])
    assert.is_nil(res.headers["proxy-connection"])
    assert.is_nil(res.headers["upgrade"])
    assert.is_nil(res.headers["connection"])
    -- the connection is still fine for the next request
    res = assert(client:get("/x"))
    assert.res_status(200, res)
  end)

  it("passes a request body with Content-Length", function()
    local res = assert(client:post("/x", { body = "hello=world", headers = { ["Content-Type"] = "text/plain" } }))
    assert.res_status(200, res)
    local e = echo_of(res)
    assert.equal("hello=world", e.body)
    assert.equal("11", e.headers["content-length"])
  end)
end)

describe("proxy: upstream keep-alive", function()
  local up

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "ka" }
    helpers.start_gw{ config = {
      services = { { name = "s", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/" } } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  it("reuses upstream connections across requests and client connections", function()
    helpers.mock_stats(up[1], true)
    local client = helpers.proxy_client()
    for i = 1, 25 do
      local res = assert(client:get("/ka/" .. i))
      assert.res_status(200, res)
    end
    client:close()
    for i = 1, 25 do
      client = helpers.proxy_client()
      local res = assert(client:post("/ka/" .. i, { body = "x" }))
      assert.res_status(200, res)
      client:close()
    end
    local stats = helpers.mock_stats(up[1])
    -- the stats request itself is one connection and one request
    assert.equal(51, stats.requests)
    assert.is_true(stats.connections - 1 <= 2, "upstream connections: " .. (stats.connections - 1))
  end)

  it("does not reuse a connection the upstream closed (Connection: close)", function()
    local client = helpers.proxy_client()
    for _ = 1, 5 do
      local res = assert(client:get("/close"))
      assert.res_status(200, res)
      res = assert(client:get("/after-close"))
      assert.res_status(200, res)
    end
    client:close()
  end)
end)

describe("proxy: upstream keep-alive limits", function()
  local up

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "kalim" }
    helpers.start_gw{ config = {
      gw = { upstream_keepalive = { idle_timeout = 300, max_requests = 3, max_idle = 2 } },
      services = { { name = "s", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/" } } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  it("max_requests: a connection serves at most that many requests", function()
    local client = helpers.proxy_client()
    local per_conn = {}
    for _ = 1, 9 do
      local e = echo_of(assert(client:get("/mr")))
      per_conn[e.connection_id] = math.max(per_conn[e.connection_id] or 0, e.request_no_on_connection)
    end
    client:close()
    local n = 0
    for _, max in pairs(per_conn) do
      n = n + 1
      assert.is_true(max <= 3, "a connection served " .. max .. " requests")
    end
    assert.equal(3, n)
  end)

  it("idle_timeout: an idle pooled connection is closed", function()
    local client = helpers.proxy_client()
    local e1 = echo_of(assert(client:get("/it")))
    socket.sleep(0.6)
    local e2 = echo_of(assert(client:get("/it")))
    client:close()
    assert.not_equal(e1.connection_id, e2.connection_id)
    helpers.wait_until(function() return helpers.mock_stats(up[1]).active <= 2 end, 3)
  end)

  it("serves concurrent requests in parallel, then keeps at most max_idle connections", function()
    local clients = {}
    local t0 = socket.gettime()
    for i = 1, 10 do
      clients[i] = helpers.proxy_client()
      assert(clients[i]:raw("GET /delay/300 HTTP/1.1\r\nHost: t\r\n\r\n"))
    end
    for i = 1, 10 do
      assert.res_status(200, assert(clients[i]:read_response()))
      clients[i]:close()
    end
    local dt = socket.gettime() - t0
    -- one after another they would take 3 s
    assert.is_true(dt < 2.5, "10 concurrent 300 ms requests took " .. dt .. " s")
    -- the 10 upstream connections shrink to max_idle (2) kept in the pool
    helpers.wait_until(function() return helpers.mock_stats(up[1]).active <= 3 end, 3)
  end)
end)

describe("proxy: upstream failures", function()
  local up, closed_port, client

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "fail" }
    closed_port = helpers.get_free_port()
    local base = "http://127.0.0.1:" .. up[1]
    helpers.start_gw{ config = {
      services = {
        { name = "refused", url = "http://127.0.0.1:" .. closed_port, retries = 2,
          routes = { { paths = { "/refused" } } } },
        { name = "ok", url = base, read_timeout = 300, routes = { { paths = { "/" } } } },
      },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("answers 502 when the upstream refuses the connection", function()
    local t0 = socket.gettime()
    local res = assert(client:get("/refused"))
    assert.res_status(502, res)
    assert.truthy(res.headers["content-type"]:find("json", 1, true))
    assert.is_true(socket.gettime() - t0 < 2)
    -- the client connection stays usable
    res = assert(client:get("/fine"))
    assert.res_status(200, res)
  end)

  it("tries a refused target 1 + retries times", function()
    helpers.clean_gw_log()
    local res = assert(client:get("/refused"))
    assert.res_status(502, res)
    assert.logfile().has.line("connect failed (try 3)", true)
    assert.equal(3, count(helpers.gw_log(), "connect failed"))
  end)

  it("answers 502 when the upstream resets the connection", function()
    for _ = 1, 3 do
      local res = assert(client:get("/reset"))
      assert.res_status(502, res)
    end
    local res = assert(client:get("/fine"))
    assert.res_status(200, res)
  end)

  it("answers 504 when the upstream does not answer within read_timeout", function()
    local t0 = socket.gettime()
    local res = assert(client:get("/hang"))
    local dt = socket.gettime() - t0
    assert.res_status(504, res)
    assert.is_true(dt >= 0.25 and dt < 2, "took " .. dt)
    res = assert(client:get("/fine"))
    assert.res_status(200, res)
  end)

  it("closes the upstream connection of a request whose client went away", function()
    local before = helpers.mock_stats(up[1]).active
    for _ = 1, 5 do
      local c = helpers.proxy_client()
      assert(c:raw("GET /hang HTTP/1.1\r\nHost: t\r\n\r\n"))
      socket.sleep(0.05)
      c:close()
    end
    -- each /hang holds its upstream connection until gw lets go of it
    helpers.wait_until(function() return helpers.mock_stats(up[1]).active <= before end, 3)
  end)

  it("answers 200 when the upstream answers within read_timeout", function()
    local res = assert(client:get("/delay/100"))
    assert.res_status(200, res)
  end)

  it("aborts the client connection when the upstream fails after the response head", function()
    for _ = 1, 3 do
      local c = helpers.proxy_client()
      local res, err = c:get("/reset-after-head")
      assert.is_nil(res, "got a clean response for a truncated upstream body")
      assert.truthy(err)
      c:close()
    end
    local res = assert(client:get("/fine"))
    assert.res_status(200, res)
  end)
end)

describe("proxy: connect timeout", function()
  local server, fillers = nil, {}

  lazy_setup(function()
    -- A listener with backlog 0 that never accepts: once its accept queue holds a connection,
    -- the kernel drops further SYNs, so a connect neither succeeds nor fails until it times out.
    server = assert(socket.tcp())
    assert(server:bind("127.0.0.1", 0))
    assert(server:listen(0))
    local _, port = server:getsockname()
    for _ = 1, 3 do
      local c = socket.tcp()
      c:settimeout(0.2)
      c:connect("127.0.0.1", port)
      fillers[#fillers + 1] = c
    end
    helpers.start_gw{ config = {
      services = {
        { name = "blackhole", url = "http://127.0.0.1:" .. port, connect_timeout = 300, retries = 0,
          routes = { { paths = { "/x" } } } },
        { name = "blackhole-slow", url = "http://127.0.0.1:" .. port, connect_timeout = 3000, retries = 0,
          routes = { { paths = { "/up" } } } },
      },
    } }
  end)
  lazy_teardown(function()
    helpers.stop_all()
    for _, c in ipairs(fillers) do c:close() end
    if server then server:close() end
  end)

  it("answers 504 when connecting to the upstream times out", function()
    -- make sure the trick works on this kernel: a plain connect must hang too
    local probe = socket.tcp()
    probe:settimeout(0.3)
    local _, server_port = server:getsockname()
    local ok, perr = probe:connect("127.0.0.1", server_port)
    probe:close()
    if ok or perr ~= "timeout" then
      pending("a full accept queue does not make connect() hang here (" .. tostring(perr) .. ")")
      return
    end
    local client = helpers.proxy_client()
    local t0 = socket.gettime()
    local res = assert(client:get("/x"))
    local dt = socket.gettime() - t0
    client:close()
    assert.res_status(504, res)
    assert.is_true(dt >= 0.25 and dt < 2, "took " .. dt)
  end)

  it("does not buffer a request body without bound while connecting", function()
    local _, server_port = server:getsockname()
    local probe = socket.tcp()
    probe:settimeout(0.3)
    local ok = probe:connect("127.0.0.1", server_port)
    probe:close()
    if ok then pending("a full accept queue does not make connect() hang here") return end
    local pid = helpers.gw_worker_pids()[1]
    local function rss()
      return tonumber((helpers.read_file("/proc/" .. pid .. "/status") or ""):match("VmRSS:%s*(%d+)")) or 0
    end
    local client = helpers.proxy_client()
    local size = 90 * 1024 * 1024  -- under the default max_body_size (100m)
    assert(client:raw("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: " .. size .. "\r\n\r\n"))
    local block = string.rep("x", 65536)
    local sent, max_rss = 0, rss()
    client.sock:settimeout(0.2)
    while sent < size do
      local n, err, partial = client.sock:send(block)
      sent = sent + (n or partial or 0)
      max_rss = math.max(max_rss, rss())
      if not n then break end   -- gw stopped reading (or answered and closed)
    end
    max_rss = math.max(max_rss, rss())
    client:close()
    assert.is_true(sent < size, "gw read the whole 90 MiB body while the upstream was not even connected")
    assert.is_true(max_rss < 64 * 1024, "worker RSS reached " .. max_rss .. " kB")
  end)
end)

describe("proxy: balancing", function()
  local up, closed_port, closed2, gw

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "lb", ports = 2 }
    closed_port = helpers.get_free_port()
    closed2 = helpers.get_free_port()
    gw = helpers.start_gw{ config = {
      gw = { log_level = "info" },
      upstreams = {
        { name = "weighted", targets = { { target = "127.0.0.1:" .. up[1], weight = 300 },
                                         { target = "127.0.0.1:" .. up[2], weight = 100 } } },
        { name = "half-dead", targets = { { target = "127.0.0.1:" .. up[1] },
                                          { target = "127.0.0.1:" .. closed_port } } },
        { name = "health", targets = { { target = "127.0.0.1:" .. up[2] },
                                       { target = "127.0.0.1:" .. closed_port } },
          healthchecks = { passive = { failures = 2, cooldown = 30 } } },
        { name = "short-cool", targets = { { target = "127.0.0.1:" .. up[2] },
                                           { target = "127.0.0.1:" .. closed2 } },
          healthchecks = { passive = { failures = 1, cooldown = 1 } } },
        { name = "all-dead", targets = { { target = "127.0.0.1:" .. closed_port },
                                         { target = "127.0.0.1:" .. closed2 } },
          healthchecks = { passive = { failures = 1, cooldown = 30 } } },
      },
      services = {
        { name = "w", host = "weighted", port = 80, protocol = "http", routes = { { paths = { "/w" } } } },
        { name = "hd", host = "half-dead", port = 80, protocol = "http", retries = 3,
          routes = { { paths = { "/hd" } } } },
        { name = "hc", host = "health", port = 80, protocol = "http", retries = 3,
          routes = { { paths = { "/hc" } } } },
        { name = "sc", host = "short-cool", port = 8080, protocol = "http", retries = 3,
          routes = { { paths = { "/sc" } } } },
        { name = "ad", host = "all-dead", port = 8080, protocol = "http", retries = 3,
          routes = { { paths = { "/ad" } } } },
      },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  it("distributes by weight (3:1 over 40 requests)", function()
    local client = helpers.proxy_client()
    local seen = {}
    for _ = 1, 40 do
      local res = assert(client:get("/w"))
      assert.res_status(200, res)
      local p = echo_of(res).port
      seen[p] = (seen[p] or 0) + 1
    end
    client:close()
    assert.equal(30, seen[up[1]] or 0)
    assert.equal(10, seen[up[2]] or 0)
  end)

  it("sends the upstream name as Host for a balanced service", function()
    local client = helpers.proxy_client()
    local res = assert(client:get("/w"))
    client:close()
    assert.res_status(200, res)
    assert.equal("weighted", assert.request(res).has.header("host"))
  end)

  it("retries a refused connect on the other target: every request succeeds", function()
    local client = helpers.proxy_client()
    for i = 1, 20 do
      local res = assert(client:post("/hd", { body = "n=" .. i }))
      assert.res_status(200, res)
      assert.equal("n=" .. i, echo_of(res).body)
    end
    client:close()
  end)

  it("skips a target marked down by passive health checks during its cooldown", function()
    helpers.clean_gw_log()
    local client = helpers.proxy_client()
    for _ = 1, 30 do
      local res = assert(client:get("/hc"))
      assert.res_status(200, res)
    end
    client:close()
    assert.logfile().has.line("marked down", true)
    local log = helpers.gw_log()
    local tries = count(log, "127%.0%.0%.1:" .. closed_port .. " connect failed")
    -- without health checks about half of the 30 requests would try the dead target first
    assert.is_true(tries >= 2 and tries <= 3, "connect attempts to the dead target: " .. tries .. "\n" .. log)
  end)

  it("tries a target again once its cooldown is over", function()
    helpers.clean_gw_log()
    local client = helpers.proxy_client()
    local function run(n)
      for _ = 1, n do assert.res_status(200, assert(client:get("/sc"))) end
      return count(helpers.gw_log(), "127%.0%.0%.1:" .. closed2 .. " connect failed")
    end
    assert.equal(1, run(10))
    socket.sleep(1.2)
    assert.equal(2, run(10))
    client:close()
  end)

  it("503 when every target is cooling down", function()
    local client = helpers.proxy_client()
    local res = assert(client:get("/ad"))
    assert.is_true(res.status == 502 or res.status == 503, "status " .. res.status)
    res = assert(client:get("/ad"))
    assert.res_status(503, res)
    client:close()
  end)

  it("sends the service port with the upstream name when it is not 80", function()
    local client = helpers.proxy_client()
    local res = assert(client:get("/sc"))
    client:close()
    assert.equal("short-cool:8080", assert.request(res).has.header("host"))
  end)
end)

describe("proxy: gw.service from a plugin", function()
  local up, client

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "plug" }
    local dir = helpers.tmpdir("plugins")
    assert(os.execute("mkdir -p " .. dir .. "/set-path") == 0 or true)
    helpers.write_file(dir .. "/set-path/handler.lua", [[
      return { PRIORITY = 10, VERSION = "1.0.0",
        access = function(self, conf) gw.service.request.set_path(conf.path) end }
    ]])
    helpers.write_file(dir .. "/set-path/schema.lua", [[
      return { name = "set-path", fields = { { path = { type = "string", required = true } } } }
    ]])
    helpers.start_gw{ config = {
      gw = { plugins_path = { dir } },
      services = {
        { name = "s", url = "http://127.0.0.1:" .. up[1] .. "/svc/base",
          routes = { { paths = { "/sp" }, plugins = { { name = "set-path", config = { path = "/exact/path" } } } },
                     { paths = { "/plain" } } } },
      },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("set_path replaces the whole upstream path (service path included), query kept", function()
    local res = assert(client:get("/sp/ignored?k=v"))
    assert.res_status(200, res)
    local e = echo_of(res)
    assert.equal("/exact/path", e.path)
    assert.equal("k=v", e.query)
  end)

  it("without it the service url path is prefixed", function()
    local res = assert(client:get("/plain/x?k=v"))
    assert.res_status(200, res)
    assert.equal("/svc/base/x", echo_of(res).path)
  end)
end)

-- A scripted upstream for behaviour the well-mannered mock never shows: each path answers with
-- fixed bytes. Every response carries X-Conn (connection number) and X-Req (request number on it).
local RAW_UPSTREAM = [=[
import asyncio, ssl, sys
port = int(sys.argv[1])
conns = 0
sni = {}
tls = None
if len(sys.argv) > 3:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[2], sys.argv[3])
    def on_sni(obj, name, ctx):
        sni[id(obj)] = name
    tls.sni_callback = on_sni

def resp(conn, req, status="200 OK", headers=(), body=b"ok", cl=True):
    h = ["HTTP/1.1 " + status, "X-Conn: %d" % conn, "X-Req: %d" % req]
    h += list(headers)
    if cl:
        h.append("Content-Length: %d" % len(body))
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body

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
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1].split("?")[0]
            cl = 0
            for l in lines[1:]:
                if l.lower().startswith("content-length:"):
                    cl = int(l.split(":", 1)[1])
            if path == "/early-big":
                writer.write(resp(conn, nreq, headers=["Connection: close"], body=b"E" * 2097152))
                await writer.drain()
                left = cl
                while left > 0:
                    d = await reader.read(min(left, 65536))
                    if not d:
                        break
                    left -= len(d)
                return
            if path == "/early":
                writer.write(resp(conn, nreq, "413 Payload Too Large", ["Connection: close"], b"early"))
                await writer.drain()
                left = cl
                while left > 0:
                    d = await reader.read(min(left, 65536))
                    if not d:
                        break
                    left -= len(d)
                return
            body = await reader.readexactly(cl) if cl else b""
            if path == "/big-head":
                writer.write(resp(conn, nreq, headers=["X-Big: " + "a" * 40000]))
            elif path == "/cl-te":
                writer.write(resp(conn, nreq, headers=["Transfer-Encoding: chunked", "Content-Length: 5"],
                                  body=b"0\r\n\r\n", cl=False))
            elif path == "/bad-status":
                writer.write(b"HTTP/1.1 2xx Whatever\r\nContent-Length: 0\r\n\r\n")
            elif path == "/bad-chunk":
                writer.write(resp(conn, nreq, headers=["Transfer-Encoding: chunked"],
                                  body=b"5\r\nhello\r\nzz\r\n", cl=False))
                await writer.drain()
                await asyncio.sleep(5)
                return
            elif path == "/stale":
                if nreq >= 2:
                    return          # an idle keep-alive connection closed just as a request came
                writer.write(resp(conn, nreq))
            elif path == "/extra":
                writer.write(resp(conn, nreq) + b"GARBAGE")
            elif path == "/interim":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" +
                             resp(conn, nreq))
            elif path == "/http10":
                writer.write(b"HTTP/1.0 200 OK\r\nX-Conn: %d\r\nContent-Length: 2\r\n\r\nok" % conn)
            elif path == "/split-head":
                r = resp(conn, nreq, headers=["X-Split: yes"])
                for i in range(0, len(r), 7):
                    writer.write(r[i:i + 7])
                    await writer.drain()
                    await asyncio.sleep(0.005)
            elif path == "/sni":
                obj = writer.get_extra_info("ssl_object")
                name = "plain" if obj is None else (sni.get(id(obj)) or "none")
                writer.write(resp(conn, nreq, body=name.encode()))
            elif path == "/big":
                writer.write(resp(conn, nreq, body=b"0123456789abcdef" * 65536))
            elif path == "/body":
                writer.write(resp(conn, nreq, body=b"%d" % len(body)))
            else:
                writer.write(resp(conn, nreq))
            await writer.drain()
            if path == "/http10":
                return
    finally:
        writer.close()

async def main():
    await asyncio.start_server(handle, "127.0.0.1", port, ssl=tls)
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
]=]

describe("proxy: misbehaving upstreams", function()
  local port, client, proc

  lazy_setup(function()
    local dir = helpers.tmpdir("rawup")
    helpers.write_file(dir .. "/raw_upstream.py", RAW_UPSTREAM)
    port = helpers.get_free_port()
    proc = helpers.spawn{ kind = "rawup", marker = "raw_upstream.py",
      cmd = "python3 " .. dir .. "/raw_upstream.py " .. port }
    helpers.wait_until(function() return helpers.port_open(port) end, 10)
    helpers.start_gw{ config = {
      services = { { name = "raw", url = "http://127.0.0.1:" .. port, read_timeout = 2000,
                     routes = { { paths = { "/" } } } } },
    } }
  end)
  lazy_teardown(function()
    helpers.stop_all()
    helpers.stop_process(proc)
  end)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("502 for a response head over the header size limit", function()
    local res = assert(client:get("/big-head"))
    assert.res_status(502, res)
    assert.res_status(200, assert(client:get("/ok")))
  end)

  it("502 for Content-Length together with Transfer-Encoding", function()
    assert.res_status(502, assert(client:get("/cl-te")))
    assert.res_status(200, assert(client:get("/ok")))
  end)

  it("502 for a malformed status line", function()
    assert.res_status(502, assert(client:get("/bad-status")))
    assert.res_status(200, assert(client:get("/ok")))
  end)

  it("aborts the client connection on a malformed chunked body after the head", function()
    local res, err = client:get("/bad-chunk")
    assert.is_nil(res, "a broken upstream body reached the client as a clean response")
    assert.truthy(err)
  end)

  it("replays an idempotent request when a pooled connection turns out closed", function()
    local res = assert(client:get("/stale"))
    assert.res_status(200, res)
    local conn1 = res.headers["x-conn"]
    res = assert(client:get("/stale"))
    assert.res_status(200, res)
    assert.not_equal(conn1, res.headers["x-conn"])
    assert.equal("1", res.headers["x-req"])
  end)

  it("never pools a connection that sent more than its Content-Length", function()
    local res = assert(client:get("/extra"))
    assert.res_status(200, res)
    assert.equal("ok", res.body)
    local conn1 = res.headers["x-conn"]
    res = assert(client:get("/ok"))
    assert.res_status(200, res)
    assert.equal("ok", res.body)
    assert.not_equal(conn1, res.headers["x-conn"])
  end)

  it("skips interim 1xx responses from the upstream", function()
    local res = assert(client:get("/interim"))
    assert.res_status(200, res)
    assert.equal("ok", res.body)
    assert.same({}, res.informational)
  end)

  it("does not pool an HTTP/1.0 upstream connection without keep-alive", function()
    local res = assert(client:get("/http10"))
    assert.res_status(200, res)
    local conn1 = res.headers["x-conn"]
    res = assert(client:get("/http10"))
    assert.res_status(200, res)
    assert.not_equal(conn1, res.headers["x-conn"])
  end)

  it("parses a response head that arrives in small pieces", function()
    local res = assert(client:get("/split-head"))
    assert.res_status(200, res)
    assert.equal("yes", res.headers["x-split"])
    assert.equal("ok", res.body)
  end)

  it("forwards an early upstream response and closes the client connection", function()
    local body = string.rep("e", 200000)
    local res, err = client:post("/early", { body = body })
    assert(res, err)
    assert.res_status(413, res)
    assert.equal("early", res.body)
  end)

  it("delivers a whole early response to a client that is still sending (lingering close)", function()
    -- the upstream answers 2 MiB before reading the 64 MiB upload; the client reads slowly while
    -- it keeps sending. When gw closes, what it already wrote must still arrive: closing with
    -- unread input makes the kernel reset the connection and drop unsent response bytes.
    local s = assert(socket.tcp())
    s:settimeout(5)
    assert(s:connect("127.0.0.1", helpers.gw_info().proxy_port))
    assert(s:send("POST /early-big HTTP/1.1\r\nHost: t\r\nContent-Length: 67108864\r\n\r\n"))
    s:settimeout(0)
    local block = string.rep("u", 16384)
    local got, parts, err = 0, {}, nil
    local deadline = socket.gettime() + 20
    while socket.gettime() < deadline do
      s:send(block)
      local d, rerr, partial = s:receive(8192)
      d = d or partial
      if d and #d > 0 then got = got + #d; parts[#parts + 1] = d end
      if rerr and rerr ~= "timeout" then err = rerr break end
      socket.sleep(0.002)
    end
    s:close()
    local raw = table.concat(parts)
    local head = raw:match("^(.-\r\n\r\n)") or ""
    assert.truthy(head:find("200 OK", 1, true), raw:sub(1, 200))
    assert.equal("closed", err)
    assert.equal(2097152, #raw - #head)
  end)

  it("does not time out a slow upload against read_timeout while the body is still coming", function()
    -- read_timeout (2 s) is about waiting for the response: a body that takes longer to arrive
    -- than that must not turn into a 504
    assert(client:raw("POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nab"))
    socket.sleep(1.2)
    assert(client:raw("cd"))
    socket.sleep(1.2)
    assert(client:raw("ef"))
    local res = assert(client:read_response())
    assert.res_status(200, res)
    assert.equal("6", res.body)
  end)
end)

describe("proxy: the echo service", function()
  local client

  lazy_setup(function()
    helpers.start_gw{ config = {
      gw = { limits = { max_body_size = "1k" } },
      services = { { name = "echo", url = "echo://", routes = { { name = "er", paths = { "/e" } } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("answers with the request as JSON", function()
    local res = assert(client:post("/e/x?a=1", { body = "b\"ody\n", headers = { ["X-T"] = "v" } }))
    assert.res_status(200, res)
    local e = echo_of(res)
    assert.equal("POST", e.method)
    assert.equal("/x", e.path)
    assert.equal("a=1", e.query)
    assert.equal("echo", e.service)
    assert.equal("er", e.route)
    assert.equal("v", e.headers["x-t"])
    assert.equal("b\"ody\n", e.body)
    assert.equal(6, e.body_size)
    assert.equal("127.0.0.1", e.client_ip)
  end)

  it("reads a chunked body, then keeps the connection", function()
    local res = assert(client:post("/e", { chunks = { "ab", "cd" } }))
    assert.equal("abcd", echo_of(res).body)
    res = assert(client:get("/e/again"))
    assert.equal("/again", echo_of(res).path)
  end)

  it("413 for a chunked body over max_body_size", function()
    local res = assert(client:post("/e", { chunks = { string.rep("a", 800), string.rep("b", 800) } }))
    assert.res_status(413, res)
  end)
end)

describe("proxy: https upstreams", function()
  local port, client, proc, plain_up

  lazy_setup(function()
    local dir = helpers.tmpdir("tlsup")
    helpers.write_file(dir .. "/raw_upstream.py", RAW_UPSTREAM)
    local rc, out = helpers.execute("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost " ..
      "-keyout " .. dir .. "/key.pem -out " .. dir .. "/cert.pem")
    assert(rc == 0, out)
    plain_up = helpers.start_mock_upstream{ name = "plain-for-tls" }
    port = helpers.get_free_port()
    proc = helpers.spawn{ kind = "tlsup", marker = "raw_upstream.py",
      cmd = "python3 " .. dir .. "/raw_upstream.py " .. port .. " " .. dir .. "/cert.pem " .. dir .. "/key.pem" }
    helpers.wait_until(function() return helpers.port_open(port) end, 10)
    -- a self-signed upstream: certificate verification (tls_verify) is spec'd in 23-tls-upstream
    helpers.start_gw{ config = {
      upstreams = { { name = "tls-pool", targets = { { target = "127.0.0.1:" .. port } } } },
      services = {
        { name = "tls-name", url = "https://localhost:" .. port, tls_verify = false, routes = { { paths = { "/name" } } } },
        { name = "tls-ip", url = "https://127.0.0.1:" .. port, tls_verify = false, routes = { { paths = { "/ip" } } } },
        { name = "tls-ups", protocol = "https", host = "tls-pool", port = 443, tls_verify = false,
          routes = { { paths = { "/ups" } } } },
        { name = "plain", url = "http://127.0.0.1:" .. port, read_timeout = 1000, retries = 0,
          routes = { { paths = { "/plain" } } } },
        { name = "tls-to-plain", url = "https://127.0.0.1:" .. plain_up[1], retries = 1, tls_verify = false,
          routes = { { paths = { "/tls-to-plain" } } } },
      },
    } }
  end)
  lazy_teardown(function()
    helpers.stop_all()
    helpers.stop_process(proc)
  end)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("speaks TLS to an https service, with SNI from the service host", function()
    local res = assert(client:get("/name/sni"))
    assert.res_status(200, res)
    assert.equal("localhost", res.body)
  end)

  it("sends no SNI for an IP address", function()
    local res = assert(client:get("/ip/sni"))
    assert.res_status(200, res)
    assert.equal("none", res.body)
  end)

  it("balances over an upstream's targets with TLS", function()
    local res = assert(client:get("/ups/sni"))
    assert.res_status(200, res)
  end)

  it("reuses TLS connections", function()
    local r1 = assert(client:get("/name/sni"))
    local r2 = assert(client:get("/name/sni"))
    assert.equal(r1.headers["x-conn"], r2.headers["x-conn"])
    assert.equal(tonumber(r1.headers["x-req"]) + 1, tonumber(r2.headers["x-req"]))
  end)

  it("streams a large body both ways over TLS", function()
    local res = assert(client:get("/name/big"))
    assert.res_status(200, res)
    assert.equal(16 * 65536, #res.body)
    local body = string.rep("b", 3 * 1024 * 1024 + 7)
    res = assert(client:post("/name/body", { body = body }))
    assert.res_status(200, res)
    assert.equal(tostring(#body), res.body)
  end)

  it("does not pool TLS and plain connections together", function()
    assert.res_status(200, assert(client:get("/ip/sni")))
    local res = assert(client:get("/plain/sni"))
    -- plain HTTP to a TLS port: the upstream cannot answer it
    assert.is_true(res.status == 502 or res.status == 504, "status " .. res.status)
    assert.equal("none", assert(client:get("/ip/sni")).body)
  end)

  it("502 when the TLS handshake fails (https to a plain HTTP server)", function()
    local t0 = socket.gettime()
    local res = assert(client:get("/tls-to-plain/x"))
    assert.res_status(502, res)
    assert.is_true(socket.gettime() - t0 < 2)
    assert.res_status(200, assert(client:get("/name/sni")))
  end)
end)
