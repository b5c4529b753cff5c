-- request-transformer (unit): the handler in gw.test.context, configs normalized by the real schema.
local helpers = require "spec.helpers"
local cjson = require "cjson"

local handler = dofile(helpers.repo .. "/plugins/request-transformer/handler.lua")

local function conf(c) return assert(helpers.validate_plugin_config("request-transformer", c)) end

local JSON = { ["Content-Type"] = "application/json" }
local FORM = { ["Content-Type"] = "application/x-www-form-urlencoded" }

local function run(c, req)
  local ctx = gw.test.context(req)
  local res = ctx:run(handler, "access", c)
  return ctx, res
end

local with = dofile(helpers.repo .. "/spec/03-plugins/10-request-transformer/transformer_helpers.lua").with

-- every value of an upstream header, in order
local function all(ctx, name)
  local v = ctx.upstream.headers[name:lower()]
  if type(v) == "table" then return v end
  return { v }
end

describe("request-transformer (unit)", function()
  describe("the seed: a legacy JSON field renamed", function()
    local c = conf{ rename = { body = { "old_field:new_field" } } }

    it("old_field becomes new_field, the rest of the body kept", function()
      local ctx = run(c, { method = "POST", path = "/legacy", headers = JSON,
                           body = '{"old_field":"v","keep":[1,{"a":[]}],"id":12345678901234567890}' })
      assert.is_nil(ctx.exit_status)
      local body = ctx.upstream.body
      assert.same({ new_field = "v", keep = { 1, { a = {} } }, id = 12345678901234567890 }, cjson.decode(body))
      assert.matches('"a":[]', body, 1, true)                        -- an empty array stays an array
      assert.matches('"id":12345678901234567890', body, 1, true)     -- every digit kept
    end)

    it("a body without old_field goes as it came, byte for byte", function()
      local raw = '{ "new_field" : 1,\n  "x": [ ] }'
      local ctx = run(c, { method = "POST", path = "/legacy", headers = JSON, body = raw })
      assert.equal(raw, ctx.upstream.body)
    end)

    it("when both exist, the renamed value wins (as Kong's rename)", function()
      local ctx = run(c, { method = "POST", headers = JSON, body = '{"old_field":1,"new_field":2}' })
      assert.same({ new_field = 1 }, cjson.decode(ctx.upstream.body))
    end)
  end)

  describe("headers", function()
    it("remove, rename, replace, add, append in that order", function()
      local c = conf{
        remove = { headers = { "x-remove", "x-absent" } },
        rename = { headers = { "x-old:x-new", "x-none:x-other" } },
        replace = { headers = { "x-new:replaced", "x-absent2:nope" } },
        add = { headers = { "x-new:not-added", "x-added:yes", "x-remove:back" } },
        append = { headers = { "x-multi:2", "x-fresh:f" } },
      }
      local ctx = run(c, { headers = { ["X-Remove"] = "r", ["X-Old"] = "o", ["X-Multi"] = "1", ["X-Keep"] = "k" } })
      assert.equal("replaced", ctx:upstream_header("x-new"))
      assert.is_nil(ctx:upstream_header("x-old"))
      assert.is_nil(ctx:upstream_header("x-other"))
      assert.is_nil(ctx:upstream_header("x-absent2"))
      assert.equal("yes", ctx:upstream_header("x-added"))
      assert.equal("back", ctx:upstream_header("x-remove"))   -- removed, then added back (add comes after)
      assert.same({ "1", "2" }, all(ctx, "x-multi"))
      assert.equal("f", ctx:upstream_header("x-fresh"))
      assert.equal("k", ctx:upstream_header("x-keep"))
    end)

    it("rename moves every value of a repeated header; names compare case-insensitively", function()
      local c = conf{ rename = { headers = { "X-OLD:x-new", "x-same:X-Same" } } }
      local ctx = gw.test.context{ headers = { ["X-Same"] = "s" } }
      -- a repeated header: added by an earlier plugin
      ctx:run({ access = function()
        gw.service.request.add_header("x-old", "1")
        gw.service.request.add_header("x-old", "2")
      end }, "access", {})
      ctx:run(handler, "access", c)
      assert.same({ "1", "2" }, all(ctx, "x-new"))
      assert.is_nil(ctx:upstream_header("x-old"))
      assert.equal("s", ctx:upstream_header("x-same"))
    end)

    it("values are trimmed; templates read the headers as the client sent them", function()
      local c = conf{
        remove = { headers = { "x-user" } },
        add = { headers = { "x-forwarded-user: $(headers.x-user) ", "x-id:$(query.id)", "x-none:$(headers.x-nope)" } },
      }
      local ctx = run(c, { path = "/p?id=7", headers = { ["X-User"] = "alice" } })
      assert.is_nil(ctx:upstream_header("x-user"))
      assert.equal("alice", ctx:upstream_header("x-forwarded-user"))
      assert.equal("7", ctx:upstream_header("x-id"))
      assert.is_nil(ctx:upstream_header("x-none"))          -- a missing source skips the rule
    end)

    it("a template value holding CR or LF is not sent", function()
      local c = conf{ add = { headers = { "x-q:$(query.q)" } } }
      local ctx = run(c, { path = "/p?q=a%0D%0AInjected:%201" })
      assert.is_nil(ctx.exit_status)
      assert.is_nil(ctx:upstream_header("x-q"))
      assert.is_nil(ctx:upstream_header("injected"))
    end)

    it("replace.headers host sets the Host sent upstream", function()
      local ctx = run(conf{ replace = { headers = { "host:api.internal" } } }, { headers = { Host = "public.example" } })
      assert.equal("api.internal", ctx:upstream_header("host"))
    end)
  end)

  describe("query arguments", function()
    it("every operation; untouched pairs keep their bytes and order", function()
      local c = conf{
        remove = { querystring = { "token" } },
        rename = { querystring = { "q:search" } },
        replace = { querystring = { "page:1", "absent:x" } },
        add = { querystring = { "page:99", "lang:en" } },
        append = { querystring = { "tag:b" } },
      }
      local ctx = run(c, { path = "/p?z=%7E&token=s&q=a+b&page=5&tag=a&page=6" })
      assert.equal("z=%7E&search=a%20b&page=1&tag=a&lang=en&tag=b", ctx.upstream.query)
    end)

    it("no change leaves the query as it came; templates fill values", function()
      local ctx = run(conf{ remove = { querystring = { "nope" } } }, { path = "/p?b=2&a=%41" })
      assert.equal("b=2&a=%41", ctx.upstream.query)
      ctx = run(conf{ add = { querystring = { "user:$(headers.x-user)", "id:$(uri_captures.id)" } } },
                { path = "/users/42", route_path = "~/users/(?<id>\\d+)", headers = { ["X-User"] = "a b&c" } })
      assert.equal("user=a%20b%26c&id=42", ctx.upstream.query)
    end)
  end)

  describe("JSON bodies", function()
    local c = conf{
      remove = { body = { "password", "user.ssn" } },
      rename = { body = { "login:user.name" } },
      replace = { body = { "status:active", "count:$(query.n)" }, json_types = { "string", "number" } },
      add = { body = { "status:new", "version:2", "admin:false", "meta.via:$(headers.x-via)" },
              json_types = { "string", "number", "boolean" } },
      append = { body = { "tags:gw", "roles:$(headers.x-role)" } },
    }

    it("every operation, nested paths and typed values", function()
      local ctx = run(c, { method = "POST", path = "/p?n=3", headers = with(JSON, { ["X-Via"] = "gw", ["X-Role"] = "ops" }),
        body = '{"password":"p","login":"al","user":{"ssn":"1","age":30},"status":"old","count":0,"tags":"a"}' })
      assert.same({ user = { name = "al", age = 30 }, status = "active", count = 3, version = 2,
                    admin = false, meta = { via = "gw" }, tags = { "a", "gw" }, roles = { "ops" } },
                  cjson.decode(ctx.upstream.body))
      assert.equal("application/json", ctx:upstream_header("content-type"))
    end)

    it("a +json content type is JSON too; an empty body is an empty object", function()
      local ctx = run(conf{ add = { body = { "a:1" } } },
                      { method = "POST", headers = { ["Content-Type"] = "application/vnd.api+json; charset=utf-8" }, body = "" })
      assert.same({ a = "1" }, cjson.decode(ctx.upstream.body))
    end)

    it("invalid JSON or a JSON array goes upstream untouched by default", function()
      for _, raw in ipairs({ '{"password": ', "[1,2]", '"s"', "{'a':1}" }) do
        local ctx = run(c, { method = "POST", headers = JSON, body = raw })
        assert.is_nil(ctx.exit_status)
        assert.equal(raw, ctx.upstream.body)
      end
    end)

    it("body_policy reject answers 400 for them", function()
      local strict = conf{ remove = { body = { "x" } }, body_policy = "reject" }
      local ctx, res = run(strict, { method = "POST", headers = JSON, body = "{oops" })
      assert.equal("exit", res)
      assert.equal(400, ctx.exit_status)
      assert.same({ message = "Invalid JSON body" }, cjson.decode(ctx.exit_body))
      ctx = run(strict, { method = "POST", headers = JSON, body = "[1]" })
      assert.equal(400, ctx.exit_status)
      assert.same({ message = "JSON body is not an object" }, cjson.decode(ctx.exit_body))
    end)
  end)

  describe("form bodies", function()
    it("every operation on application/x-www-form-urlencoded, dotted names taken as they are", function()
      local c = conf{
        remove = { body = { "password" } },
        rename = { body = { "old_field:new_field" } },
        replace = { body = { "n:$(query.n)" }, json_types = { "number" } },
        add = { body = { "user.name:al", "n:9" } },
        append = { body = { "tag:b" } },
      }
      local ctx = run(c, { method = "POST", path = "/p?n=5", headers = FORM,
                           body = "password=p&old_field=v%21&n=1&tag=a&keep=%7e" })
      assert.equal("new_field=v%21&n=5&tag=a&keep=%7e&user.name=al&tag=b", ctx.upstream.body)
    end)

    it("a form without a matching field is sent as it came", function()
      local ctx = run(conf{ remove = { body = { "x" } } }, { method = "POST", headers = FORM, body = "a=1&b=%20" })
      assert.equal("a=1&b=%20", ctx.upstream.body)
    end)
  end)

  describe("bodies that are not what the rules expect", function()
    local c = conf{ rename = { body = { "old_field:new_field" } }, max_body_size = 64 }

    it("another content type, none, or a compressed body: untouched", function()
      for _, h in ipairs({ { ["Content-Type"] = "text/plain" }, {},
                           { ["Content-Type"] = "multipart/form-data; boundary=x" },
                           with(JSON, { ["Content-Encoding"] = "gzip" }) }) do
        local ctx = run(c, { method = "POST", headers = h, body = '{"old_field":1}' })
        assert.is_nil(ctx.exit_status)
        assert.equal('{"old_field":1}', ctx.upstream.body)
      end
    end)

    it("too large: untouched by default, 413 with body_policy reject", function()
      local big = '{"old_field":"' .. string.rep("x", 80) .. '"}'
      local ctx = run(c, { method = "POST", headers = JSON, body = big })
      assert.is_nil(ctx.exit_status)
      assert.equal(big, ctx.upstream.body)
      -- by the declared Content-Length, before reading
      ctx = run(c, { method = "POST", headers = with(JSON, { ["Content-Length"] = "65" }), body = '{"old_field":1}' })
      assert.equal('{"old_field":1}', ctx.upstream.body)

      local strict = conf{ rename = { body = { "old_field:new_field" } }, max_body_size = 64, body_policy = "reject" }
      local res
      ctx, res = run(strict, { method = "POST", headers = JSON, body = big })
      assert.equal("exit", res)
      assert.equal(413, ctx.exit_status)
      assert.same({ message = "Request body too large" }, cjson.decode(ctx.exit_body))
      -- at the bound it is transformed
      ctx = run(strict, { method = "POST", headers = JSON, body = '{"old_field":"' .. string.rep("x", 48) .. '"}' })
      assert.is_nil(ctx.exit_status)
      assert.matches('"new_field"', ctx.upstream.body, 1, true)
    end)

    it("max_body_size 0: no bound of the plugin's own", function()
      local ctx = run(conf{ rename = { body = { "a:b" } }, max_body_size = 0 },
                      { method = "POST", headers = JSON, body = '{"a":"' .. string.rep("x", 2000000) .. '"}' })
      assert.equal(2000000, #cjson.decode(ctx.upstream.body).b)
    end)
  end)

  describe("path and method", function()
    it("replace.uri renders captures into the upstream path; the query stays", function()
      local c = conf{ replace = { uri = "/v2/users/$(uri_captures.id)/$(query.view or 'full')" }, http_method = "PUT" }
      local ctx = run(c, { method = "GET", path = "/users/42?view=short&x=1", route_path = "~/users/(?<id>\\d+)" })
      assert.equal("/v2/users/42/short", ctx.upstream.path)
      assert.equal("view=short&x=1", ctx.upstream.query)
      assert.equal("PUT", ctx.upstream.method)
    end)

    it("a missing value or a dot segment leaves the path unchanged", function()
      local c = conf{ replace = { uri = "/v2/$(uri_captures.id)" } }
      local ctx = run(c, { path = "/users/42" })                         -- prefix route: no captures
      assert.equal("/users/42", ctx.upstream.path)
      ctx = run(conf{ replace = { uri = "/v2/$(headers.x-p)/x" } }, { path = "/a", headers = { ["X-P"] = ".." } })
      assert.equal("/a", ctx.upstream.path)
      ctx = run(conf{ replace = { uri = "/v2/$(query.p)" } }, { path = "/a?p=a%20b%2F" })
      assert.equal("/v2/a%20b/", ctx.upstream.path)
    end)

    it("a constant uri and the method alone", function()
      local ctx = run(conf{ replace = { uri = "/fixed" } }, { path = "/anything/else" })
      assert.equal("/fixed", ctx.upstream.path)
      ctx = run(conf{ http_method = "DELETE" }, { method = "POST" })
      assert.equal("DELETE", ctx.upstream.method)
      assert.equal("/", ctx.upstream.path)
    end)
  end)

  it("compiles a conf once (weak-keyed cache)", function()
    local c = conf{ add = { headers = { "x:$(query.a)" } } }
    local first = handler._compile(c)
    local calls = 0
    local T = require "gw.transform"
    local orig = T.compile
    T.compile = function(...) calls = calls + 1 return orig(...) end
    finally(function() T.compile = orig end)
    for _ = 1, 3 do run(c, { path = "/?a=1" }) end
    assert.equal(0, calls)
    assert.truthy(first.headers)
  end)

  it("hostile queries, headers and bodies never make it raise", function()
    local c = conf{
      remove = { body = { "a.b" }, querystring = { "x" } },
      rename = { body = { "a:b.c" }, querystring = { "y:z" }, headers = { "x-a:x-b" } },
      replace = { body = { "b:$(query.q)" }, uri = "/v/$(query.q)/$(headers.x-h)" },
      add = { body = { "n:$(query.n)", "h:$(headers.x-h)" }, json_types = { "number" },
              headers = { "x-q:$(query.q)" }, querystring = { "q2:$(query.q)" } },
      append = { body = { "a:$(query.q)" }, headers = { "x-h2:$(headers.x-h)" } },
    }
    local bytes = "%\0\r\n\"'{}[]:,.&=+#? \127\255abc019"
    local function junk(n)
      local t = {}
      for i = 1, n do
        local k = math.random(1, #bytes)
        t[i] = bytes:sub(k, k)
      end
      return table.concat(t)
    end
    math.randomseed(7)
    for i = 1, 300 do
      local q = junk(math.random(0, 20)):gsub("[%s%z#?\127-\255]", function(ch) return string.format("%%%02X", ch:byte()) end)
      local ct = ({ "application/json", "application/x-www-form-urlencoded", "text/plain" })[i % 3 + 1]
      local body = i % 2 == 0 and junk(math.random(0, 40)) or ('{"a":{"b":' .. junk(5) .. '}}')
      local ctx = gw.test.context{ method = "POST", path = "/p?" .. q,
        headers = { ["Content-Type"] = ct, ["X-H"] = junk(8):gsub("[%c\127-\255]", "x") }, body = body }
      assert(ctx:run(handler, "access", c), q)
      assert.is_nil(ctx.exit_status)
      assert.equal("/", ctx.upstream.path:sub(1, 1))
    end
  end)

  it("an empty config changes nothing", function()
    local ctx = run(conf{}, { method = "POST", path = "/p?a=1", headers = with(JSON, { ["X-A"] = "1" }), body = '{"a":1}' })
    assert.equal("/p", ctx.upstream.path)
    assert.equal("a=1", ctx.upstream.query)
    assert.equal('{"a":1}', ctx.upstream.body)
    assert.equal("1", ctx:upstream_header("x-a"))
  end)
end)
