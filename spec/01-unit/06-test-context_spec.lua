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
end)
