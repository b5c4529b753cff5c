-- gw.redis: the non-blocking Redis client (runtime/lua/redis.c, lua/gw/redis.lua), against a real
-- redis-server. These run in `gw test` itself (the main thread, where gw.redis runs the loop until
-- the answer is in); the worker side (a request's coroutine suspended, other requests served
-- meanwhile) is covered by the rate-limiting plugin's specs (spec/03-plugins/09-rate-limiting).
local helpers = require "spec.helpers"
local socket = require "socket"
local gw = require "gw"

describe("gw.redis", function()
  local port

  lazy_setup(function()
    port = helpers.start_redis()
  end)

  lazy_teardown(function()
    helpers.stop_redis()
  end)

  it("runs commands: strings, integers, nil, status, arrays, error replies", function()
    local r = assert(gw.redis.connect{ host = "127.0.0.1", port = port })
    assert.equal("OK", r:command("SET", "k1", "v1"))
    assert.equal("v1", r:command("GET", "k1"))
    assert.equal(5, r:call("INCRBY", "n1", 5))
    local v, err = r:command("GET", "missing")
    assert.is_nil(v)
    assert.is_nil(err)
    assert.equal(2, r:command("RPUSH", "l1", "a", "b"))
    assert.same({ "a", "b" }, r:command("LRANGE", "l1", 0, -1))
    local m = r:command("MGET", "k1", "missing")
    assert.equal("v1", m[1])
    assert.equal(gw.redis.null, m[2])
    local v2, e2, kind = r:command("INCR", "k1")
    assert.is_nil(v2)
    assert.matches("^ERR ", e2)
    assert.equal("redis", kind)
    -- binary-safe values
    assert.equal("OK", r:command("SET", "bin", "a\0b\r\nc"))
    assert.equal("a\0b\r\nc", r:command("GET", "bin"))
  end)

  it("pipelines several commands in one call, error replies in place", function()
    local r = assert(gw.redis.connect{ port = port })
    local res, errs = r:pipeline({ { "SET", "p1", "x" }, { "INCR", "p1" }, { "GET", "p1" }, { "INCR", "p2" } })
    assert.equal("OK", res[1]); assert.is_false(errs[1])
    assert.equal(gw.redis.null, res[2]); assert.matches("^ERR ", errs[2])
    assert.equal("x", res[3])
    assert.equal(1, res[4])
  end)

  it("eval_script: EVALSHA, falling back to EVAL when the script is not cached", function()
    local r = assert(gw.redis.connect{ port = port })
    assert.equal("OK", r:command("SCRIPT", "FLUSH"))
    local script = "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"
    local v = assert(r:eval_script(script, { "e1" }, { "a" }))
    assert.same({ "e1", "a", 1 }, v)
    local sha = gw.redis.sha1(script)
    assert.same({ 1 }, r:command("SCRIPT", "EXISTS", sha))
    assert.same({ "e1", "b", 2 }, r:eval_script(script, { "e1" }, { "b" }))
    -- a bare SHA of an unknown script cannot fall back
    local x, err, kind = r:eval_script(string.rep("0", 40), {}, {})
    assert.is_nil(x)
    assert.matches("^NOSCRIPT", err)
    assert.equal("redis", kind)
    -- a script error is an error reply
    local y, err2 = r:eval_script("return redis.call('NOPE')", {}, {})
    assert.is_nil(y)
    assert.is_string(err2)
  end)

  it("SELECT: db picks the database", function()
    local r0 = assert(gw.redis.connect{ port = port })
    local r3 = assert(gw.redis.connect{ port = port, db = 3 })
    assert.equal("OK", r3:command("SET", "dbk", "three"))
    assert.is_nil(r0:command("GET", "dbk"))
    assert.equal("three", r3:command("GET", "dbk"))
  end)

  it("AUTH: password is sent on connect; a wrong one fails connect", function()
    local p = helpers.get_free_port()
    local proc = helpers.spawn{ kind = "redis-auth", marker = "redis-server",
      cmd = string.format("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --requirepass s3cret", p) }
    finally(function() helpers.stop_process(proc, "TERM", 5) end)
    assert(helpers.wait_until(function() return helpers.port_open(p) end, 10))
    local r = assert(gw.redis.connect{ port = p, password = "s3cret" })
    assert.equal("OK", r:command("SET", "a", "1"))
    local bad, err = gw.redis.connect{ port = p, password = "wrong" }
    assert.is_nil(bad)
    assert.matches("WRONGPASS", err .. "", 1, true)
    local none, e = gw.redis.connect{ port = p }  -- connect pings: NOAUTH
    assert.is_nil(none)
    assert.matches("NOAUTH", e, 1, true)
  end)

  it("times out a slow server within the timeout, and recovers after", function()
    local r = assert(gw.redis.connect{ port = port, timeout = 200 })
    local slow = assert(gw.redis.connect{ port = port, timeout = 5000 })
    -- DEBUG SLEEP on another connection would only block the same server: use CLIENT PAUSE
    assert.equal("OK", slow:command("CLIENT", "PAUSE", "800"))
    local t0 = socket.gettime()
    local v, err, kind = r:command("GET", "k1")
    local dt = socket.gettime() - t0
    assert.is_nil(v)
    assert.equal("timeout", err)
    assert.equal("io", kind)
    assert.truthy(dt < 0.6, "took " .. dt)
    helpers.sleep(0.9)
    assert.equal("v1", r:command("GET", "k1"))
  end)

  it("connect_timeout: a server that never completes the handshake", function()
    -- a listener whose backlog is full: further connects hang in SYN
    local srv = assert(socket.tcp())
    assert(srv:bind("127.0.0.1", 0))
    assert(srv:listen(0))
    local _, p = srv:getsockname()
    local fill = {}
    for i = 1, 8 do
      local c = socket.tcp(); c:settimeout(0); c:connect("127.0.0.1", tonumber(p)); fill[i] = c
    end
    finally(function() for _, c in ipairs(fill) do c:close() end srv:close() end)
    local t0 = socket.gettime()
    local r, err, kind = gw.redis.connect{ port = tonumber(p), timeout = 3000, connect_timeout = 200 }
    local dt = socket.gettime() - t0
    assert.is_nil(r)
    assert.equal("connect timeout", err)
    assert.equal("io", kind)
    assert.truthy(dt >= 0.15 and dt < 1, "took " .. dt)
  end)

  it("fails quickly when Redis is not there", function()
    local p = helpers.get_free_port()
    local t0 = socket.gettime()
    local r, err, kind = gw.redis.connect{ port = p, timeout = 2000 }
    assert.is_nil(r)
    assert.equal("connection refused", err)
    assert.equal("io", kind)
    assert.truthy(socket.gettime() - t0 < 0.5)
  end)

  it("a killed server: calls fail, then succeed once it is back", function()
    local r = assert(gw.redis.connect{ port = port, timeout = 500 })
    assert.equal("OK", r:command("SET", "z", "1"))
    helpers.stop_redis()
    local v, err, kind = r:command("GET", "z")
    assert.is_nil(v)
    assert.is_string(err)
    assert.equal("io", kind)
    -- a new server on a new port
    port = helpers.start_redis()
    local r2 = assert(gw.redis.connect{ port = port, timeout = 500 })
    assert.equal("OK", r2:command("SET", "z", "2"))
  end)

  it("in gw.test.context: a handler's call suspends and resumes like gw.sleep", function()
    local handler = { access = function(_, conf)
      local r = assert(gw.redis.connect{ port = conf.port })
      gw.ctx.shared.set = r:command("SET", "ctx", "yes")
      gw.ctx.shared.get = r:command("GET", "ctx")
      local res = r:pipeline({ { "INCR", "ctxn" }, { "INCR", "ctxn" } })
      gw.ctx.shared.n = res[2]
      gw.service.request.set_header("X-After", "yes")
    end }
    local ctx = gw.test.context{}
    assert.is_true(ctx:run(handler, "access", { port = port }))
    assert.equal("OK", ctx.shared.set)
    assert.equal("yes", ctx.shared.get)
    assert.equal(2, ctx.shared.n)
    assert.equal("yes", ctx:upstream_header("X-After"))
  end)

  it("is refused in header_filter", function()
    local handler = { header_filter = function(_, conf)
      local r = gw.redis.connect{ port = conf.port }
    end }
    local ctx = gw.test.context{}
    assert.has_error(function() ctx:run(handler, "header_filter", { port = port }) end)
  end)

  it("a command with very many arguments", function()
    local r = assert(gw.redis.connect{ port = port })
    local args = { "RPUSH", "many" }
    for i = 1, 100000 do args[#args + 1] = i end
    local res = assert(r:pipeline({ args }))
    assert.equal(100000, res[1])
    assert.equal("100000", r:command("LINDEX", "many", -1))
  end)

  it("misuse raises", function()
    assert.has_error(function() gw.redis.connect("x") end)
    assert.has_error(function() gw.redis.connect{ port = "x" } end)
    assert.has_error(function() gw.redis.connect{ port = port, timeout = -1 } end)
    local r = assert(gw.redis.connect{ port = port })
    assert.has_error(function() r:command() end)
    assert.has_error(function() r:command("SET", {}, "x") end)
    assert.has_error(function() r:pipeline({}) end)
    assert.has_error(function() r:eval_script(nil) end)
  end)
end)

describe("gw.redis in a worker", function()
  local port, client
  local cjson = require "cjson"

  local function probe(args)
    local res = assert(client:get("/probe", { query = args }))
    assert.res_status(200, res)
    return cjson.decode(res.body)
  end

  lazy_setup(function()
    port = helpers.start_redis()
    helpers.start_gw{ plugins_path = { helpers.repo .. "/spec/fixtures/plugins" }, config = {
      services = {
        { name = "probe", url = "echo://", routes = { { paths = { "/probe" } } },
          plugins = { { name = "redis-probe" } } },
        { name = "plain", url = "echo://", routes = { { paths = { "/plain" } } } },
      },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("from a request, a timer and the log phase", function()
    local r = probe{ port = port, key = "w1" }
    assert.same({ n = 1, v = "1", phase = "access" }, r)
    assert.same({ started = true }, probe{ port = port, key = "w1", mode = "timer", id = "t1" })
    assert(helpers.wait_until(function() return probe{ mode = "result", id = "t1" }.n == 2 end, 5))
    assert.same({ n = 2, v = "2", phase = "timer" }, probe{ mode = "result", id = "t1" })
    assert.same({ logged = true }, probe{ port = port, key = "w1", mode = "log", id = "l1" })
    assert(helpers.wait_until(function() return probe{ mode = "result", id = "l1" }.n == 3 end, 5))
    assert.equal("log", probe{ mode = "result", id = "l1" }.phase)
  end)

  it("a client that goes away while its request waits for Redis: the worker carries on", function()
    local r = assert(gw.redis.connect{ port = port })
    assert.equal("OK", r:command("CLIENT", "PAUSE", "500"))
    local s = assert(socket.connect("127.0.0.1", helpers.gw_info().proxy_port))
    s:send("GET /probe?port=" .. port .. "&key=gone&timeout=3000 HTTP/1.1\r\nHost: x\r\n\r\n")
    helpers.sleep(0.1)
    s:close()
    local t0 = socket.gettime()
    assert.res_status(200, client:get("/plain"))
    assert.truthy(socket.gettime() - t0 < 0.2)
    helpers.sleep(0.6)
    local out = probe{ port = port, key = "after" }
    assert.equal(1, out.n)
    assert.falsy(helpers.gw_log():find("died", 1, true))
  end)
end)
