-- response-transformer (unit): header_filter and body_filter in gw.test.context, configs normalized
-- by the real schema.
local helpers = require "spec.helpers"
local cjson = require "cjson"

local handler = dofile(helpers.repo .. "/plugins/response-transformer/handler.lua")

local function conf(c) return assert(helpers.validate_plugin_config("response-transformer", c)) end

local JSON = { ["Content-Type"] = "application/json" }

-- header_filter then body_filter on the upstream response (status, headers, body), as gw runs them
local function respond(c, headers, body, req)
  local ctx = gw.test.context(req or { path = "/" })
  ctx:set_response(200, headers, body)
  assert.is_true(ctx:run(handler, "header_filter", c))
  assert.is_true(ctx:run(handler, "body_filter", c))
  return ctx
end

describe("response-transformer (unit)", function()
  it("phases_for: body_filter only with a JSON rule", function()
    assert.same({ "header_filter" }, handler:phases_for(conf{ add = { headers = { "x:1" } } }))
    assert.same({ "header_filter", "body_filter" }, handler:phases_for(conf{ remove = { json = { "x" } } }))
    assert.same({ "header_filter", "body_filter" },
      handler:phases_for(conf{ append = { json = { "x:1" } }, remove = { headers = { "server" } } }))
    assert.same({}, handler:phases_for(conf{}))
  end)

  it("headers: remove, rename, replace, add, append in that order", function()
    local c = conf{
      remove = { headers = { "server", "x-absent" } },
      rename = { headers = { "x-old:x-new", "x-none:x-other" } },
      replace = { headers = { "x-new:replaced", "x-absent2:no" } },
      add = { headers = { "x-new:not-added", "x-added:yes", "server:gw" } },
      append = { headers = { "x-multi:2", "x-fresh:f" } },
    }
    local ctx = gw.test.context{}
    ctx:set_response(200, { Server = "nginx", ["X-Old"] = "o", ["X-Multi"] = "1", ["X-Keep"] = "k" })
    ctx:run(handler, "header_filter", c)
    assert.equal("gw", ctx:response_header("server"))
    assert.equal("replaced", ctx:response_header("x-new"))
    assert.is_nil(ctx:response_header("x-old"))
    assert.is_nil(ctx:response_header("x-other"))
    assert.is_nil(ctx:response_header("x-absent2"))
    assert.equal("yes", ctx:response_header("x-added"))
    assert.same({ "1", "2" }, ctx:response_headers("x-multi"))
    assert.equal("f", ctx:response_header("x-fresh"))
    assert.equal("k", ctx:response_header("x-keep"))
  end)

  it("header values may be templates reading the request", function()
    local c = conf{ add = { headers = { "x-request-user:$(headers.x-user)", "x-order:$(uri_captures.id)",
                                        "x-missing:$(query.nope)" } } }
    local ctx = gw.test.context{ path = "/orders/9", route_path = "~/orders/(?<id>\\d+)", headers = { ["X-User"] = "al" } }
    ctx:set_response(200, {})
    ctx:run(handler, "header_filter", c)
    assert.equal("al", ctx:response_header("x-request-user"))
    assert.equal("9", ctx:response_header("x-order"))
    assert.is_nil(ctx:response_header("x-missing"))
  end)

  describe("JSON bodies", function()
    local c = conf{
      remove = { json = { "internal", "user.password" } },
      rename = { json = { "old_field:new_field" } },
      replace = { json = { "status:ok", "count:$(query.n)" }, json_types = { "string", "number" } },
      add = { json = { "status:added", "api_version:2", "cached:false", "meta.by:$(headers.x-user)" },
              json_types = { "string", "number", "boolean" } },
      append = { json = { "tags:gw" } },
    }

    it("every operation, nested paths and typed values", function()
      local ctx = respond(c, JSON,
        '{"internal":1,"user":{"password":"p","name":"al"},"old_field":[],"status":"s","count":1,"tags":["a"]}',
        { path = "/?n=4", headers = { ["X-User"] = "bob" } })
      local body = ctx.response.body
      assert.same({ user = { name = "al" }, new_field = {}, status = "ok", count = 4, api_version = 2,
                    cached = false, meta = { by = "bob" }, tags = { "a", "gw" } }, cjson.decode(body))
      assert.matches('"new_field":[]', body, 1, true)
    end)

    it("only application/json and +json bodies; others pass untouched", function()
      local raw = '{"internal":1}'
      for ct, transformed in pairs({ ["application/json; charset=utf-8"] = true,
                                     ["application/problem+json"] = true,
                                     ["text/plain"] = false, ["application/jsonl"] = false }) do
        local ctx = respond(c, { ["Content-Type"] = ct }, raw)
        if transformed then assert.is_nil(cjson.decode(ctx.response.body).internal, ct)
        else assert.equal(raw, ctx.response.body, ct) end
      end
      assert.equal(raw, respond(c, {}, raw).response.body)                       -- no Content-Type
      assert.equal(raw, respond(c, { ["Content-Type"] = "application/json", ["Content-Encoding"] = "gzip" },
                                raw).response.body)
    end)

    it("a body that does not decode, or is not an object, passes untouched", function()
      for _, raw in ipairs({ "", "{broken", "[1,2]", '"s"', "null" }) do
        assert.equal(raw, respond(c, JSON, raw).response.body)
      end
    end)

    it("a body no rule changes is sent as it came", function()
      local raw = '{ "a" : 1.50,\n "b": [ ] }'
      assert.equal(raw, respond(conf{ remove = { json = { "x" } } }, JSON, raw).response.body)
    end)

    it("the decision is made in header_filter, on the upstream's Content-Type", function()
      -- a header rule changing Content-Type does not change what the body is
      local c2 = conf{ replace = { headers = { "content-type:text/plain" } }, add = { json = { "a:1" } } }
      local ctx = respond(c2, JSON, "{}")
      assert.equal("text/plain", ctx:response_header("content-type"))
      assert.same({ a = "1" }, cjson.decode(ctx.response.body))
      -- body_filter without header_filter's mark leaves the body
      ctx = gw.test.context{}
      ctx:set_response(200, JSON, '{"x":1}')
      ctx:run(handler, "body_filter", c2)
      assert.equal('{"x":1}', ctx.response.body)
    end)
  end)
end)
