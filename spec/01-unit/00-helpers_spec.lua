-- spec/01-unit/00-helpers_spec.lua — the test infrastructure itself: spec/helpers.lua (client,
-- assertions, process management, config helpers) against the spec/fixtures servers alone (no gw
-- process needed).
local helpers = require "spec.helpers"

local function elapsed(fn)
  local t0 = require("socket").gettime()
  local a, b, c = fn()
  return require("socket").gettime() - t0, a, b, c
end

describe("helpers + mock upstream", function()
  local ports, proc, client

  lazy_setup(function()
    ports, proc = helpers.start_mock_upstream{ name = "m1", ports = 2 }
  end)

  lazy_teardown(function()
    helpers.stop_all()
  end)

  before_each(function()
    client = helpers.http_client("127.0.0.1", ports[1])
  end)

  after_each(function()
    client:close()
  end)

  it("starts on the requested number of ports", function()
    assert.equal(2, #ports)
    assert.not_equal(ports[1], ports[2])
    assert.is_true(helpers.pid_alive(proc.pid))
    assert.is_true(helpers.port_open(ports[2]))
  end)

  it("echoes the request", function()
    local res = client:get("/a/b?x=1&y=%20", { headers = { ["X-Foo"] = "bar", ["X-Multi"] = { "1", "2" } } })
    local body = assert.res_status(200, res)
    assert.truthy(body:find('"method"', 1, true))
    local echo = assert.jsonbody(res)
    assert.equal("GET", echo.method)
    assert.equal("/a/b", echo.path)
    assert.equal("x=1&y=%20", echo.query)
    assert.equal("/a/b?x=1&y=%20", echo.uri)
    assert.equal("m1", echo.upstream)
    assert.equal(ports[1], echo.port)
    assert.equal("", echo.body)
    assert.equal("bar", assert.request(res).has.header("x-foo"))
    assert.equal("bar", assert.request(res).has.header("X-FOO"))
    assert.same({ "1", "2" }, assert.request(res).has.header("x-multi"))
    assert.equal("127.0.0.1:" .. ports[1], assert.request(res).has.header("host"))
    assert.equal("1", assert.request(res).has.queryparam("x"))
    assert.equal(" ", assert.request(res).has.queryparam("y"))
    assert.request(res).has.no.header("x-absent")
    assert.equal("application/json", assert.response(res).has.header("Content-Type"))
    assert.equal("application/json", res.headers["content-type"])
    assert.equal(res.headers["CONTENT-TYPE"], res.headers["content-type"])
    assert.response(res).has.no.header("x-absent")
    assert.equal(body, assert.response(res).has.status(200))
    assert.equal(body, res:read_body())
  end)

  it("answers on every port with its own port number", function()
    local c2 = helpers.http_client("127.0.0.1", ports[2])
    local echo = assert.jsonbody(c2:get("/"))
    c2:close()
    assert.equal(ports[2], echo.port)
  end)

  it("keeps the connection alive across requests", function()
    local a = assert.jsonbody(client:get("/one"))
    local b = assert.jsonbody(client:get("/two"))
    assert.equal(a.connection_id, b.connection_id)
    assert.equal(1, a.request_no_on_connection)
    assert.equal(2, b.request_no_on_connection)
    assert.equal(1, client.connections)
  end)

  it("sends Content-Length bodies, JSON and form tables", function()
    local echo = assert.jsonbody(client:post("/p", { body = "hello world" }))
    assert.equal("hello world", echo.body)
    assert.equal(11, echo.body_size)
    assert.equal("11", echo.headers["content-length"])

    local res = client:post("/p", { body = { a = 1, list = { "x" } } })
    assert.equal("application/json", assert.request(res).has.header("content-type"))
    assert.same({ a = 1, list = { "x" } }, assert.request(res).has.jsonbody())

    echo = assert.jsonbody(client:post("/p", {
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }, body = { b = "2 3", a = "1" } }))
    assert.equal("a=1&b=2%203", echo.body)
  end)

  it("sends chunked request bodies", function()
    local res = client:post("/c", { chunks = { "hel", "", "lo ", "world" } })
    local echo = assert.jsonbody(res)
    assert.equal("hello world", echo.body)
    assert.equal(11, echo.body_size)
    assert.equal("chunked", echo.headers["transfer-encoding"])
    assert.is_nil(echo.headers["content-length"])

    -- a generator function is sent chunked too
    local n = 0
    echo = assert.jsonbody(client:put("/c", { body = function()
      n = n + 1
      if n <= 3 then return string.rep("z", 1000) end
    end }))
    assert.equal(3000, echo.body_size)
    assert.equal("PUT", echo.method)
  end)

  it("parses chunked request trailers on the upstream side", function()
    assert.truthy(client:raw("POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
      "5;ext=1\r\nhello\r\n0\r\nX-Trailer: yes\r\n\r\n"))
    local echo = assert.jsonbody(client:read_response())
    assert.equal("hello", echo.body)
    assert.equal("yes", echo.trailers["x-trailer"])
  end)

  it("/bytes/N returns N bytes with Content-Length", function()
    local res = client:get("/bytes/200000")
    local body = assert.res_status(200, res)
    assert.equal(200000, #body)
    assert.equal("200000", res.headers["content-length"])
    assert.equal("0123456789", body:sub(1, 10))
    -- large bodies can be counted without buffering them
    res = client:get("/bytes/50000000", { discard_body = true })
    assert.res_status(200, res)
    assert.equal(50000000, res.body_size)
    assert.equal("", res.body)
    -- the connection is still usable afterwards
    assert.res_status(200, client:get("/bytes/0"))
  end)

  it("/bytes-chunked/N streams N bytes chunked", function()
    local got, pieces = 0, 0
    local res = client:get("/bytes-chunked/300000", { body_handler = function(d)
      got = got + #d
      pieces = pieces + 1
    end })
    assert.res_status(200, res)
    assert.equal("chunked", res.headers["transfer-encoding"])
    assert.is_nil(res.headers["content-length"])
    assert.equal(300000, got)
    assert.equal(300000, res.body_size)
    assert.truthy(pieces >= 5)
  end)

  it("/chunked/N answers in N chunks", function()
    local res = client:get("/chunked/4")
    assert.res_status(200, res)
    assert.equal("chunked", res.headers["transfer-encoding"])
    local echo = assert.jsonbody(res)
    assert.equal(4, echo.chunks)
    assert.equal("/chunked/4", echo.path)
  end)

  it("/status/NNN answers that status", function()
    local res = client:get("/status/404")
    local body = assert.res_status(404, res)
    assert.equal(404, helpers.json_decode(body).status)
    assert.equal("Not Found", res.reason)
    res = client:get("/status/503")
    assert.res_status(503, res)
    res = client:get("/status/204")
    assert.equal("", assert.res_status(204, res))
    -- the connection survives bodyless responses
    assert.res_status(200, client:get("/"))
  end)

  it("HEAD responses have no body", function()
    local res = client:head("/bytes/1000")
    assert.equal("", assert.res_status(200, res))
    assert.equal("1000", res.headers["content-length"])
    assert.res_status(200, client:get("/"))
  end)

  it("supports pipelining through raw()", function()
    local req = "GET /p1 HTTP/1.1\r\nHost: x\r\n\r\n" ..
                "POST /p2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" ..
                "GET /p3 HTTP/1.1\r\nHost: x\r\n\r\n"
    assert.truthy(client:raw(req))
    local a = assert.jsonbody(client:read_response())
    local b = assert.jsonbody(client:read_response())
    local c = assert.jsonbody(client:read_response())
    assert.same({ "/p1", "/p2", "/p3" }, { a.path, b.path, c.path })
    assert.same({ 1, 2, 3 }, { a.request_no_on_connection, b.request_no_on_connection, c.request_no_on_connection })
    assert.equal(a.connection_id, c.connection_id)
    assert.equal("abc", b.body)
  end)

  it("answers 400 to a malformed request and closes", function()
    assert.truthy(client:raw("garbage\r\n\r\n"))
    local res = client:read_response()
    assert.res_status(400, res)
    assert.equal("close", res.headers["connection"])
    assert.is_nil(client.sock)
  end)

  it("read_all() reads until close", function()
    assert.truthy(client:raw("GET /close HTTP/1.1\r\nHost: x\r\n\r\n"))
    local data = client:read_all()
    assert.truthy(data:find("^HTTP/1.1 200 OK\r\n"))
    assert.truthy(data:find("Connection: close", 1, true))
  end)

  it("/close closes after answering; the client reconnects for the next request", function()
    local res = client:get("/close")
    assert.res_status(200, res)
    assert.equal("close", res.headers["connection"])
    local first = assert.jsonbody(res).connection_id
    local second = assert.jsonbody(client:get("/")).connection_id
    assert.not_equal(first, second)
    assert.equal(2, client.connections)
  end)

  it("Connection: close from the client is honoured", function()
    local res = client:get("/", { headers = { Connection = "close" } })
    assert.res_status(200, res)
    assert.equal("close", res.headers["connection"])
    assert.is_nil(client.sock)
  end)

  it("/no-length sends a close-delimited body", function()
    local res = client:get("/no-length")
    assert.res_status(200, res)
    assert.is_nil(res.headers["content-length"])
    assert.is_nil(res.headers["transfer-encoding"])
    assert.equal("/no-length", assert.jsonbody(res).path)
  end)

  it("/reset closes without an answer", function()
    local res, err = client:get("/reset")
    assert.is_nil(res)
    assert.truthy(err)
  end)

  it("/reset-after-head truncates the body", function()
    local res, err, partial = client:get("/reset-after-head")
    assert.is_nil(res)
    assert.truthy(err:find("after 10 of 1000 bytes", 1, true))
    assert.equal("0123456789", partial.body)
  end)

  it("/delay/MS delays the answer", function()
    local t, res = elapsed(function() return client:get("/delay/200") end)
    assert.res_status(200, res)
    assert.truthy(t >= 0.19, "took " .. t)
  end)

  it("/hang never answers (client timeout)", function()
    local c = helpers.http_client("127.0.0.1", ports[1], 300)
    local t, res, err = elapsed(function() return c:get("/hang") end)
    c:close()
    assert.is_nil(res)
    assert.equal("timeout", err)
    assert.truthy(t < 2)
  end)

  it("/sink counts a streamed body", function()
    local n = 0
    local res = client:post("/sink?sha1", { body = function()
      n = n + 1
      if n <= 64 then return string.rep("a", 65536) end
    end })
    local echo = assert.jsonbody(res)
    assert.equal(64 * 65536, echo.body_size)
    assert.equal(40, #echo.sha1)
    echo = assert.jsonbody(client:post("/sink", { body = "abc" }))
    assert.equal(3, echo.body_size)
    assert.is_nil(echo.sha1)
  end)

  it("/headers?set= adds response headers", function()
    local res = client:get("/headers?set=X-A:1&set=X-B:two%20words")
    assert.res_status(200, res)
    assert.equal("1", assert.response(res).has.header("x-a"))
    assert.equal("two words", assert.response(res).has.header("X-B"))
  end)

  it("/stats counts connections and requests", function()
    helpers.mock_stats(ports[1], true)                  -- reset (itself 1 connection, 1 request)
    local before = helpers.mock_stats(ports[1])         -- +1 connection
    for _ = 1, 3 do
      local c = helpers.http_client("127.0.0.1", ports[1])
      assert.res_status(200, c:get("/"))
      assert.res_status(200, c:get("/"))
      c:close()
    end
    local after = helpers.mock_stats(ports[1])
    assert.equal(3 + 1, after.connections - before.connections)
    assert.equal(6 + 1, after.requests - before.requests)
  end)

  describe("assertion messages", function()
    it("res_status includes the body", function()
      local res = client:get("/status/418")
      local ok, err = pcall(assert.res_status, 200, res)
      assert.is_false(ok)
      err = tostring(err)
      assert.truthy(err:find("Expected: 200", 1, true), err)
      assert.truthy(err:find("Received: 418", 1, true), err)
      assert.truthy(err:find('"status": 418', 1, true), err)
    end)

    it("res_status reports a missing response", function()
      local ok, err = pcall(assert.res_status, 200, nil)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("no response", 1, true))
    end)

    it("header lists the headers present", function()
      local res = client:get("/")
      local ok, err = pcall(function() assert.response(res).has.header("x-missing") end)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("content-type: application/json", 1, true), tostring(err))
    end)

    it("jsonbody includes the body", function()
      local res = client:get("/bytes/20")
      local ok, err = pcall(assert.jsonbody, res)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("0123456789abcdefghij", 1, true), tostring(err))
    end)
  end)
end)

describe("helpers process management", function()
  after_each(function()
    helpers.stop_all()
  end)

  it("get_free_port never returns the same port twice", function()
    local seen = {}
    for _ = 1, 20 do
      local p = helpers.get_free_port()
      assert.is_nil(seen[p])
      seen[p] = true
    end
  end)

  it("start/stop of the mock upstream leaves no process behind", function()
    local ports, proc = helpers.start_mock_upstream{ name = "tmp" }
    assert.is_true(helpers.pid_alive(proc.pid))
    assert.truthy(helpers.read_file("/tmp/gw-spec-pids/" .. proc.pid))
    helpers.stop_mock_upstream("tmp")
    assert.is_false(helpers.pid_alive(proc.pid))
    assert.is_false(helpers.port_open(ports[1]))
    assert.is_nil(helpers.read_file("/tmp/gw-spec-pids/" .. proc.pid))
  end)

  it("starting a mock with the same name replaces it", function()
    local _, p1 = helpers.start_mock_upstream{ name = "same" }
    local ports2, p2 = helpers.start_mock_upstream{ name = "same" }
    assert.is_false(helpers.pid_alive(p1.pid))
    assert.is_true(helpers.pid_alive(p2.pid))
    helpers.stop_all()
    assert.is_false(helpers.pid_alive(p2.pid))
    assert.is_false(helpers.port_open(ports2[1]))
  end)

  it("reports a clear error when the mock cannot start", function()
    local blocker = require("socket").tcp()
    assert(blocker:bind("127.0.0.1", 0))
    assert(blocker:listen(1))
    local _, port = blocker:getsockname()
    local ok, err = pcall(helpers.start_mock_upstream, { name = "clash", port = tonumber(port) })
    blocker:close()
    assert.is_false(ok)
    assert.truthy(tostring(err):find("exited early", 1, true), tostring(err))
    assert.truthy(tostring(err):find("address already in use", 1, true) or
      tostring(err):find("Address already in use", 1, true), tostring(err))
  end)

  it("spawn/stop_process kill a process group", function()
    local proc = helpers.spawn{ kind = "sleep", cmd = "sh -c 'sleep 60 & sleep 60; wait'", marker = "sleep" }
    helpers.wait_until(function() return helpers.pid_alive(proc.pid) end, 2)
    assert.is_true(helpers.group_alive(proc.pid))
    local graceful = helpers.stop_process(proc, "TERM", 2)
    assert.is_boolean(graceful)
    assert.is_false(helpers.pid_alive(proc.pid))
    -- the background `sleep 60` in its group is gone too
    assert.is_false(helpers.group_alive(proc.pid))
  end)

  it("reap_stale kills processes of a dead test run", function()
    -- a process recorded as started by a runner that no longer exists
    local rc, out = helpers.execute("setsid sleep 61 >/dev/null 2>&1 </dev/null & echo $!")
    assert.equal(0, rc)
    local pid = tonumber(out:match("%d+"))
    assert.is_true(helpers.pid_alive(pid))
    helpers.write_file("/tmp/gw-spec-pids/" .. pid, "4194303 1 sleep 61\n")
    helpers.reap_stale(true)
    helpers.wait_until(function() return not helpers.pid_alive(pid) end, 2)
    assert.is_nil(helpers.read_file("/tmp/gw-spec-pids/" .. pid))
  end)

  it("wait_until returns the value or raises with the last error", function()
    local n = 0
    assert.equal(3, helpers.wait_until(function() n = n + 1; return n >= 3 and n end, 2, 0.01))
    local ok, err = pcall(helpers.wait_until, function() error("not yet") end, 0.1, 0.01)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("not yet", 1, true))
  end)

  it("json_encode is deterministic and readable by YAML-ish consumers", function()
    assert.equal('{"a":[1,2],"b":{},"c":"x\\ny/z","d":true}',
      helpers.json_encode({ d = true, c = "x\ny/z", b = {}, a = { 1, 2 } }))
    assert.equal('{"e":[]}', helpers.json_encode({ e = helpers.json_array() }))
    assert.equal(1.5, helpers.json_decode(helpers.json_encode(1.5)))
  end)

  local has_redis = helpers.execute("command -v redis-server >/dev/null") == 0
  ;(has_redis and it or pending)("start_redis / stop_redis", function()
    local port = helpers.start_redis()
    local c = helpers.http_client("127.0.0.1", port)
    assert.truthy(c:raw("PING\r\n"))
    assert.equal("+PONG", c.sock:receive("*l"))
    c:close()
    helpers.stop_redis()
    assert.is_false(helpers.port_open(port))
  end)
end)

describe("helpers for fixtures, configs, READMEs and examples", function()
  after_each(function() helpers.stop_all() end)

  it("start_fixture starts a script on free ports and reports one that exits", function()
    local ports, proc = helpers.start_fixture{ script = "spec/fixtures/otlp_receiver.py" }
    assert.equal(1, #ports)
    assert.same(ports, proc.ports)
    assert.is_true(helpers.port_open(ports[1]))
    helpers.stop_process(proc)
    assert.is_false(helpers.port_open(ports[1]))
    local ok, err = pcall(helpers.start_fixture, { script = "spec/fixtures/otlp_receiver.py", name = "receiver",
                                                   args = { "--no-such-option" } })
    assert.is_false(ok)
    assert.matches("receiver exited early; log:", tostring(err), 1, true)
    assert.matches("--no-such-option", tostring(err), 1, true)
  end)

  it("local_gw_yaml replaces listen, admin_listen and workers in a block gw: section", function()
    local y, counts = helpers.local_gw_yaml(table.concat({
      '_format_version: "3.0"', "gw:", "    listen:", '      - "0.0.0.0:8000"', "", "    # a comment",
      "    workers: auto", "    shared_dicts: { a: 1m }", '    admin_listen: "127.0.0.1:8001"',
      "services:", "  - { name: s, url: http://10.0.0.1:9000 }", "" }, "\n"),
      { workers = 2, replace = { ["10%.0%.0%.1:9000"] = "127.0.0.1:1234" } })
    assert.equal(table.concat({
      '_format_version: "3.0"', "gw:", '    listen: ["127.0.0.1:{PROXY_PORT}"]', '    admin_listen: "127.0.0.1:{ADMIN_PORT}"',
      "    workers: 2", "", "    # a comment", "    shared_dicts: { a: 1m }",
      "services:", "  - { name: s, url: http://127.0.0.1:1234 }", "" }, "\n"), y)
    assert.same({ ["10%.0%.0%.1:9000"] = 1 }, counts)
  end)

  it("local_gw_yaml adds a gw: section after _format_version, and keeps workers unless given", function()
    assert.equal('# c\n_format_version: "3.0"\ngw:\n  listen: ["127.0.0.1:{PROXY_PORT}"]\n' ..
      '  admin_listen: "127.0.0.1:{ADMIN_PORT}"\nservices: []',
      helpers.local_gw_yaml('# c\n_format_version: "3.0"\nservices: []'))
    assert.matches("\n  workers: 3\n", helpers.local_gw_yaml('_format_version: "3.0"\ngw:\n  workers: 3\n'), 1, true)
    local ok, err = pcall(helpers.local_gw_yaml, "gw:\n  workers: 1\n", { replace = { ["nowhere"] = "x" } })
    assert.is_false(ok)
    assert.matches("nothing matches nowhere", err, 1, true)
    ok, err = pcall(helpers.local_gw_yaml, "gw: { workers: 1 }\n")
    assert.is_false(ok)
    assert.matches("must be a block", err, 1, true)
  end)

  it("example_yaml and assert_yaml_compiles: an example compiles, a broken config raises its error", function()
    local y = helpers.example_yaml("gateway.yaml", { workers = 2 })
    assert.matches('\n  listen: ["127.0.0.1:{PROXY_PORT}"]\n', y, 1, true)
    assert.not_matches("8000", y, 1, true)
    assert.matches("\n  workers: 2\n", y, 1, true)
    y = y:gsub("{%u+_PORT}", "1")
    assert.equal(1, #helpers.assert_yaml_compiles(y))
    local ok, err = pcall(helpers.assert_yaml_compiles, { y, '_format_version: "3.0"\nservices: 1\n' }, "t.yaml")
    assert.is_false(ok)
    assert.matches("t.yaml: yaml block 2 of 2 does not compile:\n", err, 1, true)
    assert.matches("services", err, 1, true)
    ok, err = pcall(helpers.assert_yaml_compiles, {}, "t.yaml")
    assert.is_false(ok)
    assert.matches("no yaml block", err, 1, true)
  end)

  it("readme reads a plugin's README and its yaml blocks", function()
    local r = helpers.readme("cors")
    assert.equal("cors/README.md", r.label)
    assert.equal(helpers.repo .. "/plugins/cors/README.md", r.path)
    assert.same(helpers.fenced_blocks(r.text, "yaml"), r.yamls)
    assert.is_true(#r.yamls > 0)
    assert.equal(r.text, helpers.readme("plugins/cors/README.md").text)
  end)

  it("plugin_config_errors / plugin_config_error: the errors of a refused config, failing for an accepted one", function()
    local _, errs = helpers.validate_plugin_config("cors", { max_age = -1, credentials = "yes" })
    assert.equal(2, #errs)
    assert.equal(table.concat(errs, "\n"), helpers.plugin_config_errors("cors", { max_age = -1, credentials = "yes" }))
    assert.equal("plugins[0].config.max_age: value should be between 0 and 2147483647",
                 helpers.plugin_config_error("cors", { max_age = -1 }))
    assert.is_false(pcall(helpers.plugin_config_errors, "cors", {}))
    assert.is_false(pcall(helpers.plugin_config_error, "cors", { max_age = -1, credentials = "yes" }))
  end)
end)
