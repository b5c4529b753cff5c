-- gw.schema: validation of values against plugin schemas, defaults, and check_schema.
local schema = require("gw.schema")
local cjson = require("cjson")

local function errors_of(s, v)
  local out, errs = schema.validate(s, v)
  assert.is_nil(out)
  local lines = {}
  for i, e in ipairs(errs) do lines[i] = (e.path ~= "" and (e.path .. ": ") or "") .. e.msg end
  return lines
end

local function one(field, v)
  return errors_of({ fields = { { f = field } } }, { f = v })
end

describe("gw.schema.validate", function()
  describe("types", function()
    local cases = {
      { "string", 1, "expected a string" },
      { "number", "1", "expected a number" },
      { "integer", 1.5, "expected an integer" },
      { "integer", "1", "expected an integer" },
      { "boolean", "true", "expected a boolean" },
      { "array", { a = 1 }, "expected an array" },
      { "array", "x", "expected an array" },
      { "set", { a = 1 }, "expected a set" },
      { "map", { 1, 2 }, "expected a map" },
      { "map", 3, "expected a map" },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. " rejects " .. cjson.encode(c[2]), function()
        assert.same({ "f: " .. c[3] }, one({ type = c[1] }, c[2]))
      end)
    end

    it("record rejects a non-table", function()
      assert.same({ "f: expected a record" },
                  one({ type = "record", fields = { { a = { type = "string" } } } }, "x"))
    end)

    it("accepts values of the right type", function()
      local s = { fields = {
        { s = { type = "string" } }, { n = { type = "number" } }, { i = { type = "integer" } },
        { b = { type = "boolean" } }, { a = { type = "array" } }, { m = { type = "map" } },
        { x = { type = "any" } },
      } }
      local v = { s = "x", n = 1.5, i = 3, b = false, a = { 1, "2" }, m = { k = 1 }, x = print }
      assert.same(v, schema.validate(s, v))
    end)

    it("treats the empty table as an empty array and an empty map", function()
      assert.same({ a = {}, m = {} },
                  schema.validate({ fields = { { a = { type = "array" } }, { m = { type = "map" } } } }, { a = {}, m = {} }))
    end)
  end)

  describe("attributes", function()
    it("required", function()
      assert.same({ "f: required field missing" }, errors_of({ fields = { { f = { type = "string", required = true } } } }, {}))
    end)

    it("treats an explicit null as absent", function()
      assert.same({ "f: required field missing" },
                  errors_of({ fields = { { f = { type = "string", required = true } } } }, { f = cjson.null }))
      assert.same({ f = "d" }, schema.validate({ fields = { { f = { type = "string", default = "d" } } } }, { f = cjson.null }))
    end)

    it("unknown fields", function()
      assert.same({ "other: unknown field", "zzz: unknown field" },
                  errors_of({ fields = { { f = { type = "string" } } } }, { zzz = 1, other = 2 }))
    end)

    it("one_of", function()
      assert.same({ "f: expected one of: a, b" }, one({ type = "string", one_of = { "a", "b" } }, "c"))
      assert.same({ "f: expected one of: 1, 2" }, one({ type = "integer", one_of = { 1, 2 } }, 3))
    end)

    it("not_one_of and eq", function()
      assert.same({ "f: must not be one of: x" }, one({ type = "string", not_one_of = { "x" } }, "x"))
      assert.same({ "f: value must be 3" }, one({ type = "number", eq = 3 }, 4))
    end)

    it("between", function()
      assert.same({ "f: value should be between 1 and 10" }, one({ type = "integer", between = { 1, 10 } }, 11))
      assert.same({ "f: value should be between 1 and 10" }, one({ type = "integer", between = { 1, 10 } }, 0))
      assert.same({ f = 10 }, schema.validate({ fields = { { f = { type = "integer", between = { 1, 10 } } } } }, { f = 10 }))
    end)

    it("gt", function()
      assert.same({ "f: value must be greater than 0" }, one({ type = "number", gt = 0 }, 0))
    end)

    it("len_min, len_max, len_eq on strings and arrays", function()
      assert.same({ "f: length must be at least 3" }, one({ type = "string", len_min = 3 }, "ab"))
      assert.same({ "f: length must be at most 1" }, one({ type = "string", len_max = 1 }, "ab"))
      assert.same({ "f: length must be 2" }, one({ type = "string", len_eq = 2 }, "abc"))
      assert.same({ "f: length must be at least 1" }, one({ type = "array", len_min = 1 }, {}))
    end)

    it("match, not_match, starts_with", function()
      assert.same({ 'f: must match the pattern "^%d+$"' }, one({ type = "string", match = "^%d+$" }, "12a"))
      assert.same({ 'f: must not match the pattern "%s"' }, one({ type = "string", not_match = "%s" }, "a b"))
      assert.same({ 'f: must start with "/"' }, one({ type = "string", starts_with = "/" }, "x"))
    end)

    it("reports every failed check of a value", function()
      assert.same({ "f: expected one of: aaaa", "f: length must be at least 3" },
                  one({ type = "string", one_of = { "aaaa" }, len_min = 3 }, "b"))
    end)
  end)

  describe("defaults", function()
    local s = { fields = {
      { name = { type = "string", default = "x" } },
      { list = { type = "array", elements = { type = "string" }, default = { "a", "b" } } },
      { limits = { type = "record", fields = {
        { second = { type = "number" } },
        { minute = { type = "number", default = 60 } },
      } } },
      { auth = { type = "record", fields = { { key = { type = "string", required = true } } } } },
    } }

    it("fills defaults, including those of absent records", function()
      assert.same({ name = "x", list = { "a", "b" }, limits = { minute = 60 } }, schema.validate(s, {}))
    end)

    it("fills defaults for a nil or null root", function()
      assert.same({ name = "x", list = { "a", "b" }, limits = { minute = 60 } }, schema.validate(s, nil))
      assert.same({ name = "x", list = { "a", "b" }, limits = { minute = 60 } }, schema.validate(s, cjson.null))
    end)

    it("returns a deep copy and never shares defaults", function()
      local input = { limits = { second = 1 } }
      local a = schema.validate(s, input)
      local b = schema.validate(s, {})
      assert.are_not.equal(input.limits, a.limits)
      assert.same({ second = 1 }, input.limits)
      a.list[1] = "changed"
      assert.same({ "a", "b" }, b.list)
      assert.same({ "a", "b" }, schema.validate(s, {}).list)
    end)

    it("validates a present record with a required field", function()
      assert.same({ "auth.key: required field missing" }, errors_of(s, { auth = {} }))
    end)
  end)

  describe("containers", function()
    it("reports array elements with 0-based indices", function()
      assert.same({ "f[1]: expected a string", "f[2]: expected a string" },
                  one({ type = "array", elements = { type = "string" } }, { "a", 1, cjson.null }))
    end)

    it("keeps null items of arrays of any", function()
      assert.same({ f = { 1, cjson.null } },
                  schema.validate({ fields = { { f = { type = "array", elements = { type = "any" } } } } }, { f = { 1, cjson.null } }))
    end)

    it("dedups sets", function()
      assert.same({ f = { "a", "b" } },
                  schema.validate({ fields = { { f = { type = "set", elements = { type = "string" } } } } }, { f = { "a", "b", "a" } }))
    end)

    it("checks map keys and values", function()
      assert.same({ "f.k: expected a number" },
                  one({ type = "map", keys = { type = "string" }, values = { type = "number" } }, { k = "x" }))
      assert.same({ "f.1: invalid key: expected a string" },
                  one({ type = "map", keys = { type = "string" }, values = { type = "number" } }, { [1] = 2, a = 1 }))
    end)

    it("reports nested paths", function()
      local s = { fields = { { rules = { type = "array", elements = { type = "record", fields = {
        { limit = { type = "integer", required = true } },
        { by = { type = "string", one_of = { "ip", "consumer" } } },
      } } } } } }
      assert.same({ "rules[0].by: expected one of: ip, consumer", "rules[1].limit: required field missing",
                    "rules[1].x: unknown field" },
                  errors_of(s, { rules = { { limit = 1, by = "x" }, { x = 1 } } }))
    end)

    it("accepts a map of fields and a bare fields list", function()
      assert.same({ a = "x" }, schema.validate({ a = { type = "string", default = "x" } }, {}))
      assert.same({ a = "x" }, schema.validate({ { a = { type = "string", default = "x" } } }, {}))
    end)
  end)

  describe("custom validators", function()
    it("runs the schema custom_validator on the normalized value", function()
      local seen
      local s = { fields = { { a = { type = "integer", default = 1 } } },
                  custom_validator = function(conf) seen = conf return conf.a < 5, "a must be small" end }
      assert.same({ a = 1 }, schema.validate(s, {}))
      assert.same({ a = 1 }, seen)
      assert.same({ "a must be small" }, errors_of(s, { a = 7 }))
    end)

    it("does not run it when fields have errors", function()
      local called = false
      local s = { fields = { { a = { type = "integer" } } }, custom_validator = function() called = true return true end }
      errors_of(s, { a = "x" })
      assert.is_false(called)
    end)

    it("runs field custom_validators and reports thrown errors", function()
      assert.same({ "f: not even" }, one({ type = "integer", custom_validator = function(v) return v % 2 == 0, "not even" end }, 3))
      assert.same({ "f: invalid value" }, one({ type = "integer", custom_validator = function() return false end }, 3))
      local errs = one({ type = "integer", custom_validator = function() error("boom", 0) end }, 3)
      assert.same({ "f: custom validator failed: boom" }, errs)
    end)
  end)

  it("validate_partial returns the best-effort value along with the errors", function()
    local out, errs = schema.validate_partial({ fields = { { a = { type = "string" } }, { b = { type = "string", default = "d" } } } },
                                              { a = 1 })
    assert.same({ b = "d" }, out)
    assert.same({ { path = "a", msg = "expected a string" } }, errs)
  end)
end)

describe("gw.schema.check_schema", function()
  local function problems(s)
    local ok, errs = schema.check_schema(s)
    assert.is_nil(ok)
    local lines = {}
    for i, e in ipairs(errs) do lines[i] = e.path .. ": " .. e.msg end
    return lines
  end

  it("accepts a well-formed schema, Kong-only attributes included", function()
    assert.is_true(schema.check_schema({
      name = "x",
      fields = {
        { a = { type = "string", required = true, one_of = { "x" }, default = "x", description = "d" } },
        { b = { type = "array", elements = { type = "integer", between = { 1, 5 } }, len_min = 1 } },
        { c = { type = "map", keys = { type = "string" }, values = { type = "record", fields = {} } } },
        { d = { type = "string", referenceable = true, encrypted = true, match = "^%w+$" } },
      },
      custom_validator = function() return true end,
    }))
  end)

  it("reports unknown types and attributes", function()
    assert.same({ "fields[0].a.type: unknown type \"strin\"" }, problems({ fields = { { a = { type = "strin" } } } }))
    assert.same({ "fields[0].a.requried: unknown attribute" }, problems({ fields = { { a = { type = "string", requried = true } } } }))
    assert.same({ "fields[0].a.type: missing type" }, problems({ fields = { { a = {} } } }))
  end)

  it("reports structural mistakes", function()
    assert.same({ ": schema must be a table" }, problems("x"))
    assert.same({ "fields: required field missing" }, problems({}))
    assert.same({ "fields[0]: expected exactly one field name" }, problems({ fields = { { a = { type = "string" }, b = { type = "string" } } } }))
    assert.same({ "fields[1]: duplicate field \"a\"" }, problems({ fields = { { a = { type = "string" } }, { a = { type = "string" } } } }))
    assert.same({ "fields[0].r.fields: a record needs fields" }, problems({ fields = { { r = { type = "record" } } } }))
    assert.same({ "fields[0].s.fields: only records have fields" }, problems({ fields = { { s = { type = "string", fields = {} } } } }))
    assert.same({ "fields[0].a.between: expected { min, max } numbers" }, problems({ fields = { { a = { type = "integer", between = { 5 } } } } }))
    assert.same({ "fields[0].a.match: invalid Lua pattern" }, problems({ fields = { { a = { type = "string", match = "[a" } } } }))
    assert.same({ "custom_validator: expected a function" }, problems({ fields = {}, custom_validator = true }))
  end)

  it("checks defaults against their own field", function()
    assert.same({ "fields[0].a.default: expected a string" }, problems({ fields = { { a = { type = "string", default = 1 } } } }))
    assert.same({ "fields[0].a.default: expected one of: x" }, problems({ fields = { { a = { type = "string", one_of = { "x" }, default = "y" } } } }))
  end)

  it("checks nested fields", function()
    assert.same({ "fields[0].r.fields[0].x.elements.type: unknown type \"int\"" },
                problems({ fields = { { r = { type = "record", fields = { { x = { type = "array", elements = { type = "int" } } } } } } } }))
  end)
end)
