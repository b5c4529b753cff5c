-- gw.jsonschema: the draft 7 validator compiler. Cases are written in the shape of the JSON
-- Schema test suite: a schema (JSON text), then data (JSON text) that must be valid or not; the
-- invalid ones also name the error message the validator gives for them.
local js = require "gw.jsonschema"

local function compile(schema, opts) return assert(js.compile(schema, opts)) end

-- the errors for `data` (JSON text) against `schema`, prefixed "body"; {} when valid
local function errors(schema, data, opts)
  local v = compile(schema, opts)
  local value = data
  if type(data) == "string" then
    local err
    value, err = js.decode(data)
    assert(value ~= nil, err)
  end
  local ok, errs = v.validate(value, "body")
  if ok then
    assert.is_nil(errs)
    return {}
  end
  assert.is_table(errs)
  assert.is_true(#errs > 0, "a failure reports an error")
  return errs
end

-- runs a list of { description, schema, tests = { { data, valid, [message] } } }
local function suite(groups)
  for _, g in ipairs(groups) do
    describe(g[1], function()
      for _, t in ipairs(g.tests) do
        local data, valid, message = t[1], t[2], t[3]
        it((valid and "accepts " or "refuses ") .. data, function()
          local errs = errors(g.schema, data)
          if valid then
            assert.same({}, errs)
          else
            assert.is_true(#errs > 0, "expected " .. data .. " to be invalid")
            if message then assert.equal(message, errs[1]) end
          end
        end)
      end
    end)
  end
end

local function compile_errors(schema, opts)
  local v, errs = js.compile(schema, opts)
  assert.is_nil(v, "the schema should be refused")
  return table.concat(errs, "\n")
end

describe("jsonschema type", function()
  suite{
    { "integer", schema = '{"type":"integer"}', tests = {
      { "1", true }, { "1.0", true }, { "-7", true }, { "1e3", true },
      { "1.5", false, "body: must be an integer" }, { '"1"', false, "body: must be an integer" },
      { "null", false }, { "true", false }, { "[]", false }, { "{}", false } } },
    { "number", schema = '{"type":"number"}', tests = {
      { "1", true }, { "1.5", true }, { "-0.25e-3", true },
      { '"1"', false, "body: must be a number" }, { "null", false }, { "{}", false } } },
    { "string", schema = '{"type":"string"}', tests = {
      { '""', true }, { '"x"', true }, { "1", false, "body: must be a string" }, { "null", false } } },
    { "boolean", schema = '{"type":"boolean"}', tests = {
      { "true", true }, { "false", true }, { "0", false, "body: must be a boolean" }, { '"true"', false } } },
    { "null", schema = '{"type":"null"}', tests = {
      { "null", true }, { "0", false, "body: must be null" }, { '""', false }, { "false", false } } },
    { "object and array stay apart, empty ones included", schema = '{"type":"object"}', tests = {
      { "{}", true }, { '{"a":1}', true }, { "[]", false, "body: must be an object" }, { "[1]", false } } },
    { "array", schema = '{"type":"array"}', tests = {
      { "[]", true }, { "[1,2]", true }, { '[[], {}]', true }, { "{}", false, "body: must be an array" },
      { '{"0":1}', false } } },
    { "several types", schema = '{"type":["string","null"]}', tests = {
      { '"a"', true }, { "null", true }, { "1", false, "body: must be a string or null" } } },
    { "integer and number together read as number", schema = '{"type":["integer","number","boolean"]}', tests = {
      { "1.5", true }, { "true", true }, { '"x"', false, "body: must be a number or a boolean" } } },
    { "nullable (OpenAPI) admits null", schema = '{"type":"string","nullable":true}', tests = {
      { "null", true }, { '"a"', true }, { "1", false, "body: must be a string or null" } } },
  }
end)

describe("jsonschema enum and const", function()
  suite{
    { "enum of scalars", schema = '{"enum":["red","green",1,null]}', tests = {
      { '"red"', true }, { "1", true }, { "1.0", true }, { "null", true },
      { '"blue"', false, 'body: must be one of: "red", "green", 1, null' }, { '"1"', false }, { "true", false } } },
    { "enum with structures", schema = '{"enum":[[1,2],{"a":true},[]]}', tests = {
      { "[1,2]", true }, { '{"a":true}', true }, { "[]", true },
      { "[2,1]", false }, { '{"a":false}', false }, { '{"a":true,"b":1}', false } } },
    { "const", schema = '{"const":{"k":[1,"x"]}}', tests = {
      { '{"k":[1,"x"]}', true }, { '{"k":[1,"x",null]}', false, 'body: must be equal to {"k":[1,"x"]}' },
      { '{"k":[1,"y"]}', false } } },
    { "const false is not null or 0", schema = '{"const":false}', tests = {
      { "false", true }, { "0", false, "body: must be equal to false" }, { "null", false } } },
  }
end)

describe("jsonschema numbers", function()
  suite{
    { "minimum and maximum are inclusive", schema = '{"minimum":0,"maximum":120}', tests = {
      { "0", true }, { "120", true }, { "60.5", true }, { '"x"', true },   -- not a number: ignored
      { "-1", false, "body: must be at least 0" }, { "120.01", false, "body: must be at most 120" } } },
    { "exclusive bounds", schema = '{"exclusiveMinimum":0,"exclusiveMaximum":1}', tests = {
      { "0.5", true }, { "0", false, "body: must be greater than 0" }, { "1", false, "body: must be less than 1" } } },
    { "multipleOf", schema = '{"multipleOf":0.0001}', tests = {
      { "0.0075", true }, { "12", true }, { "0.00751", false, "body: must be a multiple of 0.0001" } } },
    { "multipleOf an integer", schema = '{"type":"integer","multipleOf":5}', tests = {
      { "10", true }, { "-15", true }, { "7", false, "body: must be a multiple of 5" } } },
  }
end)

describe("jsonschema strings", function()
  suite{
    { "lengths count UTF-8 characters, not bytes", schema = '{"minLength":2,"maxLength":3}', tests = {
      { '"ab"', true }, { '"éé"', true }, { '"日本語"', true }, { '"💩💩"', true }, { "1", true },
      { '"é"', false, "body: must be at least 2 characters" },
      { '"日本語x"', false, "body: must be at most 3 characters" } } },
    { "one character", schema = '{"minLength":1,"maxLength":1}', tests = {
      { '"x"', true }, { '""', false, "body: must be at least 1 character" },
      { '"xy"', false, "body: must be at most 1 character" } } },
    { "pattern is unanchored", schema = '{"pattern":"[0-9]{3}"}', tests = {
      { '"ab123cd"', true }, { "12", true }, { '"ab12"', false, "body: must match the pattern [0-9]{3}" } } },
    { "an anchored pattern, in characters", schema = '{"pattern":"^.{2}$"}', tests = {
      { '"ab"', true }, { '"éa"', true }, { '"abc"', false } } },
  }
end)

describe("jsonschema formats", function()
  suite{
    { "email", schema = '{"format":"email"}', tests = {
      { '"joe.bloggs@example.com"', true }, { '"a+tag@sub.example.org"', true }, { "12", true },
      { '"2962"', false, "body: must be a valid email" }, { '"a@b"', false }, { '"a@@b.com"', false },
      { '".a@b.com"', false }, { '"a..b@c.com"', false }, { '"a b@c.com"', false }, { '"a@-b.com"', false } } },
    { "uuid", schema = '{"format":"uuid"}', tests = {
      { '"2eb8aa08-aa98-11ea-b4aa-73b441d16380"', true }, { '"2EB8AA08-AA98-11EA-B4AA-73B441D16380"', true },
      { '"2eb8aa08aa9811eab4aa73b441d16380"', false, "body: must be a valid uuid" },
      { '"2eb8aa08-aa98-11ea-b4aa-73b441d1638"', false }, { '"2eb8aa08-aa98-11ea-b4aa-73b441d1638g"', false } } },
    { "date-time (RFC 3339)", schema = '{"format":"date-time"}', tests = {
      { '"1963-06-19T08:30:06.283185Z"', true }, { '"1963-06-19T08:30:06Z"', true },
      { '"1937-01-01T12:00:27.87+00:20"', true }, { '"1990-12-31T15:59:60-08:00"', true },
      { '"1963-06-19t08:30:06z"', true }, { '"2024-02-29T00:00:00Z"', true },
      { '"1990-02-31T15:59:59.123-08:00"', false, "body: must be a valid date-time" },
      { '"2023-02-29T00:00:00Z"', false }, { '"1990-12-31T15:59:59-24:00"', false },
      { '"06/19/1963 08:30:06 PST"', false }, { '"2013-350T01:01:01"', false }, { '"1963-06-19T08:30:06"', false } } },
    { "date", schema = '{"format":"date"}', tests = {
      { '"1963-06-19"', true }, { '"2000-02-29"', true }, { '"1900-02-29"', false, "body: must be a valid date" },
      { '"1963-13-01"', false }, { '"1963-6-19"', false } } },
    { "time", schema = '{"format":"time"}', tests = {
      { '"08:30:06Z"', true }, { '"08:30:06.5+02:00"', true }, { '"24:00:00Z"', false, "body: must be a valid time" },
      { '"08:30:06"', false } } },
    { "uri", schema = '{"format":"uri"}', tests = {
      { '"http://foo.bar/?baz=qux#quux"', true }, { '"urn:isbn:0451450523"', true },
      { '"mailto:John.Doe@example.com"', true }, { '"http://[2001:db8::7]/c=GB?objectClass?one"', true },
      { '"//foo.bar/?baz=qux#quux"', false, "body: must be a valid uri" }, { '"abc"', false },
      { '"http:// shouldfail.com"', false }, { '"\\\\\\\\WINDOWS\\\\fileshare"', false }, { '"http://x/%zz"', false } } },
    { "uri-reference", schema = '{"format":"uri-reference"}', tests = {
      { '"//foo.bar/?baz=qux"', true }, { '"/abc"', true }, { '"#frag"', true },
      { '"a b"', false, "body: must be a valid uri-reference" } } },
    { "hostname", schema = '{"format":"hostname"}', tests = {
      { '"www.example.com"', true }, { '"localhost"', true }, { '"-a.com"', false, "body: must be a valid hostname" },
      { '"a_b.com"', false }, { '"' .. ("a"):rep(64) .. '.com"', false } } },
    { "ipv4", schema = '{"format":"ipv4"}', tests = {
      { '"192.168.0.1"', true }, { '"0.0.0.0"', true }, { '"256.0.0.1"', false, "body: must be a valid ipv4" },
      { '"1.2.3"', false }, { '"01.2.3.4"', false }, { '"1.2.3.4.5"', false } } },
    { "ipv6", schema = '{"format":"ipv6"}', tests = {
      { '"::1"', true }, { '"::"', true }, { '"2001:db8::7"', true }, { '"1:2:3:4:5:6:7:8"', true },
      { '"::ffff:192.168.0.1"', true }, { '"fe80::"', true },
      { '"12345::"', false, "body: must be a valid ipv6" }, { '"1::2::3"', false }, { '"1:2:3:4:5:6:7:8:9"', false },
      { '"1:2:3:4:5:6:7"', false }, { '":1:2:3:4:5:6:7"', false }, { '"::ffff:999.1.1.1"', false }, { '"g::1"', false } } },
    { "regex", schema = '{"format":"regex"}', tests = {
      { '"^a+$"', true }, { '"(a"', false, "body: must be a valid regex" } } },
  }
end)

describe("jsonschema arrays", function()
  suite{
    { "items as one schema", schema = '{"items":{"type":"integer"}}', tests = {
      { "[1,2,3]", true }, { "[]", true }, { '{"a":"x"}', true },
      { '[1,"x",3,"y"]', false, "body[1]: must be an integer" } } },
    { "items as a tuple, additionalItems", schema = '{"items":[{"type":"string"},{"type":"integer"}],"additionalItems":false}', tests = {
      { '["a",1]', true }, { '["a"]', true }, { '[1,"a"]', false, "body[0]: must be a string" },
      { '["a",1,null]', false, "body[2]: is not allowed" } } },
    { "tuple with a schema for the rest", schema = '{"items":[{"const":"head"}],"additionalItems":{"type":"number"}}', tests = {
      { '["head",1,2.5]', true }, { '["head",1,"x"]', false, "body[2]: must be a number" } } },
    { "minItems, maxItems", schema = '{"minItems":1,"maxItems":2}', tests = {
      { "[1]", true }, { "[1,2]", true }, { "[]", false, "body: must have at least 1 item" },
      { "[1,2,3]", false, "body: must have at most 2 items" } } },
    { "uniqueItems", schema = '{"uniqueItems":true}', tests = {
      { "[1,2,3]", true }, { '[1,"1",true]', true }, { '[{"a":1},{"a":2}]', true }, { "[[1],[2]]", true },
      { "[1,2,1]", false, "body: must not contain duplicate items" }, { "[1,1.0]", false },
      { '[{"a":1,"b":[2]},{"b":[2],"a":1}]', false }, { "[0,1,2,3,4,5,6,7,8,9,10,11,12,9]", false },
      { "[[0],[1],[2],[3],[4],[5],[6],[7],[8],[9],[3]]", false }, { "[0,1,2,3,4,5,6,7,8,9,10,11]", true } } },
    { "contains", schema = '{"contains":{"minimum":5}}', tests = {
      { "[1,7]", true }, { "[1,2]", false, "body: must contain at least one matching item" }, { "[]", false } } },
  }
end)

describe("jsonschema objects", function()
  suite{
    { "required names each missing property", schema = '{"required":["email","name"]}', tests = {
      { '{"email":1,"name":2}', true }, { '{"email":null,"name":false}', true }, { "[]", true },
      { '{"name":"x"}', false, "body.email: is required" } } },
    { "properties", schema = '{"properties":{"name":{"type":"string"},"age":{"type":"integer"}}}', tests = {
      { '{"name":"a","age":3}', true }, { '{"other":1}', true }, { '{"age":"3"}', false, "body.age: must be an integer" } } },
    { "additionalProperties false", schema = '{"properties":{"a":{}},"additionalProperties":false}', tests = {
      { '{"a":1}', true }, { '{"a":1,"b":2}', false, "body.b: is not allowed" } } },
    { "additionalProperties as a schema", schema = '{"properties":{"a":{}},"additionalProperties":{"type":"boolean"}}', tests = {
      { '{"a":1,"b":true}', true }, { '{"a":1,"b":2}', false, "body.b: must be a boolean" } } },
    { "patternProperties", schema = '{"patternProperties":{"^x-":{"type":"string"}},"additionalProperties":false}', tests = {
      { '{"x-a":"1"}', true }, { '{"x-a":1}', false, "body.x-a: must be a string" },
      { '{"y":"1"}', false, "body.y: is not allowed" } } },
    { "min/maxProperties", schema = '{"minProperties":1,"maxProperties":2}', tests = {
      { '{"a":1}', true }, { "{}", false, "body: must have at least 1 property" },
      { '{"a":1,"b":2,"c":3}', false, "body: must have at most 2 properties" } } },
    { "dependencies (names)", schema = '{"dependencies":{"card":["billing"]}}', tests = {
      { '{"card":1,"billing":2}', true }, { '{"billing":2}', true },
      { '{"card":1}', false, "body.billing: is required when card is present" } } },
    { "dependencies (schema)", schema = '{"dependencies":{"card":{"required":["cvc"]}}}', tests = {
      { '{"card":1,"cvc":2}', true }, { '{"card":1}', false, "body.cvc: is required" } } },
    { "propertyNames", schema = '{"propertyNames":{"maxLength":3}}', tests = {
      { '{"abc":1}', true }, { '{"abcd":1}', false, "body.abcd: is not a valid property name" } } },
    { "odd property names are quoted in paths", schema = '{"properties":{"a b":{"type":"string"}}}', tests = {
      { '{"a b":1}', false, 'body["a b"]: must be a string' } } },
  }
end)

describe("jsonschema combinators", function()
  suite{
    { "allOf", schema = '{"allOf":[{"required":["a"]},{"required":["b"]}]}', tests = {
      { '{"a":1,"b":2}', true }, { '{"a":1}', false, "body.b: is required" } } },
    { "anyOf", schema = '{"anyOf":[{"type":"string"},{"minimum":2}]}', tests = {
      { '"x"', true }, { "3", true }, { "1", false, "body: must match at least one of the schemas in anyOf" } } },
    { "oneOf", schema = '{"oneOf":[{"type":"integer"},{"minimum":2}]}', tests = {
      { "1", true }, { "2.5", true }, { "3", false, "body: must match exactly one of the schemas in oneOf (matched 2)" },
      { "1.5", false, "body: must match exactly one of the schemas in oneOf (matched 0)" } } },
    { "not", schema = '{"not":{"type":"integer"}}', tests = {
      { '"a"', true }, { "1", false, "body: must not match the schema in not" } } },
    { "if/then/else", schema = '{"if":{"properties":{"kind":{"const":"card"}}},"then":{"required":["number"]},"else":{"required":["iban"]}}', tests = {
      { '{"kind":"card","number":"1"}', true }, { '{"kind":"bank","iban":"x"}', true },
      { '{"kind":"card"}', false, "body.number: is required" }, { '{"kind":"bank"}', false, "body.iban: is required" } } },
    { "boolean schemas", schema = '{"properties":{"yes":true,"no":false}}', tests = {
      { '{"yes":1}', true }, { '{"no":1}', false, "body.no: is not allowed" } } },
    { "anyOf errors inside do not leak", schema = '{"properties":{"a":{"anyOf":[{"required":["x"]},{"required":["y"]}]}}}', tests = {
      { '{"a":{"y":1}}', true }, { '{"a":{}}', false, "body.a: must match at least one of the schemas in anyOf" } } },
  }
end)

describe("jsonschema $ref", function()
  suite{
    { "to definitions", schema = '{"definitions":{"pos":{"type":"integer","minimum":1}},"properties":{"n":{"$ref":"#/definitions/pos"}}}', tests = {
      { '{"n":3}', true }, { '{"n":0}', false, "body.n: must be at least 1" } } },
    { "recursive, to the root", schema = '{"properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#"}}}}', tests = {
      { '{"v":1,"kids":[{"v":2,"kids":[{"v":3}]}]}', true },
      { '{"v":1,"kids":[{"v":2,"kids":[{"v":"x"}]}]}', false, "body.kids[0].kids[0].v: must be an integer" } } },
    { "siblings of $ref are ignored (draft 7)", schema = '{"definitions":{"s":{"type":"string"}},"properties":{"a":{"$ref":"#/definitions/s","maxLength":1}}}', tests = {
      { '{"a":"long"}', true }, { '{"a":1}', false, "body.a: must be a string" } } },
    { "JSON pointer escapes", schema = '{"definitions":{"a/b":{"type":"integer"},"c~d":{"type":"string"}},"properties":{"x":{"$ref":"#/definitions/a~1b"},"y":{"$ref":"#/definitions/c~0d"}}}', tests = {
      { '{"x":1,"y":"s"}', true }, { '{"x":"1"}', false, "body.x: must be an integer" } } },
  }
end)

describe("jsonschema validation runs", function()
  it("collects every error, in a stable order, up to max_errors", function()
    local schema = { type = "object", required = { "email", "name" }, additionalProperties = false,
      properties = { email = { type = "string", format = "email" }, name = { type = "string", minLength = 2 },
                     age = { type = "integer", minimum = 0, maximum = 120 } } }
    assert.same({ "body.age: must be at most 120", "body.email: must be a valid email",
                  "body.name: must be at least 2 characters" },
                errors(schema, '{"email":"nope","name":"A","age":121}'))
    assert.same({ "body.email: is required", "body.name: is required" }, errors(schema, "{}"))
    local big = {}
    for i = 1, 50 do big[i] = '"f' .. i .. '":1' end
    local v = compile({ additionalProperties = false }, { max_errors = 5 })
    local ok, errs = v.validate(js.decode("{" .. table.concat(big, ",") .. "}"), "body")
    assert.is_false(ok)
    assert.equal(5, #errs)
    v = compile({ additionalProperties = false })
    ok, errs = v.validate(js.decode("{" .. table.concat(big, ",") .. "}"), "body")
    assert.equal(20, #errs)
  end)

  it("appends to a list given, and stops once it is full", function()
    local v = compile({ type = "integer" }, { max_errors = 2 })
    local list = { "query.a: x" }
    local ok, errs = v.validate("s", "path", list)
    assert.is_false(ok)
    assert.equal(list, errs)
    assert.same({ "query.a: x", "path: must be an integer" }, list)
    ok = v.validate("s", "path", list)
    assert.is_false(ok)
    assert.equal(2, #list)
  end)

  it("reports the root without a prefix as (root)", function()
    local ok, errs = compile({ type = "string" }).validate(1)
    assert.is_false(ok)
    assert.same({ "(root): must be a string" }, errs)
    ok, errs = compile({ properties = { a = { type = "string" } } }).validate({ a = 1 })
    assert.same({ "a: must be a string" }, errs)
  end)

  it("takes schemas as Lua tables (YAML) or JSON text, and the same validator many times", function()
    local a = compile({ type = "object", properties = { n = { type = "integer" } } })
    local b = compile('{"type":"object","properties":{"n":{"type":"integer"}}}')
    for _ = 1, 3 do
      assert.is_true((a.validate({ n = 1 }, "body")))
      assert.is_true((b.validate({ n = 1 }, "body")))
      assert.same({ "body.n: must be an integer" }, select(2, a.validate({ n = "1" }, "body")))
      assert.same({ "body.n: must be an integer" }, select(2, b.validate({ n = "1" }, "body")))
    end
  end)

  it("coerces strings for parameters when asked", function()
    local schema = { type = "object", required = { "limit" }, properties = {
      limit = { type = "integer", minimum = 1, maximum = 100 }, ratio = { type = "number" },
      debug = { type = "boolean" }, tag = { type = "array", items = { type = "integer" } },
      name = { type = "string", maxLength = 3 } } }
    local v = compile(schema, { coerce = true })
    assert.is_true((v.validate({ limit = "10", ratio = "0.5", debug = "true", tag = { "1", "2" }, name = "abc" }, "query")))
    assert.is_true((v.validate({ limit = "-0" == "x" and "" or "1", tag = "7" }, "query")))
    local _, errs = v.validate({ limit = "ten", ratio = "1e", debug = "yes", tag = { "1", "x" }, name = "12345" }, "query")
    assert.same({ "query.debug: must be a boolean", "query.limit: must be an integer", "query.name: must be at most 3 characters",
                  "query.ratio: must be a number", "query.tag[1]: must be an integer" }, errs)
    _, errs = v.validate({ limit = "0" }, "query")
    assert.same({ "query.limit: must be at least 1" }, errs)
    _, errs = v.validate({ limit = "1.5" }, "query")
    assert.same({ "query.limit: must be an integer" }, errs)
    -- without coerce, a string is a string
    _, errs = compile(schema).validate({ limit = "10" }, "query")
    assert.same({ "query.limit: must be an integer" }, errs)
  end)

  it("lowercases property names for headers", function()
    local v = compile({ required = { "X-Request-Id" }, properties = { ["X-Request-Id"] = { format = "uuid" } } },
                      { lower_keys = true })
    local _, errs = v.validate({ ["x-request-id"] = "nope" }, "header")
    assert.same({ "header.x-request-id: must be a valid uuid" }, errs)
    _, errs = v.validate({}, "header")
    assert.same({ "header.x-request-id: is required" }, errs)
  end)

  it("leaves a valid value's tables alone, and is quick on them", function()
    local v = compile({ type = "object", required = { "a" }, properties = {
      a = { type = "string", minLength = 2, maxLength = 50, pattern = "^[a-z]+$" },
      b = { type = "array", items = { type = "integer", minimum = 0 }, maxItems = 10 },
      c = { enum = { "x", "y" } } } })
    local value = js.decode('{"a":"hello","b":[1,2,3],"c":"x"}')
    -- LuaJIT's traces are GC objects too: compiling them (at first, and side traces later, at a
    -- point that varies from run to run) shows in the count once. What validating allocates shows
    -- in every window, so the least of three windows is what 10000 runs allocate.
    local grown = math.huge
    for _ = 1, 3 do
      collectgarbage()
      collectgarbage("stop")
      local before = collectgarbage("count")
      for _ = 1, 10000 do assert(v.validate(value, "body")) end
      grown = math.min(grown, collectgarbage("count") - before)
      collectgarbage("restart")
    end
    assert.is_true(grown < 64, "validating a valid value allocated " .. grown .. " kB over 10000 runs")
  end)
end)

describe("jsonschema decode", function()
  it("marks empty arrays, keeps empty objects plain, and decodes like cjson otherwise", function()
    local v = assert(js.decode('{"a":[],"b":{},"c":[1,[],{"d":"\\u00e9\\ud83d\\udca9\\n"}],"e":null,"f":-1.5e2}'))
    assert.equal(js.array_mt, getmetatable(v.a))
    assert.is_nil(getmetatable(v.b))
    assert.equal(js.array_mt, getmetatable(v.c[2]))
    assert.equal("é💩\n", v.c[3].d)
    assert.equal(js.null, v.e)
    assert.equal(-150, v.f)
    v = assert(js.decode('{"a":[ \n\t ],"b":[1,[\r\n]]}'))
    assert.equal(js.array_mt, getmetatable(v.a))
    assert.equal(js.array_mt, getmetatable(v.b[2]))
    -- without an empty array the fast path (cjson) answers
    local w = assert(js.decode('{"a":[1],"b":{}}'))
    assert.same({ a = { 1 }, b = {} }, w)
  end)

  it("refuses what is not JSON, on both paths", function()
    for _, bad in ipairs({ "", " ", "{", '{"a":}', "[1,]", "NaN", "Infinity", "0x10", "01", '"\\x"', "[] x",
                           '{"a":1}}', "'a'", "[-]", "[1e]", '["\\ud800"]', "tru" }) do
      assert.is_nil((js.decode(bad)), bad)
      assert.is_nil((js.decode(bad)), bad)
      assert.is_nil((js.decode("[" .. bad .. ",[]]")), "[" .. bad .. ",[]]")
    end
    assert.is_nil((js.decode(("["):rep(600) .. ("]"):rep(600))))
    assert.is_nil((js.decode(("[1,"):rep(600) .. "1" .. ("]"):rep(600))))
    assert.is_not_nil(js.decode(("["):rep(100) .. ("]"):rep(100)))
  end)

  it("encodes with / unescaped, backslashes kept", function()
    assert.equal('["a/b","c\\\\/d"]', js.encode({ "a/b", "c\\/d" }))
    assert.same({ "a/b", "c\\/d" }, js.decode(js.encode({ "a/b", "c\\/d" })))
  end)

  it("decodes as lua-cjson does where lua-cjson is exact", function()
    local cjson = require "cjson"
    for _, text in ipairs({ '{"a":[1,2.5,-3e2,true,false,null,"x\\"y\\\\z\\/"],"b":{"c":{}}}', '"plain"', "0", "-0.5",
                            '[{"k":"\\u0041"}]', '{"":1}', '"a\tb"', "[1.]", "[1.e5]", "  [ 1 , 2 ]  " }) do
      assert.same(cjson.decode(text), js.decode(text))
    end
  end)
end)

describe("jsonschema compile errors", function()
  it("names each bad keyword with its path", function()
    local e = compile_errors({ type = "object", properties = {
      a = { type = "strng" }, b = { minimum = "0" }, c = { pattern = "([a-z" }, d = { format = "emial" },
      e = { minLength = -1 }, f = { maxItems = 1.5 }, g = { required = true }, h = { enum = {} },
      i = { exclusiveMinimum = true }, j = { multipleOf = 0 }, k = { minLenght = 2 }, l = { items = "x" },
      m = { allOf = {} }, n = { ["$ref"] = "#/definitions/missing" }, o = { ["$ref"] = "http://x/s.json" },
      p = { type = { "string", "string" } }, q = { uniqueItems = "yes" }, r = { type = 3 } } })
    for _, want in ipairs({
      'properties.a.type: unknown type "strng" (expected one of: array, boolean, integer, null, number, object, string)',
      "properties.b.minimum: must be a number",
      "properties.c.pattern: invalid regex: missing terminating ] for character class at offset 5",
      'properties.d.format: unknown format "emial"',
      "properties.e.minLength: must be a non-negative integer",
      "properties.f.maxItems: must be a non-negative integer",
      "properties.g.required: must be an array of property names (the draft 4 boolean form is not supported)",
      "properties.h.enum: must be a non-empty array",
      "properties.i.exclusiveMinimum: must be a number (the draft 4 boolean form is not supported)",
      "properties.j.multipleOf: must be greater than 0",
      "properties.k.minLenght: unknown keyword",
      "properties.l.items: a schema must be an object or a boolean",
      "properties.m.allOf: must be a non-empty array of schemas",
      "properties.n.$ref: cannot resolve #/definitions/missing",
      'properties.o.$ref: only local references ("#/definitions/...") are supported',
      'properties.p.type[1]: duplicate type "string"',
      "properties.q.uniqueItems: must be a boolean",
      "properties.r.type: must be a type name or a non-empty array of type names",
    }) do
      assert.matches(want, e, 1, true)
    end
  end)

  it("refuses bad JSON text, non-schemas and $ref loops that never descend", function()
    assert.matches("(root): invalid JSON", compile_errors('{"type":'), 1, true)
    assert.matches("(root): a schema must be an object or a boolean", compile_errors({ 1, 2 }), 1, true)
    assert.matches("(root): a schema must be an object or a boolean", compile_errors("[]"), 1, true)
    assert.matches("refers to itself", compile_errors({ definitions = {
      a = { ["$ref"] = "#/definitions/b" }, b = { allOf = { { ["$ref"] = "#/definitions/a" } } } } }), 1, true)
    assert.matches("refers to itself", compile_errors({ ["$ref"] = "#" }), 1, true)
    assert.matches("definitions.x.type", compile_errors({ definitions = { x = { type = "nope" } } }), 1, true)
  end)

  it("accepts annotations and x- extensions", function()
    assert.is_truthy(js.compile({ title = "t", description = "d", default = 1, examples = { 1 }, ["$schema"] =
      "http://json-schema.org/draft-07/schema#", ["$id"] = "x", ["$comment"] = "c", readOnly = true, writeOnly = false,
      example = 2, deprecated = false, ["x-internal"] = true, contentMediaType = "text/plain", contentEncoding = "base64" }))
    assert.is_true(js.check({ type = "object" }))
    local ok, msg = js.check({ type = "nope", minimum = "x" })
    assert.is_nil(ok)
    assert.matches("; ", msg, 1, true)
  end)
end)
