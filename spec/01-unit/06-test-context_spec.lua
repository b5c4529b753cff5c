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
end)
