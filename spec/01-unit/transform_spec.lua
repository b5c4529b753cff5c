-- gw.transform: the pieces the request- and response-transformer plugins share (templates, JSON
-- field paths, the JSON codec, ordered argument lists, the rule operations, schema checks).
local helpers = require "spec.helpers"
local T = require "gw.transform"
local cjson = require "cjson"

-- runs fn in the access phase of a request built from `req` (gw.test.context), returns its result
local function in_request(req, fn)
  local out
  local ctx = gw.test.context(req)
  ctx:run({ access = function() out = { fn() } end }, "access", {})
  return (table.unpack or unpack)(out)
end

local function render(src, req, path)
  local t = assert(T.compile_template(src, path))
  return in_request(req or {}, function() return T.render(t, {}) end)
end

describe("gw.transform templates", function()
  it("a string without $( is a constant, escapes included", function()
    assert.equal("plain", T.compile_template("plain"))
    assert.equal("price: $5", T.compile_template("price: $5"))
    assert.equal("a$(b)", T.compile_template("a$$(b)"))
    assert.equal("a$(b)", T.compile_template("a\\$(b)"))
    assert.equal("$$", T.compile_template("$$$$"))
    assert.equal("back\\slash", T.compile_template("back\\slash"))
  end)

  it("reads headers, query arguments and URI captures", function()
    local req = { path = "/users/42/items/7?id=9&tag=a&tag=b&flag&q=x+y%21",
                  route_path = "~/users/(?<id>\\d+)/items/(\\d+)",
                  headers = { ["X-User"] = "alice", ["X-Empty"] = "" } }
    assert.equal("user=alice", render("user=$(headers.x-user)", req))
    assert.equal("alice", render("$(headers.X_User)", req))
    assert.equal("alice", render('$(headers["x-user"])', req))
    assert.equal("alice", render("$(headers['X-User'])", req))
    assert.equal("[]", render("[$(headers.x-empty)]", req))
    assert.equal("9", render("$(query.id)", req))
    assert.equal("9", render("$(query_params.id)", req))
    assert.equal("a", render("$(query.tag)", req))                      -- first of a repeated key
    assert.equal("", render("$(query.flag)", req))                      -- a key without a value
    assert.equal("x y!", render("$(query.q)", req))                    -- decoded
    assert.equal("42/7", render("$(uri_captures.id)/$(uri_captures.2)", req))
    assert.equal("/users/42/items/7", render("$(uri_captures[0])", req))
    assert.equal("42-42", render('$(uri_captures["id"])-$(uri_captures[1])', req))
  end)

  it("a missing value makes the whole template missing, unless it has a fallback", function()
    local req = { path = "/x?a=1", headers = { ["X-A"] = "1" } }
    assert.is_nil(render("Bearer $(headers.authorization)", req))
    assert.is_nil(render("$(query.b)", req))
    assert.is_nil(render("$(uri_captures.id)", req))                    -- prefix route: no captures
    assert.equal("anonymous", render("$(headers.x-user or 'anonymous')", req))
    assert.equal("[none]", render('[$(query.b or "none")]', req))
    assert.equal("1", render('$(query.a or "none")', req))
    assert.equal("", render("$(headers.x-user or '')", req))
  end)

  it("a group that did not take part is missing", function()
    assert.is_nil(render("$(uri_captures.2)", { path = "/o/42", route_path = "~/o/(\\d+)(/items)?$" }))
    assert.equal("42", render("$(uri_captures.1)", { path = "/o/42", route_path = "~/o/(\\d+)(/items)?$" }))
  end)

  it("path templates percent-encode what a path cannot carry", function()
    local req = { path = "/x?v=a%20b%3Fc%23d%C3%A9" }
    assert.equal("/v2/a%20b%3Fc%23d%C3%A9", render("/v2/$(query.v)", req, true))
    assert.equal("/v2/a b?c#d\195\169", render("/v2/$(query.v)", req))
  end)

  it("refuses bad templates with a message", function()
    for src, msg in pairs({
      ["$(headers.x"] = "unclosed '$(' at position 1",
      ["a $()"] = "expected $(headers.NAME)",
      ["$(cookies.x)"] = "unknown source 'cookies' (expected headers, query or uri_captures)",
      ["$(headers)"] = "expected a name after 'headers'",
      ["$(headers.)"] = "expected a name after 'headers'",
      ["$(headers.a b)"] = "unexpected 'b'",
      ["$(headers.a or x)"] = "unexpected 'or x'",
      ["$(headers[x])"] = "expected a name after 'headers'",
      ["$(os.exit(1))"] = "unknown source 'os'",
    }) do
      local t, err = T.compile_template(src)
      assert.is_nil(t, src)
      assert.matches(msg, err, 1, true)
    end
  end)

  it("finds dot segments, also percent-encoded", function()
    assert.is_true(T.has_dot_segment("/a/../b"))
    assert.is_true(T.has_dot_segment("/a/."))
    assert.is_true(T.has_dot_segment("/a/%2E%2e/b"))
    assert.is_false(T.has_dot_segment("/a/..b/.c/v1.2"))
  end)
end)

describe("gw.transform JSON field paths", function()
  it("splits on dots; \\. is a dot inside a name", function()
    assert.same({ "user", "name" }, T.compile_path("user.name"))
    assert.same({ "a.b", "c" }, T.compile_path("a\\.b.c"))
    assert.same({ "old_field" }, T.compile_path("old_field"))
    assert.same({ "a\\b" }, T.compile_path("a\\b"))
  end)

  it("refuses empty names", function()
    for _, p in ipairs({ "", ".a", "a.", "a..b" }) do
      local segs, err = T.compile_path(p)
      assert.is_nil(segs, p)
      assert.truthy(err:find("empty", 1, true), err)
    end
  end)
end)

describe("gw.transform JSON codec", function()
  local function roundtrip(s) return assert(T.json_encode(assert(T.json_decode(s)))) end

  it("keeps empty arrays arrays and empty objects objects", function()
    assert.equal('{"a":[]}', roundtrip('{"a":[]}'))
    assert.equal('{"a":{}}', roundtrip('{"a":{}}'))
    assert.equal("[[],{},[[]]]", roundtrip('[ [ ] , { } , [ [ ] ] ]'))
    assert.equal('[1,[],"x"]', roundtrip('[1,[],"x"]'))
  end)

  it("keeps long numbers as written and prints others exactly", function()
    assert.equal('{"id":12345678901234567890}', roundtrip('{"id":12345678901234567890}'))
    assert.equal("[0.12345678901234567890123]", roundtrip("[0.12345678901234567890123]"))
    assert.equal("[9007199254740993]", roundtrip("[9007199254740993]"))
    assert.equal("[1,-2,0.1,1.5e+300,-0.25,4503599627370497]",
      roundtrip("[1, -2, 0.1, 1.5e300, -0.25, 4503599627370497]"))
    assert.equal("[0.30000000000000004]", roundtrip("[0.30000000000000004]"))
    assert.equal("[0.30000000000000004,0.1]", T.json_encode(T.array(0.1 + 0.2, 0.1)))
  end)

  it("escapes what JSON needs and keeps UTF-8 as it is", function()
    assert.equal('["a\\"b\\\\c\\n\\t\\u0001\\u007f/é"]', roundtrip('["a\\"b\\\\c\\n\\t\\u0001\\u007f\\/\\u00e9"]'))
    assert.equal('["😀"]', roundtrip('["\\ud83d\\ude00"]'))
    -- the same through the Lua decoder (an empty array routes the body there)
    assert.equal('["😀","a\\"b\\u0001é",[]]', roundtrip('["\\ud83d\\ude00","a\\"b\\u0001\\u00e9",[]]'))
    assert.equal('{"k\\"ey":null}', roundtrip('{"k\\"ey":null}'))
    local v = T.json_decode('{"k\\"ey":true,"n":null,"f":false,"e":[]}')
    assert.is_true(v['k"ey'])
    assert.equal(T.null, v.n)
    assert.is_false(v.f)
  end)

  it("refuses what is not strict JSON", function()
    for _, s in ipairs({ "", "{", '{"a":1,}', "[NaN]", "[0x10]", "{'a':1}", '["\\ud800"]', "[1] x",
                         "[[]] x", '{"a":[],}' }) do
      local v, err = T.json_decode(s)
      assert.is_nil(v, s)
      assert.is_string(err)
    end
  end)

  it("decodes scalars at the top level", function()
    assert.equal(T.null, T.json_decode("null"))
    assert.equal("x", T.json_decode('"x"'))
    assert.is_false(T.is_object(T.json_decode("[1]")))
    assert.is_false(T.is_object(T.json_decode("[]")))
    assert.is_true(T.is_object(T.json_decode("{}")))
  end)

  it("mutated JSON texts either decode to a value that survives a round trip, or are refused", function()
    local seed = '{"a":[1,2.5,[],{"b":"c\\u00e9\\n"}],"n":12345678901234567890,"t":true,"z":null,"e":{}}'
    local alphabet = '{}[]":,.-+eE0123456789 \\u"abtfn'
    math.randomseed(42)
    local decoded = 0
    for _ = 1, 2000 do
      local s = seed
      for _ = 1, math.random(1, 3) do
        local i, c = math.random(1, #s), math.random(1, #alphabet)
        local op = math.random(1, 3)
        if op == 1 then s = s:sub(1, i - 1) .. s:sub(i + 1)
        elseif op == 2 then s = s:sub(1, i - 1) .. alphabet:sub(c, c) .. s:sub(i)
        else s = s:sub(1, i - 1) .. alphabet:sub(c, c) .. s:sub(i + 1) end
      end
      local v, err = T.json_decode(s)
      if v == nil then
        assert.is_string(err, s)
      else
        decoded = decoded + 1
        local out = assert(T.json_encode(v), s)
        assert.same(cjson.decode(s), cjson.decode(out), s)
        local again = assert(T.json_encode(assert(T.json_decode(out))), s)
        assert.same(cjson.decode(out), cjson.decode(again), s)
        assert.equal(select(2, out:gsub("%[%]", "")), select(2, again:gsub("%[%]", "")), s)   -- [] kept
      end
    end
    assert.is_true(decoded > 100)
  end)

  it("encodes arrays built with T.array, and refuses what JSON cannot hold", function()
    assert.equal("[]", T.json_encode(T.array()))
    assert.equal('[1,"a"]', T.json_encode(T.array(1, "a")))
    assert.equal("{}", T.json_encode({}))
    assert.is_nil(T.json_encode({ x = math.huge }))
    assert.is_nil(T.json_encode({ f = print }))
  end)
end)

describe("gw.transform argument lists", function()
  it("parses and writes back untouched pairs byte for byte", function()
    local l = T.parse_args("b=2&a=%41+x&flag&b=3&=e")
    assert.same({ k = "b", v = "2", raw = "b=2" }, l[1])
    assert.same({ k = "a", v = "A x", raw = "a=%41+x" }, l[2])
    assert.same({ k = "flag", v = true, raw = "flag" }, l[3])
    assert.equal("b=2&a=%41+x&flag&b=3&=e", T.encode_args(l))
    assert.same({}, T.parse_args(""))
  end)
end)

describe("gw.transform rules", function()
  local function compile(conf, fields, typed)
    return T.compile(conf, fields or { json = "json", headers = "headers", args = "args" }, typed or "json")
  end

  it("compiles only the lists that have rules", function()
    local c = compile({ add = { json = { "a:1" } } })
    assert.truthy(c.json)
    assert.is_nil(c.headers)
    assert.is_false(c.templates)
    c = compile({ append = { headers = { "x:$(query.a)" } } })
    assert.is_true(c.templates)
    assert.is_true(c.headers.templated)
  end)

  it("JSON: remove, rename, replace, add, append in that order, nested paths", function()
    local c = compile({
      remove = { json = { "secret", "user.password", "missing.deep" } },
      rename = { json = { "old_field:new_field", "user.login:user.name", "flat:nested.flat", "gone:x" } },
      replace = { json = { "status:replaced", "absent:nope", "user.name:$(headers.x-name)" } },
      add = { json = { "status:not-added", "version:2", "meta.source:gw", "on:true" },
              json_types = { "string", "number", "string", "boolean" } },
      append = { json = { "tags:new", "one:b", "list:c", "obj:d", "made:e" } },
    })
    local doc = assert(T.json_decode(
      '{"secret":1,"user":{"password":"p","login":"al"},"old_field":5,"flat":1,"status":"s",'
      .. '"tags":["a"],"one":"a","list":[],"obj":{"k":1}}'))
    local changed = in_request({ headers = { ["X-Name"] = "Al" } }, function() return T.apply_json(c.json, doc, {}) end)
    assert.is_true(changed)
    assert.same({
      user = { name = "Al" }, new_field = 5, nested = { flat = 1 }, status = "replaced",
      version = 2, meta = { source = "gw" }, on = true,
      tags = { "a", "new" }, one = { "a", "b" }, list = { "c" }, obj = { { k = 1 }, "d" }, made = { "e" },
    }, doc)
    assert.equal('[]', T.json_encode(T.json_decode('{"l":[]}').l))
  end)

  it("JSON: a path through something that is not an object is left alone", function()
    local c = compile({ add = { json = { "a.b:1", "n.x:1" } }, rename = { json = { "s:a.c" } },
                        remove = { json = { "a.length" } }, replace = { json = { "arr.0:x" } } })
    local doc = assert(T.json_decode('{"a":[1],"s":"v","arr":["y"]}'))
    assert.is_true(T.apply_json(c.json, doc, nil))   -- only n.x is added
    assert.same({ a = { 1 }, s = "v", arr = { "y" }, n = { x = "1" } }, doc)
  end)

  it("JSON: nothing to do is no change; renaming to itself is nothing", function()
    local c = compile({ remove = { json = { "x" } }, rename = { json = { "a:a" } }, replace = { json = { "y:1" } } })
    local doc = { a = 1 }
    assert.is_false(T.apply_json(c.json, doc, nil))
    assert.same({ a = 1 }, doc)
  end)

  it("JSON: a template value that is missing or does not convert skips the rule", function()
    local c = compile({ add = { json = { "n:$(query.n)", "m:$(query.m)", "s:$(query.s)", "b:$(query.b)" },
                                json_types = { "number", "number", "string", "boolean" } } })
    local doc = {}
    in_request({ path = "/?n=12.5&m=abc&b=yes" }, function() return T.apply_json(c.json, doc, {}) end)
    assert.same({ n = 12.5 }, doc)
  end)

  it("arguments: remove, rename, replace, add, append keep order and untouched bytes", function()
    local c = compile({
      remove = { args = { "drop" } },
      rename = { args = { "old:new", "a:b" } },
      replace = { args = { "r:R 1", "none:x" } },
      add = { args = { "r:not-added", "added:é&=" } },
      append = { args = { "r:2" } },
    })
    local l = T.parse_args("x=%7e&drop=1&old=o&r=1&b=gone&r=dup&a=A&drop")
    assert.is_true(T.apply_args(c.args, l, nil))
    assert.equal("x=%7e&new=o&r=R%201&b=A&added=%C3%A9%26%3D&r=2", T.encode_args(l))
  end)

  it("arguments: nothing matching is no change", function()
    local c = compile({ remove = { args = { "q" } }, rename = { args = { "a:a", "m:n" } }, replace = { args = { "z:1" } } })
    local l = T.parse_args("a=1&b=2")
    assert.is_false(T.apply_args(c.args, l, nil))
    assert.equal("a=1&b=2", T.encode_args(l))
  end)

  it("headers: through an api of get/all/set/add/clear", function()
    local h = { ["x-a"] = { "1", "2" }, ["x-r"] = { "r" }, ["x-gone"] = { "g" } }
    local api = {
      get = function(n) local v = h[n:lower()] return v and v[1] end,
      all = function(n) return h[n:lower()] end,
      set = function(n, v) h[n:lower()] = type(v) == "table" and v or { v } end,
      add = function(n, v) local t = h[n:lower()] or {} t[#t + 1] = v h[n:lower()] = t end,
      clear = function(n) h[n:lower()] = nil end,
    }
    local c = compile({ remove = { headers = { "x-gone" } }, rename = { headers = { "x-a:x-b", "X-R:x_r" } },
                        replace = { headers = { "x-b: B ", "x-none:1" } }, add = { headers = { "x-b:no", "x-new:n" } },
                        append = { headers = { "x-new:m" } } })
    T.apply_headers(c.headers, api, nil)
    assert.same({ ["x-b"] = { "B" }, ["x-r"] = { "r" }, ["x-new"] = { "n", "m" } }, h)
  end)

  it("content types and encodings", function()
    assert.equal("json", T.body_kind("application/json"))
    assert.equal("json", T.body_kind("Application/JSON; charset=utf-8"))
    assert.equal("json", T.body_kind("application/vnd.api+json"))
    assert.equal("form", T.body_kind("application/x-www-form-urlencoded; charset=utf-8"))
    assert.is_nil(T.body_kind("application/jsonp"))
    assert.is_nil(T.body_kind("text/plain"))
    assert.is_nil(T.body_kind("multipart/form-data; boundary=x"))
    assert.is_nil(T.body_kind(nil))
    assert.is_true(T.encoded("gzip"))
    assert.is_false(T.encoded("identity"))
    assert.is_false(T.encoded(nil))
  end)

  it("converts to JSON types", function()
    assert.equal(12, T.convert("number", "12"))
    assert.equal(-0.5, T.convert("number", "-0.5"))
    assert.is_nil(T.convert("number", "0x10"))
    assert.is_nil(T.convert("number", "inf"))
    assert.is_nil(T.convert("number", "nan"))
    assert.is_nil(T.convert("number", "1e999"))
    assert.is_true(T.convert("boolean", "true"))
    assert.is_false(T.convert("boolean", "false"))
    assert.is_nil(T.convert("boolean", "yes"))
    assert.equal("x", T.convert("string", "x"))
  end)
end)

describe("gw.transform schema pieces", function()
  local schema = { name = "t", fields = {
    T.op_field("remove", { { "headers", "headers", "h" }, { "json", "json", "j" }, { "q", "args", "q" } }, "json"),
    T.op_field("rename", { { "headers", "headers", "h" }, { "json", "json", "j" } }, "json"),
    T.op_field("add", { { "headers", "headers", "h" }, { "json", "json", "j" } }, "json"),
    { uri = { type = "string", custom_validator = T.check_uri } },
  } }

  local function errors(conf)
    local ok, errs = helpers.validate_plugin_config(schema, conf)
    assert.is_nil(ok)
    return errs
  end

  it("fills every list with an empty default", function()
    local c = assert(helpers.validate_plugin_config(schema, {}))
    assert.same({ headers = {}, json = {}, q = {} }, c.remove)
    assert.same({ headers = {}, json = {}, json_types = {} }, c.add)
  end)

  it("names the bad rule", function()
    assert.same({ "config.add.headers[0]: 'x-a' is not a 'name:value' pair (no ':')" },
      errors({ add = { headers = { "x-a" } } }))
    assert.same({ "config.add.headers[0]: 'x a:1': 'x a' is not a header name" },
      errors({ add = { headers = { "x a:1" } } }))
    assert.same({ "config.rename.json[0]: 'a' is not an 'old:new' pair (no ':')" },
      errors({ rename = { json = { "a" } } }))
    assert.same({ "config.rename.json[0]: 'a:b..c': 'b..c' has an empty name between dots" },
      errors({ rename = { json = { "a:b..c" } } }))
    assert.same({ "config.remove.q[0]: '': empty name" }, errors({ remove = { q = { "" } } }))
    assert.same({ "config.add.json[0]: 'a:$(body.x)': invalid template: '$(body.x)': unknown source 'body' (expected headers, query or uri_captures)" },
      errors({ add = { json = { "a:$(body.x)" } } }))
    assert.same({ "config.add.json_types[0]: expected one of: string, number, boolean" },
      errors({ add = { json = { "a:1" }, json_types = { "integer" } } }))
    assert.same({ "config.add: json_types has 2 entries for 1 json rules" },
      errors({ add = { json = { "a:1" }, json_types = { "number", "number" } } }))
    assert.same({ "config.add: json_types[1] is boolean but json[1] 'b:yes' has a value that is not a boolean (true or false)" },
      errors({ add = { json = { "a:1", "b:yes" }, json_types = { "number", "boolean" } } }))
    assert.same({ "config.uri: 'v2' does not start with /" }, errors({ uri = "v2" }))
    assert.same({ "config.uri: '/a b': a path cannot hold whitespace, ? or #" }, errors({ uri = "/a b" }))
    assert.same({ "config.uri: '/a?$(query.x)': a path cannot hold whitespace, ? or #" },
      errors({ uri = "/a?$(query.x)" }))
    assert.same({ "config.uri: '/$(query.x': invalid template: unclosed '$(' at position 2" },
      errors({ uri = "/$(query.x" }))
  end)

  it("accepts templates in typed values (checked when rendered)", function()
    assert(helpers.validate_plugin_config(schema, { add = { json = { "n:$(query.n)" }, json_types = { "number" } } }))
  end)
end)
