-- gw.test.context: a handler run on a socketless request through the real gw.* API.
describe("ctx", function()
  it("runs", function()
    local h = { access = function(self, conf)
      gw.service.request.set_header("X-A", conf.v)
      gw.ctx.shared.x = 1
      gw.sleep(0.01)
      gw.service.request.set_path("/new")
    end, header_filter = function() gw.response.set_header("X-R", "r") end,
    deny = function() gw.response.exit(403, { message = "no" }) end }
    local ctx = gw.test.context{ method = "POST", path = "/a?b=1", headers = { host = "h", ["X-In"] = "1" }, body = "xyz" }
    assert.is_true(ctx:run(h, "access", { v = "1" }))
    assert.equal("1", ctx:upstream_header("x-a"))
    assert.equal("/new", ctx.upstream.path)
    assert.equal(1, ctx.shared.x)
    ctx:set_response(200, { ["Content-Type"] = "text/plain" })
    ctx:run(h, "header_filter", {})
    assert.equal("r", ctx:response_header("X-R"))
    local h2 = { access = function() gw.response.exit(403, { message = "no" }) end }
    local c2 = gw.test.context{}
    assert.equal("exit", c2:run(h2, "access"))
    assert.equal(403, c2.exit_status)
    assert.equal('{"message":"no"}', c2.exit_body)
    local h3 = { header_filter = function() gw.service.request.set_header("a", "b") end }
    assert.has_error(function() c2:run(h3, "header_filter") end)
  end)

  it("route_path gives get_uri_captures; set_response's body is what body_filter reads", function()
    local got, body
    local h = { access = function() got = gw.request.get_uri_captures() end,
                body_filter = function()
                  body = gw.response.get_raw_body()
                  gw.response.set_raw_body(body:upper())
                end }
    local ctx = gw.test.context{ path = "/users/42/posts?x=1", route_path = "~/users/(?<id>\\d+)/(\\w+)" }
    ctx:run(h, "access")
    assert.same({ unnamed = { [0] = "/users/42/posts", "42", "posts" }, named = { id = "42" } }, got)
    ctx:set_response(200, { ["Content-Type"] = "text/plain" }, "hello")
    ctx:run(h, "body_filter")
    assert.equal("hello", body)
    assert.equal("HELLO", ctx.response.body)
    local plain = gw.test.context{ path = "/users/42" }
    plain:run(h, "access")
    assert.same({ unnamed = {}, named = {} }, got)
    assert.has_error(function() gw.test.context{ route_path = "~(" } end)
  end)

  -- header names and values are checked in C (runtime/lua/ffi.c) on the hot path: the same
  -- rules, byte for byte, as the Lua patterns that give the errors
  it("set_header / add_header / clear_header refuse what the patterns refuse, every byte", function()
    local errs = {}
    local h = { access = function()
      for b = 0, 255 do
        local c = string.char(b)
        local name_ok = c:find("^[%w!#$%%&'*+%-.^_`|~]$") ~= nil
        local value_ok = not c:find("[\r\n%z]")
        local ok1, e1 = pcall(gw.service.request.set_header, "X" .. c, "v")
        local ok2, e2 = pcall(gw.response.add_header, "X-V", "a" .. c .. "b")
        local ok3 = pcall(gw.service.request.clear_header, c .. "Y")
        local ok4, e4 = pcall(gw.response.set_header, "X-T", { "ok", "a" .. c })
        if ok1 ~= name_ok or ok3 ~= name_ok then errs[#errs + 1] = "name byte " .. b end
        if ok2 ~= value_ok or ok4 ~= value_ok then errs[#errs + 1] = "value byte " .. b end
        if not ok1 and not tostring(e1):find("invalid header name", 1, true) then errs[#errs + 1] = tostring(e1) end
        if not ok2 and not tostring(e2):find("must not contain CR, LF or NUL", 1, true) then errs[#errs + 1] = tostring(e2) end
        if not ok4 and not tostring(e4):find("must not contain CR, LF or NUL", 1, true) then errs[#errs + 1] = tostring(e4) end
      end
      if pcall(gw.service.request.set_header, "", "v") then errs[#errs + 1] = "empty name accepted" end
      gw.service.request.set_header("X-N", 42)
    end }
    local ctx = gw.test.context{}
    ctx:run(h, "access")
    assert.same({}, errs)
    assert.equal("42", ctx:upstream_header("X-N"))
  end)

  it("header names and values are checked at every offset (the checks go several bytes a step)", function()
    local errs = {}
    local h = { access = function()
      for len = 1, 19 do
        for at = 1, len do
          for _, c in ipairs({ "\0", "\r", "\n" }) do
            local v = string.rep("v", at - 1) .. c .. string.rep("v", len - at)
            if pcall(gw.response.set_header, "X-V", v) then errs[#errs + 1] = ("value %q accepted"):format(v) end
          end
          for _, c in ipairs({ " ", ":", "\0", "\127", "\200", "(" }) do
            local n = string.rep("n", at - 1) .. c .. string.rep("n", len - at)
            if pcall(gw.service.request.set_header, n, "v") then errs[#errs + 1] = ("name %q accepted"):format(n) end
          end
        end
        local good = string.rep("a-Z_9!", 4):sub(1, len)
        if not pcall(gw.service.request.set_header, good, string.rep("\t v\200", 7):sub(1, len)) then
          errs[#errs + 1] = "good name/value of length " .. len .. " refused"
        end
      end
    end }
    gw.test.context{}:run(h, "access")
    assert.same({}, errs)
  end)

  -- numbers are written by C without a Lua string (runtime/lua/ffi.c gw_ffi_set_header_num), and
  -- a name set once is neither checked nor copied again (lua/gw/init.lua keeps up to 4096)
  it("a number as a header value reads as tostring(n); names set before and past the 4096 kept", function()
    local nums = { 0, 7, -7, 42, 999999999, 1e13 + 1, -(1e13 + 1), 99999999999999, -99999999999999,
                   1e14, -1e14, 1.5, -0.25, 2 ^ 53, 1 / 0, -1 / 0, 0 / 0, 1e300, -0.0, 3.0 }
    local bad_ok
    local h = { access = function()
      for i, n in ipairs(nums) do gw.response.set_header("X-Num-" .. i, n) end
      gw.response.set_header("X-Add", 1)
      gw.response.add_header("X-Add", 2.5)
      gw.response.add_header("X-Add", "three")
      for i = 1, 5000 do   -- more names than gw keeps; cleared again (a request's headers are bounded)
        gw.service.request.set_header("X-Many-" .. i, i)
        gw.service.request.clear_header("X-Many-" .. i)
      end
      gw.service.request.set_header("X-Many-4999", "late")
      gw.service.request.set_header("X-Many-3", "early")
      gw.service.request.set_header("X-Many-3", 33)
      bad_ok = pcall(gw.response.set_header, "X-Num-1", "a\r\nb")   -- a known name, a bad value
    end }
    local ctx = gw.test.context{}
    ctx:run(h, "access")
    for i, n in ipairs(nums) do assert.equal(tostring(n), ctx:response_header("X-Num-" .. i), "number " .. i) end
    assert.same({ "1", "2.5", "three" }, ctx:response_headers("X-Add"))
    assert.equal("late", ctx:upstream_header("X-Many-4999"))
    assert.equal("33", ctx:upstream_header("X-Many-3"))
    assert.is_nil(ctx:upstream_header("X-Many-10"))
    assert.is_false(bad_ok)
    assert.equal("0", ctx:response_header("X-Num-1"))
  end)

  it("gw.ctx.plugin is the handler's own table in a coroutine the handler makes, and per plugin", function()
    local outer, inner
    local h = { access = function()
      outer = gw.ctx.plugin
      outer.x = 1
      local co = coroutine.create(function() inner = gw.ctx.plugin end)
      assert(coroutine.resume(co))
    end }
    local other
    local h2 = { access = function() other = gw.ctx.plugin end }
    local ctx = gw.test.context{}
    ctx.plugin_name = "one"
    ctx:run(h, "access")
    ctx.plugin_name = "two"
    ctx:run(h2, "access")
    assert.equal(outer, inner)
    assert.equal(1, inner.x)
    assert.is_nil(other.x)
  end)
end)
