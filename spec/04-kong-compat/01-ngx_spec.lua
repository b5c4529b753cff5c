-- kong-compat unit specs: the ngx.* table Kong plugins see (kong-compat/gw_kong/ngx.lua), without
-- a server: pure functions directly, request functions on gw.test.context.
local ngx = require("gw_kong").ngx

-- runs fn in `phase` of a test request and returns what it returned
local function in_request(spec, fn, phase)
  local out
  local ctx = gw.test.context(spec or {})
  ctx:run({ [phase or "access"] = function() out = { fn(ctx) } end }, phase or "access")
  return unpack(out or {}), ctx
end

describe("kong-compat ngx.re", function()
  it("match: captures, named groups, options, ctx.pos, res reuse", function()
    local m = ngx.re.match("hello 1234 world", [[(\d+)\s+(?<word>\w+)]])
    assert.equal("1234 world", m[0])
    assert.equal("1234", m[1])
    assert.equal("world", m.word)
    assert.is_nil(ngx.re.match("HELLO", "hello"))
    assert.equal("HELLO", ngx.re.match("HELLO", "hello", "ijo")[0])
    assert.is_nil(ngx.re.match("xhello", "hello", "a"))         -- anchored
    local ctx = { pos = 3 }
    assert.equal("cd", ngx.re.match("abcdcd", "cd", "", ctx)[0])
    assert.equal(5, ctx.pos)
    local res = { stale = true }
    assert.equal(res, ngx.re.match("ab", "(a)(x)?", "", nil, res))
    assert.is_nil(res.stale)
    assert.equal(false, res[2])                                  -- a group that did not take part
    local nothing, err = ngx.re.match("x", "(")
    assert.is_nil(nothing)
    assert.matches("missing closing parenthesis", err)
    assert.has_error(function() ngx.re.match("x", "x", "q") end, 'unknown flag "q" (flags "q")')
  end)

  it("find, gmatch, sub, gsub, split", function()
    assert.same({ 4, 6 }, { ngx.re.find("ab 123 cd", [[\d+]]) })
    assert.same({ 5, 6 }, { ngx.re.find("ab 123 cd", [[1(\d+)]], "jo", nil, 1) })
    local all = {}
    for m in ngx.re.gmatch("a1b22c333", [[\d+]]) do all[#all + 1] = m[0] end
    assert.same({ "1", "22", "333" }, all)
    assert.same({ "x-1-b22", 1 }, { ngx.re.sub("a1b22", [[a(\d)]], "x-$1-") })
    assert.same({ "a<1>b<22>", 2 }, { ngx.re.gsub("a1b22", [[\d+]], "<$0>") })
    assert.same({ "A1B22", 2 }, { ngx.re.gsub("a1b22", "[a-z]", function(m) return m[0]:upper() end) })
    assert.same({ "${x}$1", 1 }, { ngx.re.sub("ab", "ab", "$${x}$$1") })
    assert.same({ "-a-b-", 3 }, { ngx.re.gsub("ab", "", "-") })    -- empty matches move on
    assert.same({ "a", "b", "c" }, require("ngx.re").split("a,b,,c", ",+"))
    assert.same({ "k", "v=w" }, require("ngx.re").split("k=v=w", "=", nil, nil, 2))
  end)
end)

describe("kong-compat ngx encodings, digests, time", function()
  it("base64, md5, sha1, hmac_sha1, crc32", function()
    assert.equal("Z3c6a29uZw==", ngx.encode_base64("gw:kong"))
    assert.equal("Z3c6a29uZw", ngx.encode_base64("gw:kong", true))
    assert.equal("gw:kong", ngx.decode_base64("Z3c6a29uZw=="))
    assert.is_nil(ngx.decode_base64("***"))
    assert.equal("900150983cd24fb0d6963f7d28e17f72", ngx.md5("abc"))
    assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d", require("resty.string").to_hex(ngx.sha1_bin("abc")))
    assert.equal("de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9",
                 require("resty.string").to_hex(ngx.hmac_sha1("key", "The quick brown fox jumps over the lazy dog")))
    assert.equal(1095738169, ngx.crc32_short("The quick brown fox jumps over the lazy dog"))
    local sha = require("resty.sha256"):new()
    sha:update("a")
    sha:update("bc")
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                 require("resty.string").to_hex(sha:final()))
  end)

  it("escape_uri, unescape_uri, encode_args, decode_args", function()
    assert.equal("a%20b%2Fc", ngx.escape_uri("a b/c"))
    assert.equal("a b/c", ngx.unescape_uri("a+b%2Fc"))
    assert.equal("a=1&b&c=x&c=y%20z", ngx.encode_args({ a = 1, b = true, c = { "x", "y z" }, d = false }))
    assert.same({ a = "1", b = true, c = { "x", "y z" } }, ngx.decode_args("a=1&b&c=x&c=y+z"))
    assert.same({ a = "1" }, ngx.decode_args("a=1&b=2", 1))
  end)

  it("time functions", function()
    assert.equal("Thu, 18 Nov 2010 11:27:35 GMT", ngx.http_time(1290079655))
    assert.equal("Thu, 18-Nov-10 11:27:35 GMT", ngx.cookie_time(1290079655))
    assert.equal(1290079655, ngx.parse_http_time("Thu, 18 Nov 2010 11:27:35 GMT"))
    assert.is_nil(ngx.parse_http_time("yesterday"))
    assert.truthy(math.abs(ngx.now() - os.time()) < 2)
    assert.equal(math.floor(ngx.now()), ngx.time())
    assert.matches("^%d%d%d%d%-%d%d%-%d%d$", ngx.today())
    assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$", ngx.utctime())
  end)

  it("constants, null, config, worker", function()
    assert.equal(200, ngx.HTTP_OK)
    assert.equal(8, ngx.DEBUG)
    assert.equal(require("cjson").null, ngx.null)
    assert.equal("http", ngx.config.subsystem)
    assert.is_number(ngx.worker.pid())
  end)
end)

describe("kong-compat ngx in a request", function()
  it("ngx.var resolves request variables", function()
    local v = in_request({ method = "POST", path = "/a/b?x=1&y=2", client_ip = "10.1.2.3",
                           headers = { ["X-Thing"] = "t", Cookie = "c1=v1; c2=v2" } }, function()
      local var = ngx.var
      return { var.uri, var.request_uri, var.args, var.arg_y, var.http_x_thing, var.cookie_c2,
               var.request_method, var.remote_addr, #var.binary_remote_addr, var.is_args, var.nothing }
    end)
    assert.same({ "/a/b", "/a/b?x=1&y=2", "x=1&y=2", "2", "t", "v2", "POST", "10.1.2.3", 4, "?" }, v)
  end)

  it("ngx.req and ngx.var writes change what goes upstream", function()
    local _, ctx = in_request({ path = "/p?x=1", headers = { ["X-Old"] = "o" } }, function()
      ngx.req.set_header("X-New", { "1", "2" })
      ngx.req.clear_header("X-Old")
      ngx.req.set_uri_args({ z = "9" })
      ngx.req.set_method(ngx.HTTP_PUT)
      ngx.var.upstream_uri = "/other?q=1"
      assert.equal("/other?q=1", ngx.var.upstream_uri)
    end)
    assert.equal("PUT", ctx.upstream.method)
    assert.equal("/other", ctx.upstream.path)
    assert.equal("q=1", ctx.upstream.query)
    assert.is_nil(ctx:upstream_header("X-Old"))
    assert.same({ "1", "2" }, ctx.upstream.headers["x-new"])
  end)

  it("ngx.ctx is the request's gw.ctx.shared, ngx.header writes response headers", function()
    local same, ctx = in_request({}, function()
      ngx.ctx.a = 1
      ngx.header["X_Out"] = "o"
      return ngx.ctx == gw.ctx.shared and gw.ctx.shared.a == 1
    end)
    assert.is_true(same)
    assert.equal("o", ctx:response_header("X-Out"))
  end)

  it("ngx.exit: a status ends the request, ngx.OK ends only the handler", function()
    local ctx = gw.test.context{}
    assert.equal("exit", ctx:run(require("gw_kong").wrap({ access = function()
      ngx.status = 202
      ngx.print("a", { "b", 1 })
      ngx.say("!")
      return ngx.exit(ngx.HTTP_OK)
    end }, "t"), "access", {}))
    assert.equal(202, ctx.exit_status)
    assert.equal("ab1!\n", ctx.exit_body)

    ctx = gw.test.context{}
    local after = false
    assert.is_true(ctx:run(require("gw_kong").wrap({ access = function()
      ngx.exit(ngx.OK)
      after = true
    end }, "t"), "access", {}))
    assert.is_false(after)
    assert.is_nil(ctx.exit_status)

    ctx = gw.test.context{ headers = { Accept = "text/plain" } }
    ctx:run(require("gw_kong").wrap({ access = function() return ngx.exit(404) end }, "t"), "access", {})
    assert.equal(404, ctx.exit_status)
    assert.matches("^Not found\nrequest_id: ", ctx.exit_body)
  end)

  it("ngx.arg in body_filter is the whole body, with eof", function()
    local ctx = gw.test.context{}
    ctx:set_response(200, { ["Content-Type"] = "text/plain" }, "abc")
    ctx:run({ body_filter = function()
      local chunk, eof = ngx.arg[1], ngx.arg[2]
      ngx.arg[1] = chunk:upper() .. tostring(eof)
    end }, "body_filter")
    assert.equal("ABCtrue", ctx.response.body)
  end)

  it("ngx.shared: a dict that does not exist is nil in a worker, a proxy at load time", function()
    assert.is_nil(in_request({}, function() return ngx.shared.no_such_dict end))
  end)
end)

describe("kong-compat resty.http over gw.http", function()
  local helpers = require "spec.helpers"
  local port

  lazy_setup(function() port = helpers.start_mock_upstream{ name = "rh" }[1] end)
  lazy_teardown(helpers.stop_all)

  it("request_uri and connect + request", function()
    local http = require "resty.http"
    local httpc = http.new()
    httpc:set_timeout(2000)
    local res = assert(httpc:request_uri("http://127.0.0.1:" .. port .. "/x?a=1", {
      method = "POST", body = "hi", headers = { ["X-T"] = "1" } }))
    assert.equal(200, res.status)
    local got = require("cjson").decode(res.body)
    assert.equal("POST", got.method)
    assert.equal("/x", got.path)
    assert.equal("hi", got.body)
    assert.equal(1, httpc:connect("127.0.0.1", port))
    res = assert(httpc:request{ path = "/y", headers = { Host = "h" } })
    assert.equal("/y", require("cjson").decode(res:read_body()).path)
    local _, err = http.new():request_uri("http://127.0.0.1:1/")
    assert.matches("connect", err)
  end)
end)
