-- request-validator handler on gw.test.context requests: body, query, headers and path
-- parameters, the 400 / 415 answers, and the compile-once cache.
local helpers = require "spec.helpers"
local cjson = require "cjson"

local handler = dofile(helpers.repo .. "/plugins/request-validator/handler.lua")

local function conf(c) return assert(helpers.validate_plugin_config("request-validator", c)) end

local USER = conf{ body_schema = {
  type = "object", required = { "email", "name" },
  properties = {
    email = { type = "string", format = "email" },
    name = { type = "string", minLength = 2, maxLength = 100 },
    age = { type = "integer", minimum = 0, maximum = 120 },
  } } }

local JSON = { ["Content-Type"] = "application/json" }

-- runs access; returns the context and the decoded answer (nil when the request passed)
local function run(c, req)
  local ctx = gw.test.context(req)
  local r = ctx:run(handler, "access", c)
  if r == "exit" then return ctx, cjson.decode(ctx.exit_body) end
  assert.is_true(r)
  assert.is_nil(ctx.exit_status)
  return ctx, nil
end

local function post(c, body, headers)
  return run(c, { method = "POST", path = "/api/users", body = body, headers = headers or JSON })
end

describe("request-validator body", function()
  it("lets a valid body through, untouched", function()
    local ctx, answer = post(USER, '{"email":"ann@example.com","name":"Ann","age":30}')
    assert.is_nil(answer)
    assert.equal('{"email":"ann@example.com","name":"Ann","age":30}', ctx.upstream.body)
    _, answer = post(USER, '{"email":"ann@example.com","name":"Ann"}', { ["Content-Type"] = "application/json; charset=utf-8" })
    assert.is_nil(answer)
  end)

  it("answers 400 with every failing field", function()
    local ctx, answer = post(USER, '{"email":"not-an-email","name":"A","age":121}')
    assert.equal(400, ctx.exit_status)
    assert.same({ error = "Validation failed", details = {
      "body.age: must be at most 120", "body.email: must be a valid email", "body.name: must be at least 2 characters" } },
      answer)
    _, answer = post(USER, '{"age":"30"}')
    assert.same({ "body.email: is required", "body.name: is required", "body.age: must be an integer" }, answer.details)
    _, answer = post(USER, '[{"email":"ann@example.com"}]')
    assert.same({ "body: must be an object" }, answer.details)
  end)

  it("counts characters, not bytes", function()
    local _, answer = post(USER, '{"email":"e@example.com","name":"Zoë"}')
    assert.is_nil(answer)
    _, answer = post(USER, '{"email":"e@example.com","name":"é"}')     -- 2 bytes, 1 character
    assert.same({ "body.name: must be at least 2 characters" }, answer.details)
  end)

  it("answers 400 for a body that is not JSON, or empty", function()
    local ctx, answer = post(USER, '{"email": ')
    assert.equal(400, ctx.exit_status)
    assert.same({ error = "Validation failed", details = { "body: is not valid JSON" } }, answer)
    ctx, answer = post(USER, "")
    assert.equal(400, ctx.exit_status)
    assert.same({ "body: is required" }, answer.details)
    ctx, answer = run(USER, { method = "POST", path = "/api/users" })      -- no body, no Content-Type
    assert.equal(400, ctx.exit_status)
    assert.same({ "body: is required" }, answer.details)
  end)

  it("answers 415 for a Content-Type that is not allowed, or a body without one", function()
    local ctx, answer = post(USER, '{"email":"ann@example.com","name":"Ann"}', { ["Content-Type"] = "text/plain" })
    assert.equal(415, ctx.exit_status)
    assert.same({ error = "Unsupported Media Type", details = { "header.content-type: must be one of: application/json" } },
                answer)
    ctx, answer = run(USER, { method = "POST", path = "/api/users", body = '{"email":"ann@example.com","name":"Ann"}' })
    assert.equal(415, ctx.exit_status)
    assert.same({ "header.content-type: is required with a body (one of: application/json)" }, answer.details)
  end)

  it("matches allowed content types with wildcards, case-insensitively", function()
    local c = conf{ body_schema = { type = "object" }, allowed_content_types = { "application/*+json", "Text/JSON" } }
    assert.is_nil(select(2, post(c, "{}", { ["Content-Type"] = "application/vnd.api+json" })))
    assert.is_nil(select(2, post(c, "{}", { ["Content-Type"] = "TEXT/json; charset=utf-8" })))
    local ctx = post(c, "{}", { ["Content-Type"] = "application/json" })
    assert.equal(415, ctx.exit_status)
    ctx = post(c, "{}", { ["Content-Type"] = "application/x+json/x" })
    assert.equal(415, ctx.exit_status)
    c = conf{ body_schema = { type = "object" }, allowed_content_types = { "*/*" } }
    assert.is_nil(select(2, post(c, "{}", { ["Content-Type"] = "text/plain" })))
  end)

  it("validates a form body, reading numbers and booleans from its strings", function()
    local c = conf{ body_schema = USER.body_schema,
                    allowed_content_types = { "application/json", "application/x-www-form-urlencoded" } }
    local form = { ["Content-Type"] = "application/x-www-form-urlencoded" }
    assert.is_nil(select(2, post(c, "email=ann%40example.com&name=Ann&age=30", form)))
    local ctx, answer = post(c, "email=ann&name=Ann&age=3x", form)
    assert.equal(400, ctx.exit_status)
    assert.same({ "body.age: must be an integer", "body.email: must be a valid email" }, answer.details)
    -- JSON stays strict: a string is not an integer
    _, answer = post(c, '{"email":"ann@example.com","name":"Ann","age":"30"}')
    assert.same({ "body.age: must be an integer" }, answer.details)
  end)

  it("keeps [] and {} apart in bodies", function()
    local c = conf{ body_schema = { properties = { tags = { type = "array" }, meta = { type = "object" } } } }
    assert.is_nil(select(2, post(c, '{"tags":[],"meta":{}}')))
    local _, answer = post(c, '{"tags":{},"meta":[]}')
    assert.same({ "body.meta: must be an object", "body.tags: must be an array" }, answer.details)
  end)

  it("writes the answer with error first, / unescaped and backslashes kept", function()
    local c = conf{ body_schema = { properties = { ["a\\/b"] = { pattern = "^/api/" } } } }
    local ctx, answer = post(c, '{"a\\\\/b":"/v1/x"}')
    assert.equal(400, ctx.exit_status)
    assert.equal('{"error":"Validation failed","details":["body[\\"a\\\\\\\\/b\\"]: must match the pattern ^/api/"]}',
                 ctx.exit_body)
    assert.same({ 'body["a\\\\/b"]: must match the pattern ^/api/' }, answer.details)
    assert.matches("application/json", ctx:response_header("Content-Type"), 1, true)
  end)

  it("omits the details when verbose_response is false", function()
    local c = conf{ body_schema = USER.body_schema, verbose_response = false }
    local ctx, answer = post(c, '{"email":"x"}')
    assert.equal(400, ctx.exit_status)
    assert.same({ error = "Validation failed" }, answer)
    ctx, answer = post(c, "{}", { ["Content-Type"] = "text/plain" })
    assert.equal(415, ctx.exit_status)
    assert.same({ error = "Unsupported Media Type" }, answer)
  end)

  it("stops at max_errors", function()
    local props = {}
    for i = 1, 30 do props["f" .. i] = { type = "string" } end
    local body = {}
    for i = 1, 30 do body[#body + 1] = '"f' .. i .. '":' .. i end
    local _, answer = post(conf{ body_schema = { properties = props } }, "{" .. table.concat(body, ",") .. "}")
    assert.equal(20, #answer.details)
    _, answer = post(conf{ body_schema = { properties = props }, max_errors = 3 }, "{" .. table.concat(body, ",") .. "}")
    assert.equal(3, #answer.details)
  end)
end)

describe("request-validator parameters", function()
  local Q = conf{ query_schema = { type = "object", required = { "q" }, additionalProperties = false, properties = {
    q = { type = "string", minLength = 1 }, limit = { type = "integer", minimum = 1, maximum = 100 },
    exact = { type = "boolean" }, tag = { type = "array", items = { type = "string", enum = { "a", "b" } } } } } }

  it("query: coerces the strings for integer and boolean, reports each argument", function()
    assert.is_nil(select(2, run(Q, { path = "/search?q=x&limit=10&exact=true&tag=a&tag=b" })))
    assert.is_nil(select(2, run(Q, { path = "/search?q=x&tag=a" })))
    local ctx, answer = run(Q, { path = "/search?q=x&limit=ten&exact=maybe&tag=c&extra=1" })
    assert.equal(400, ctx.exit_status)
    assert.same({ "query.exact: must be a boolean", "query.limit: must be an integer", 'query.tag[0]: must be one of: "a", "b"',
                  "query.extra: is not allowed" }, answer.details)
    _, answer = run(Q, { path = "/search?limit=0" })
    assert.same({ "query.q: is required", "query.limit: must be at least 1" }, answer.details)
    _, answer = run(Q, { path = "/search" })
    assert.same({ "query.q: is required" }, answer.details)
  end)

  it("headers: names are case-insensitive, values coerced", function()
    local c = conf{ header_schema = { required = { "X-Request-Id" }, properties = {
      ["X-Request-Id"] = { type = "string", format = "uuid" }, ["X-Retries"] = { type = "integer", maximum = 3 } } } }
    local id = "2eb8aa08-aa98-11ea-b4aa-73b441d16380"
    assert.is_nil(select(2, run(c, { headers = { ["x-request-id"] = id, ["X-RETRIES"] = "2" } })))
    local _, answer = run(c, { headers = { ["X-Request-Id"] = "42", ["X-Retries"] = "9" } })
    assert.same({ "header.x-request-id: must be a valid uuid", "header.x-retries: must be at most 3" }, answer.details)
    _, answer = run(c, {})
    assert.same({ "header.x-request-id: is required" }, answer.details)
  end)

  it("headers: a schema that looks at every header (additionalProperties, patternProperties) sees them all", function()
    local c = conf{ header_schema = { patternProperties = { ["^x-debug"] = false } } }
    assert.is_nil(select(2, run(c, { headers = { ["X-Other"] = "1" } })))
    local _, answer = run(c, { headers = { ["X-Debug-Level"] = "9" } })
    assert.same({ "header.x-debug-level: is not allowed" }, answer.details)
    c = conf{ header_schema = { properties = { ["x-a"] = { type = "array", items = { type = "integer" } } } } }
    assert.is_nil(select(2, run(c, { headers = { ["X-A"] = { "1", "2" } } })))
    _, answer = run(c, { headers = { ["X-A"] = { "1", "b" } } })
    assert.same({ "header.x-a[1]: must be an integer" }, answer.details)
  end)

  it("path: the named captures of the route's regex path", function()
    local c = conf{ path_schema = { required = { "productId" }, properties = {
      productId = { type = "string", format = "uuid" }, page = { type = "integer", minimum = 1 } } } }
    local route_path = "~/api/products/(?<productId>[^/]+)(?:/page/(?<page>[^/]+))?$"
    local id = "2eb8aa08-aa98-11ea-b4aa-73b441d16380"
    assert.is_nil(select(2, run(c, { path = "/api/products/" .. id, route_path = route_path })))
    assert.is_nil(select(2, run(c, { path = "/api/products/" .. id .. "/page/2", route_path = route_path })))
    local ctx, answer = run(c, { path = "/api/products/abc/page/0", route_path = route_path })
    assert.equal(400, ctx.exit_status)
    assert.same({ "path.page: must be at least 1", "path.productId: must be a valid uuid" }, answer.details)
    -- a route without captures: the required parameter is missing
    _, answer = run(c, { path = "/api/products/" .. id })
    assert.same({ "path.productId: is required" }, answer.details)
  end)

  it("collects errors across path, query, headers and body in one answer", function()
    local c = conf{ path_schema = { properties = { id = { type = "integer" } } },
                    query_schema = { properties = { dry = { type = "boolean" } } },
                    header_schema = { required = { "x-api-version" } },
                    body_schema = USER.body_schema }
    local ctx, answer = run(c, { method = "POST", path = "/orders/x?dry=1", route_path = "~/orders/(?<id>[^/]+)$",
                                 headers = JSON, body = '{"email":"x","name":"Ann"}' })
    assert.equal(400, ctx.exit_status)
    assert.same({ "path.id: must be an integer", "query.dry: must be a boolean", "header.x-api-version: is required",
                  "body.email: must be a valid email" }, answer.details)
  end)
end)

describe("request-validator compiling", function()
  it("compiles a config's schemas once, and again for a new config table", function()
    local c = conf{ body_schema = { type = "object" }, query_schema = { properties = { a = { type = "integer" } } } }
    post(c, "{}")
    local first = handler._compiled(c)
    post(c, "{}")
    run(c, { path = "/?a=1" })
    assert.equal(first, handler._compiled(c))
    local c2 = conf{ body_schema = { type = "object" }, query_schema = { properties = { a = { type = "integer" } } } }
    assert.are_not.equal(first, handler._compiled(c2))
  end)

  it("does not read the body without a body schema", function()
    local c = conf{ query_schema = { properties = { a = { type = "integer" } } } }
    local read = false
    local orig = gw.request.get_raw_body
    gw.request.get_raw_body = function(...) read = true return orig(...) end
    local ok, err = pcall(run, c, { method = "POST", path = "/?a=1", headers = JSON, body = "not json" })
    gw.request.get_raw_body = orig
    assert(ok, err)
    assert.is_false(read)
  end)
end)
