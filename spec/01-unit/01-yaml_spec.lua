-- gw.yaml: YAML text -> Lua values + marks, errors with positions, and yaml.dump.
local yaml = require("gw.yaml")
local cjson = require("cjson")

local function load(text) return yaml.load(text, "t.yaml") end

local function pos(marks, path)
  local m = marks[path]
  return m and (m.line .. ":" .. m.col)
end

describe("gw.yaml.load", function()
  describe("scalars", function()
    it("resolves plain scalars with the YAML 1.2 core schema", function()
      local v = load([[
int: 42
neg: -7
hex: 0x1F
oct: 0o17
float: 1.5
exp: 1e3
t: true
f: False
word: hello
off: off
yes: yes
ver: 1.0
]])
      assert.same({ int = 42, neg = -7, hex = 31, oct = 15, float = 1.5, exp = 1000, t = true, f = false,
                    word = "hello", off = "off", yes = "yes", ver = 1 }, v)
    end)

    it("keeps quoted and block scalars as strings", function()
      local v = load([[
a: "42"
b: 'true'
c: "~"
d: ""
e: |
  line1
  line2
f: >-
  folded
  text
g: !!str 12
]])
      assert.same({ a = "42", b = "true", c = "~", d = "", e = "line1\nline2\n", f = "folded text", g = "12" }, v)
    end)

    it("parses infinities and NaN", function()
      local v = load("a: .inf\nb: -.Inf\nc: .nan\n")
      assert.equal(math.huge, v.a)
      assert.equal(-math.huge, v.b)
      assert.is_true(v.c ~= v.c)
    end)

    it("omits null mapping values and keeps null sequence items as yaml.null", function()
      local v = load("a: ~\nb: null\nc:\nd: [1, ~, null, 2]\n")
      assert.same({ d = { 1, yaml.null, yaml.null, 2 } }, v)
      assert.equal(4, #v.d)
    end)

    it("yaml.null is the same value as cjson.null", function()
      assert.equal(cjson.null, yaml.null)
      assert.equal("userdata", type(yaml.null))
    end)

    it("returns yaml.null for an empty document", function()
      local v, marks = load("")
      assert.equal(yaml.null, v)
      assert.same({ line = 1, col = 1 }, marks[""])
      assert.equal(yaml.null, (load("~\n")))
    end)

    it("keeps numeric keys as numbers", function()
      local v = load("200: ok\n404: missing\n")
      assert.same({ [200] = "ok", [404] = "missing" }, v)
    end)
  end)

  describe("marks", function()
    it("maps every PATH to the 1-based line:col of its node", function()
      local v, marks = load([[
services:
  - name: users
    routes:
      - paths: ["/a", "/b"]
gw:
  listen: x
  empty:
]])
      assert.is_table(v)
      assert.equal("1:1", pos(marks, ""))
      assert.equal("2:3", pos(marks, "services"))
      assert.equal("2:5", pos(marks, "services[0]"))
      assert.equal("2:11", pos(marks, "services[0].name"))
      assert.equal("4:7", pos(marks, "services[0].routes"))
      assert.equal("4:16", pos(marks, "services[0].routes[0].paths"))
      assert.equal("4:17", pos(marks, "services[0].routes[0].paths[0]"))
      assert.equal("4:23", pos(marks, "services[0].routes[0].paths[1]"))
      assert.equal("6:11", pos(marks, "gw.listen"))
      -- a key whose value is null is left out of the value but still has a mark
      assert.is_nil(v.gw.empty)
      assert.is_not_nil(marks["gw.empty"])
    end)

    it("uses the default file name <string>", function()
      local v, err = yaml.load("a: b: c")
      assert.is_nil(v)
      assert.equal("<string>:1:5: mapping values are not allowed in this context", err)
    end)
  end)

  describe("anchors and aliases", function()
    it("shares the anchored value", function()
      local v, marks = load([[
base: &b { timeout: 5, retries: 2 }
list: &l [1, 2]
s: &s text
a: *b
c: *l
d: *s
]])
      assert.equal(v.base, v.a)
      assert.equal(v.list, v.c)
      assert.equal("text", v.d)
      assert.equal("4:4", pos(marks, "a"))
    end)

    it("supports merge keys, explicit keys winning", function()
      local v = load([[
base: &b { timeout: 5, retries: 2, host: x }
other: &o { retries: 9, port: 80 }
svc:
  timeout: 7
  <<: [*b, *o]
  host: y
]])
      assert.same({ timeout = 7, retries = 2, host = "y", port = 80 }, v.svc)
      assert.same({ timeout = 5, retries = 2, host = "x" }, v.base)
    end)

    it("rejects an unknown anchor with its position", function()
      local v, err = load("a: 1\nb: *nope\n")
      assert.is_nil(v)
      assert.equal("t.yaml:2:4: unknown anchor 'nope'", err)
    end)

    it("rejects a merge of something that is not a mapping", function()
      local v, err = load("a: &a [1]\nb:\n  <<: *a\n")
      assert.is_nil(v)
      assert.equal("t.yaml:3:7: merge key '<<' expects a mapping or a sequence of mappings", err)
    end)

    it("stops alias expansion bombs", function()
      local lines = { "a: &a [x, x, x, x, x, x, x, x, x, x]" }
      local prev = "a"
      for i = 1, 8 do
        local name = "l" .. i
        local refs = {}
        for j = 1, 10 do refs[j] = "*" .. prev end
        lines[#lines + 1] = name .. ": &" .. name .. " [" .. table.concat(refs, ", ") .. "]"
        prev = name
      end
      local v, err = load(table.concat(lines, "\n") .. "\n")
      assert.is_nil(v)
      assert.matches("^t%.yaml:%d+:%d+: document too large %(more than 1000000 nodes after alias expansion%)$", err)
    end)
  end)

  describe("errors", function()
    it("reports a duplicate key at the second occurrence", function()
      local v, err = load("a: 1\nb:\n  c: 1\n  c: 2\n")
      assert.is_nil(v)
      assert.equal("t.yaml:4:3: duplicate key 'c' (first defined at line 3)", err)
    end)

    it("reports a duplicate key even when the first value was null", function()
      local v, err = load("a:\na: 1\n")
      assert.is_nil(v)
      assert.equal("t.yaml:2:1: duplicate key 'a' (first defined at line 1)", err)
    end)

    it("reports scanner errors with libyaml's position", function()
      local v, err = load("a: b: c\n")
      assert.is_nil(v)
      assert.equal("t.yaml:1:5: mapping values are not allowed in this context", err)
    end)

    it("reports parser errors with their context", function()
      local v, err = load("a: [1, 2\nb: 3\n")
      assert.is_nil(v)
      assert.equal("t.yaml:2:2: did not find expected ',' or ']' (while parsing a flow sequence that started at line 1, column 4)", err)
    end)

    it("reports bad indentation", function()
      local v, err = load("a:\n  b: 1\n c: 2\n")
      assert.is_nil(v)
      assert.matches("^t%.yaml:3:2: did not find expected key", err)
    end)

    it("reports tabs used for indentation", function()
      local v, err = load("a:\n\tb: 1\n")
      assert.is_nil(v)
      assert.matches("^t%.yaml:2:1: found character that cannot start any token", err)
    end)

    it("reports invalid UTF-8 with a line and column", function()
      local v, err = load("a: 1\nb\255: 2\n")
      assert.is_nil(v)
      assert.equal("t.yaml:2:2: invalid leading UTF-8 octet", err)
    end)

    it("bounds the nesting depth", function()
      local v, err = load(string.rep("[", 300) .. string.rep("]", 300))
      assert.is_nil(v)
      assert.equal("t.yaml:1:257: nesting too deep (max 256 levels)", err)
      local deep = {}
      for i = 1, 300 do deep[i] = string.rep(" ", i - 1) .. "k:" end
      v, err = load(table.concat(deep, "\n") .. " 1\n")
      assert.is_nil(v)
      assert.matches("nesting too deep", err)
    end)

    it("accepts 255 levels", function()
      local v = load(string.rep("[", 255) .. "1" .. string.rep("]", 255))
      assert.is_table(v)
    end)

    it("rejects several documents", function()
      local v, err = load("a: 1\n---\nb: 2\n")
      assert.is_nil(v)
      assert.equal("t.yaml:2:1: multiple documents are not supported", err)
    end)

    it("rejects complex and null keys", function()
      local v, err = load("? [a, b]\n: 1\n")
      assert.is_nil(v)
      assert.equal("t.yaml:1:3: complex mapping keys are not supported", err)
      v, err = load("~: 1\n")
      assert.is_nil(v)
      assert.equal("t.yaml:1:1: null mapping keys are not supported", err)
    end)

    it("rejects a non-string argument", function()
      assert.has_error(function() yaml.load(nil) end)
    end)
  end)
end)

describe("gw.yaml.dump", function()
  it("writes sorted mappings and block sequences", function()
    local out = yaml.dump({ b = { 1, 2 }, a = "x", c = { d = true, e = { { f = 1, g = 2 }, { 3, 4 } } } })
    assert.equal([[
a: x
b:
  - 1
  - 2
c:
  d: true
  e:
    - f: 1
      g: 2
    - - 3
      - 4
]], out)
  end)

  it("quotes strings that would read back as something else", function()
    local out = yaml.dump({ a = "true", b = "12", c = "", d = "x: y", e = "off", f = "~", g = "line\nbreak",
                            h = " pad", i = "-dash", j = "plain text", k = "a #b", l = "say \"hi\"" })
    assert.equal([[
a: "true"
b: "12"
c: ""
d: "x: y"
e: "off"
f: "~"
g: "line\nbreak"
h: " pad"
i: "-dash"
j: plain text
k: "a #b"
l: say "hi"
]], out)
  end)

  it("escapes characters a YAML reader refuses or breaks lines at (found by fuzz/fuzz_config.c)", function()
    -- U+009E (a C1 control), U+0085 (NEL), U+2028, U+FFFF; é and emoji stay as they are
    local s = "a\194\158b\194\133c\226\128\168d\239\191\191e \195\169\240\159\152\128"
    local out = assert(yaml.dump({ k = s }))
    assert.equal('k: "a\\u009eb\\u0085c\\u2028d\\uffffe \195\169\240\159\152\128"\n', out)
    assert.equal(s, assert(yaml.load(out)).k)
  end)

  it("writes a key longer than YAML's 1024-character implicit key as '? key' (found by fuzz/fuzz_config.c)", function()
    local k = string.rep("k", 1100)
    local value = { a = { [k] = { 1, 2 }, b = 2 }, z = { { [k] = { x = 1 } } } }
    local out = assert(yaml.dump(value))
    assert.equal("a:\n  b: 2\n  ? " .. k .. "\n  :\n    - 1\n    - 2\nz:\n  - ? " .. k .. "\n    :\n      x: 1\n", out)
    assert.same(value, assert(yaml.load(out)))
  end)

  it("quotes a << key (plain, a merge key) and text starting with ... (found by fuzz/fuzz_config.c)", function()
    local out = assert(yaml.dump({ ["<<"] = { a = 1 } }))
    assert.equal('"<<":\n  a: 1\n', out)
    assert.same({ ["<<"] = { a = 1 } }, assert(yaml.load(out)))
    -- "..." at a line start ends the document
    assert.equal('"..."\n', yaml.dump("..."))
    assert.equal('"...x": 1\n', yaml.dump({ ["...x"] = 1 }))
    assert.equal("...x", next((assert(yaml.load(yaml.dump({ ["...x"] = 1 }))))))
  end)

  it("writes -0.0 so that it loads back as -0.0, not the integer 0", function()
    local out = assert(yaml.dump({ x = -0.0 }))
    assert.equal("x: -0.0\n", out)
    assert.equal("-0", tostring(assert(yaml.load(out)).x))
  end)

  it("writes numbers, nulls, empty tables and scalars", function()
    assert.equal("a: 1\nb: 1.5\nc: null\nd: {}\ne: .inf\nf: 0.1\n",
                 yaml.dump({ a = 1, b = 1.5, c = yaml.null, d = {}, e = math.huge, f = 0.1 }))
    assert.equal("hello\n", yaml.dump("hello"))
    assert.equal("42\n", yaml.dump(42))
    assert.equal("{}\n", yaml.dump({}))
    assert.equal("- null\n- 1\n", yaml.dump({ yaml.null, 1 }))
  end)

  it("round-trips through yaml.load", function()
    local value = {
      _format_version = "3.0",
      services = { { name = "users", url = "http://h:80/p", routes = { { paths = { "/a", "~/u/\\d+$" } } } } },
      weird = { ["key: colon"] = "v", [200] = "numeric key", t = "yes", s = "\t tab" },
      nested = { { { 1 } } },
    }
    local back = assert(yaml.load(assert(yaml.dump(value))))
    assert.same(value, back)
  end)

  it("refuses cycles and functions", function()
    local t = {}
    t.self = t
    local out, err = yaml.dump(t)
    assert.is_nil(out)
    assert.equal("cannot dump a cyclic table", err)
    out, err = yaml.dump({ f = print })
    assert.is_nil(out)
    assert.equal("cannot dump a function value", err)
  end)

  it("writes a shared (aliased) table twice", function()
    local shared = { x = 1 }
    assert.equal("a:\n  x: 1\nb:\n  x: 1\n", yaml.dump({ a = shared, b = shared }))
  end)
end)
