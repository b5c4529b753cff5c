-- request-transformer (integration): a real gw in front of the mock upstream, which answers with
-- the request it received as JSON (method, path, query, headers, body), so every change shows.
local helpers = require "spec.helpers"
local cjson = require "cjson"

local JSON = { ["Content-Type"] = "application/json" }

local with = dofile(helpers.repo .. "/spec/03-plugins/10-request-transformer/transformer_helpers.lua").with

describe("request-transformer (integration)", function()
  local client, up

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "rt-up" }
    local url = "http://127.0.0.1:" .. up[1]
    local function svc(name, paths, config, route_extra)
      local route = { name = name, paths = paths }
      for k, v in pairs(route_extra or {}) do route[k] = v end
      return { name = name, url = url, routes = { route },
               plugins = { { name = "request-transformer", config = config } } }
    end
    helpers.start_gw{ config = {
      gw = { limits = { max_body_size = "4k" } },
      services = {
        svc("legacy", { "/legacy" }, {
          rename = { body = { "old_field:new_field" }, headers = { "x-legacy-token:authorization" } },
          remove = { body = { "debug" }, querystring = { "debug" } },
          add = { body = { "source:gw", "user.id:$(headers.x-user-id)" }, headers = { "x-transformed:1" } },
          append = { body = { "tags:legacy" } },
        }),
        svc("users", { "~/users/(?<id>\\d+)$" }, {
          replace = { uri = "/v2/users/$(uri_captures.id)" },
          add = { headers = { "x-user-id:$(uri_captures.id)" }, querystring = { "expand:$(query.e or 'none')" } },
          rename = { querystring = { "q:search" } },
          append = { querystring = { "tag:gw" }, headers = { "x-multi:two" } },
          http_method = "PUT",
        }),
        svc("form", { "/form" }, {
          rename = { body = { "old_field:new_field" } },
          replace = { body = { "n:$(query.n)" } },
          add = { body = { "via:gw" } },
        }),
        svc("strict", { "/strict" }, {
          rename = { body = { "old_field:new_field" } }, max_body_size = 100, body_policy = "reject",
        }),
        svc("lenient", { "/lenient" }, {
          rename = { body = { "old_field:new_field" } }, max_body_size = 100,
        }),
        svc("headers-only", { "/headers-only" }, { add = { headers = { "x-a:1" } } }),
      },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  local function echo(res, status)
    return cjson.decode(assert.res_status(status or 200, res))
  end

  it("the seed: old_field becomes new_field on its way upstream", function()
    local res = assert(client:post("/legacy/orders?debug=1&id=7", {
      headers = with(JSON, { ["X-Legacy-Token"] = "Bearer t", ["X-User-Id"] = "u1" }),
      body = '{"old_field":"v","debug":true,"tags":"a","items":[],"n":1.25}' }))
    local j = echo(res)
    assert.equal("/orders", j.path)
    assert.equal("id=7", j.query)
    local body = cjson.decode(j.body)
    assert.same({ new_field = "v", source = "gw", user = { id = "u1" }, tags = { "a", "legacy" }, items = {}, n = 1.25 },
                body)
    assert.matches('"items":[]', j.body, 1, true)
    assert.equal(tostring(#j.body), j.headers["content-length"])   -- the new body's length
    assert.equal("Bearer t", j.headers["authorization"])
    assert.is_nil(j.headers["x-legacy-token"])
    assert.equal("1", j.headers["x-transformed"])
    assert.equal("application/json", j.headers["content-type"])
  end)

  it("a body in another format streams upstream untouched, chunked as it came", function()
    local raw = '{"old_field":"v"}'
    local res = assert(client:send{ method = "POST", path = "/legacy/x",
      headers = { ["Content-Type"] = "text/plain" }, chunks = { raw:sub(1, 5), raw:sub(6) } })
    local j = echo(res)
    assert.equal(raw, j.body)
    assert.equal("chunked", j.headers["transfer-encoding"])
    assert.is_nil(j.headers["content-length"])
  end)

  it("a chunked JSON body is read, transformed and sent with a Content-Length", function()
    local res = assert(client:send{ method = "POST", path = "/legacy/x", headers = JSON,
      chunks = { '{"old_', 'field":2}' } })
    local j = echo(res)
    assert.same({ new_field = 2, source = "gw", tags = { "legacy" } }, cjson.decode(j.body))
    assert.is_nil(j.headers["transfer-encoding"])
    assert.equal(tostring(#j.body), j.headers["content-length"])
  end)

  it("regex captures in the path, query and headers; the method replaced", function()
    local res = assert(client:get("/users/42?q=name+x&e=full"))
    local j = echo(res)
    assert.equal("PUT", j.method)
    assert.equal("/v2/users/42", j.path)
    assert.equal("search=name%20x&e=full&expand=full&tag=gw", j.query)
    assert.equal("42", j.headers["x-user-id"])
    assert.equal("two", j.headers["x-multi"])
    res = assert(client:get("/users/7", { headers = { ["X-Multi"] = "one" } }))
    j = echo(res)
    assert.equal("/v2/users/7", j.path)
    assert.equal("expand=none&tag=gw", j.query)
    assert.same({ "one", "two" }, j.headers["x-multi"])
  end)

  it("form bodies: fields renamed, replaced from a template, added; pairs kept in order", function()
    local res = assert(client:post("/form/x?n=5", {
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
      body = "a=%7E1&old_field=v+w&n=1" }))
    local j = echo(res)
    assert.equal("a=%7E1&new_field=v%20w&n=5&via=gw", j.body)
    assert.equal("application/x-www-form-urlencoded", j.headers["content-type"])
  end)

  it("body_policy reject: 413 for a body over max_body_size, 400 for invalid JSON; upstream untouched", function()
    helpers.mock_stats(up[1], true)
    local big = '{"old_field":"' .. string.rep("x", 120) .. '"}'
    local res = assert(client:post("/strict/x", { headers = JSON, body = big }))
    assert.same({ message = "Request body too large" }, cjson.decode(assert.res_status(413, res)))
    client:close()
    client = helpers.proxy_client()
    res = assert(client:send{ method = "POST", path = "/strict/x", headers = JSON,
                              chunks = { big:sub(1, 60), big:sub(61) } })
    assert.same({ message = "Request body too large" }, cjson.decode(assert.res_status(413, res)))
    client:close()
    client = helpers.proxy_client()
    res = assert(client:post("/strict/x", { headers = JSON, body = '{"old_field":' }))
    assert.same({ message = "Invalid JSON body" }, cjson.decode(assert.res_status(400, res)))
    res = assert(client:post("/strict/x", { headers = JSON, body = '[{"old_field":1}]' }))
    assert.same({ message = "JSON body is not an object" }, cjson.decode(assert.res_status(400, res)))
    assert.equal(1, helpers.mock_stats(up[1]).requests)   -- only this /stats call
    -- within the bound it goes through transformed
    res = assert(client:post("/strict/x", { headers = JSON, body = '{"old_field":1}' }))
    assert.equal('{"new_field":1}', echo(res).body)
  end)

  it("body_policy pass: too large or invalid bodies go upstream as they came", function()
    local big = '{"old_field":"' .. string.rep("x", 120) .. '"}'
    local j = echo(assert(client:post("/lenient/x", { headers = JSON, body = big })))
    assert.equal(big, j.body)
    j = echo(assert(client:send{ method = "POST", path = "/lenient/x", headers = JSON,
                                 chunks = { big:sub(1, 50), big:sub(51) } }))
    assert.equal(big, j.body)
    j = echo(assert(client:post("/lenient/x", { headers = JSON, body = '{"old_field": nope}' })))
    assert.equal('{"old_field": nope}', j.body)
  end)

  it("gw's own body limit still holds", function()
    local res = assert(client:post("/legacy/x", { headers = JSON,
      body = '{"old_field":"' .. string.rep("x", 5000) .. '"}' }))
    assert.res_status(413, res)
  end)

  it("without body rules the body is never read: a chunked body streams", function()
    local res = assert(client:send{ method = "POST", path = "/headers-only/x", headers = JSON,
                                    chunks = { '{"a":', "1}" } })
    local j = echo(res)
    assert.equal('{"a":1}', j.body)
    assert.equal("chunked", j.headers["transfer-encoding"])
    assert.equal("1", j.headers["x-a"])
  end)
end)
