-- gw.json: round trips of [] and {}, exact numbers, strings and escapes, errors with their
-- position, the depth bound, encoder errors, agreement with lua-cjson on random documents, and a
-- benchmark printing ops/s (informative, not asserted).
local json = require "gw.json"
local cjson_mod = require "cjson.safe"

-- lua-cjson as gw.json sets up its own instance: strict numbers, the same depth bound
local cjson = cjson_mod.new()
cjson.decode_invalid_numbers(false)
cjson.decode_max_depth(json.MAX_DEPTH)

local function rt(s) return assert(json.encode(assert(json.decode(s)))) end

local function decode_err(s)
  local v, err = json.decode(s)
  assert.is_nil(v, s)
  return err
end

-- the decimal value a number text stands for, as "sign digits e exponent" (0.digits * 10^exp),
-- digits without leading or trailing zeros: two texts of the same value give the same string
local function decimal(tok)
  local sign, int, frac, exp = tok:match("^(-?)(%d*)%.?(%d*)[eE]?([-+]?%d*)$")
  local digits, e = int .. frac, #int + (tonumber(exp) or 0)
  local lead = #digits:match("^0*")
  digits = digits:sub(lead + 1):gsub("0+$", "")
  if digits == "" then return "0" end
  return ("%s%se%d"):format(sign, digits, e - lead)
end

-- deep equality for decoded values: empty arrays must carry the marker, json.number values
-- compare by text, numbers exactly (with the sign of zero)
local function same_json(a, b)
  if type(a) == "number" and type(b) == "number" then
    return a == b and (a ~= 0 or 1 / a == 1 / b)
  end
  if json.type(a) ~= json.type(b) then return false end
  if type(a) ~= "table" then return a == b end
  if getmetatable(a) == json.number_mt or getmetatable(b) == json.number_mt then
    return getmetatable(a) == getmetatable(b) and a.text == b.text
  end
  for k, v in pairs(a) do
    if not same_json(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

describe("gw.json [] and {}", function()
  it("keeps empty arrays arrays and empty objects objects, nested too", function()
    assert.equal("[]", rt("[]"))
    assert.equal("{}", rt("{}"))
    local out = rt('{"a":[],"b":{}}')                           -- key order is Lua's
    assert.is_true(out == '{"a":[],"b":{}}' or out == '{"b":{},"a":[]}', out)
    assert.equal("[[],{},[[]],[{}],{\"x\":[[]]}]", rt("[ [ ] , { } , [ [ ] ] , [ { } ] , { \"x\" : [ [\n] ] } ]"))
    assert.equal("[[[[[]]]]]", rt("[[[[[]]]]]"))
  end)

  it("marks empty arrays with array_mt and nothing else", function()
    local v = assert(json.decode('{"e":[],"o":{},"a":[1,[]]}'))
    assert.equal(json.array_mt, getmetatable(v.e))
    assert.is_nil(getmetatable(v.o))
    assert.is_nil(getmetatable(v.a))
    assert.equal(json.array_mt, getmetatable(v.a[2]))
    assert.equal("array", json.type(v.e))
    assert.equal("object", json.type(v.o))
    assert.equal("array", json.type(v.a))
  end)

  it("encodes a table marked with array_mt (or json.array) as an array", function()
    assert.equal("[]", json.encode(setmetatable({}, json.array_mt)))
    assert.equal("[]", json.encode(json.array()))
    assert.equal("[1,2]", json.encode(json.array({ 1, 2 })))
    assert.equal("{}", json.encode({}))
    assert.equal('{"list":[]}', json.encode({ list = json.array() }))
    local t = {}
    assert.equal(t, json.array(t))
    assert.is_true(json.is_array(t))
    assert.is_false(json.is_object(t))
    assert.is_true(json.is_object({}))
    assert.is_true(json.is_array({ 1 }))
    assert.is_false(json.is_array("x"))
    assert.is_false(json.is_object(json.null))
  end)
end)

describe("gw.json numbers", function()
  it("keeps integers up to 2^53 as integers, and other numbers with their digits", function()
    assert.equal("[9007199254740992,-9007199254740992,4503599627370497,1234567890123456]",
      rt("[9007199254740992, -9007199254740992, 4503599627370497, 1234567890123456]"))
    assert.equal("[12345678901234567890,9007199254740993,-98765432109876543210]",
      rt("[12345678901234567890,9007199254740993,-98765432109876543210]"))
    assert.equal("[0.12345678901234567890123,1e400,-1e-400,1.0000000000000000000001]",
      rt("[0.12345678901234567890123,1e400,-1e-400,1.0000000000000000000001]"))
    assert.equal("[0.30000000000000004,0.1,1.5e+300,-0.25,100000,-0.5,0,-0]",
      rt("[0.30000000000000004, 0.1, 1.5e300, -0.25, 1.e5, -.5, 0., -0]"))
  end)

  it("decodes a number a double holds as a Lua number, one it does not as a json.number", function()
    local v = assert(json.decode("[1, 2.5, 9007199254740992, 9007199254740993, 1e2, 1E-2, 12345678901234567]"))
    assert.equal(1, v[1])
    assert.equal(2.5, v[2])
    assert.equal(2 ^ 53, v[3])
    assert.equal(json.number_mt, getmetatable(v[4]))
    assert.equal("9007199254740993", v[4].text)
    assert.equal(100, v[5])
    assert.equal(0.01, v[6])
    assert.equal("12345678901234567", tostring(v[7]))
    -- a long token whose double writes back as the same decimal is a plain number
    assert.equal(0.30000000000000004, json.decode("0.30000000000000004"))
    assert.equal(100000000000000000000, json.decode("100000000000000000000.0e0"))
    assert.equal("number", type(json.decode("1.500000000000000000000")))
  end)

  it("json.number values: text, arithmetic, comparisons between them, json.tonumber", function()
    local a = json.decode("12345678901234567890")
    local b = json.decode("12345678901234567891")
    assert.equal("number", json.type(a))
    assert.equal("12345678901234567890", tostring(a))
    assert.equal("id=12345678901234567890", "id=" .. a)
    assert.equal(1.2345678901234567e19, json.tonumber(a))
    assert.equal(1.2345678901234567e19 + 1, a + 1)
    assert.equal(2 * 1.2345678901234567e19, a * 2)
    assert.is_true(a == json.number("12345678901234567890"))
    assert.is_true(a == json.number("1.2345678901234567890e19"))
    assert.is_false(a == b)
    assert.is_true(a <= b)
    assert.equal(7, json.tonumber(7))
    assert.is_nil(json.tonumber("7"))
    assert.equal(math.huge, json.tonumber(json.decode("1e400")))
  end)

  it("json.number reads a number token as decode would", function()
    assert.equal(12, json.number("12"))
    assert.equal(-0.5, json.number("-0.5"))
    assert.equal(3, json.number(3))
    assert.equal("123456789012345678", json.encode(json.number("123456789012345678")))
    for _, bad in ipairs({ "1x", "", "01", "+1", "0x10", "1e", " 1", "NaN" }) do
      local v, err = json.number(bad)
      assert.is_nil(v, bad)
      assert.matches("is not a JSON number", err, 1, true)
    end
    assert.is_nil((json.number(0 / 0)))
    assert.is_nil((json.number({})))
  end)

  it("encodes with the fewest digits that read back the same, never rounding", function()
    assert.equal("[0.30000000000000004,0.3333333333333333,1e+21,123.456,-1e-07,5e-324]",
      json.encode({ 0.1 + 0.2, 1 / 3, 1e21, 123.456, -1e-7, 5e-324 }))
    assert.equal("[9007199254740994,1.8446744073709552e+19]", json.encode({ 2 ^ 53 + 2, 2 ^ 64 }))
    for _, x in ipairs({ math.pi, 1 / 3, 2 / 3, 1e-310, 1.7976931348623157e308, 123456789.123456789,
                         0.1 + 0.7, -2 ^ 60, 2 ^ 53 - 1, 4.35, 2.675, 1e22, 1e23 }) do
      assert.equal(x, json.decode(json.encode(x)))
      assert.equal(x, tonumber(json.encode(x)))
    end
  end)
end)

describe("gw.json strings", function()
  it("decodes escapes, \\u escapes and surrogate pairs", function()
    assert.equal('a"b\\c/d\b\f\n\r\t', json.decode('"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t"'))
    assert.equal("é中😀", json.decode('"\\u00e9\\u4E2D\\ud83d\\ude00"'))
    assert.equal("\0x", json.decode('"\\u0000x"'))
    assert.equal("\127\1", json.decode('"\\u007f\\u0001"'))
    assert.equal("𝄞", json.decode('"\\uD834\\uDD1E"'))
    assert.equal("raw é 中 😀", json.decode('"raw é 中 😀"'))
    assert.equal("tab\there", json.decode('"tab\there"'))      -- raw control bytes pass, as with lua-cjson
    assert.same({ k = "v\"", ["k\"2"] = "x" }, json.decode('{"k":"v\\"","k\\"2":"x"}'))
  end)

  it("encodes what JSON needs escaped and nothing else (no \\/)", function()
    assert.equal('"a\\"b\\\\c\\n\\r\\t\\b\\f\\u0000\\u0001\\u001f\\u007f/é😀"',
      json.encode('a"b\\c\n\r\t\b\f\0\1\31\127/é😀'))
    assert.equal('{"a/b":"c\\\\/d"}', json.encode({ ["a/b"] = "c\\/d" }))
    for _, s in ipairs({ "a/b", "c\\/d", "\0\1\2", '"', "é中😀\255" }) do
      assert.equal(s, json.decode(json.encode(s)))
      assert.equal(s, cjson.decode(json.encode(s)))
    end
  end)
end)

describe("gw.json errors", function()
  it("refuses what is not JSON, saying what and where", function()
    assert.equal("expected a value but found the end of the text at line 1, column 1", decode_err(""))
    assert.equal("expected a value but found ']' at line 1, column 4", decode_err("[1,]"))
    assert.equal("expected a string key but found '}' at line 1, column 8", decode_err('{"a":1,}'))
    assert.equal("expected ':' but found '1' at line 1, column 6", decode_err('{"a" 1}'))
    assert.equal("expected ',' or ']' but found '2' at line 1, column 4", decode_err("[1 2]"))
    assert.equal("expected ',' or '}' but found '\"' at line 1, column 8", decode_err('{"a":1 "b":2}'))
    assert.equal("expected the end of the text but found 'x' at line 1, column 5", decode_err("[1] x"))
    assert.equal("expected a value but found 't' at line 2, column 8", decode_err('{\n  "a": tru\n}'))
    assert.equal("unterminated string at line 1, column 2", decode_err('["abc'))
    assert.equal("invalid escape '\\x' at line 1, column 2", decode_err('"\\x"'))
    assert.equal("invalid \\u escape (4 hex digits expected) at line 1, column 2", decode_err('"\\u12"'))
    assert.equal("invalid \\u escape (a high surrogate not followed by a low one) at line 1, column 3",
      decode_err('["\\ud800"]'))
    assert.equal("invalid \\u escape (a low surrogate without a high one) at line 1, column 2",
      decode_err('"\\udc00"'))
    assert.equal("invalid number (a leading zero) at line 1, column 2", decode_err("[01]"))
    assert.equal("invalid number at line 1, column 2", decode_err("[-]"))
    assert.equal("invalid number (digits expected after the exponent) at line 1, column 4", decode_err("[1e]"))
    assert.equal("expected a value but found byte 0xef at line 1, column 1", decode_err("\239\187\191[1]"))
    assert.equal("expected a string to decode, got a nil", decode_err(nil))
    for _, bad in ipairs({ " ", "{", "[", "NaN", "Infinity", "-Infinity", "0x10", "+1", ".5", "'a'",
                           "[1,,2]", "[,]", "{,}", '{"a"}', "nul", "truex", "[true false]", "\f1",
                           "1 2", '"\\', '"a\\"', "{1:2}", "[-.]", "[1.5.5]", "[1ee5]" }) do
      local err = decode_err(bad)
      assert.matches(" at line %d+, column %d+$", err, nil, false)
      assert.is_nil((cjson.decode(bad)), "lua-cjson accepts " .. bad)
    end
  end)

  it("bounds nesting at MAX_DEPTH (512) arrays/objects, as its lua-cjson instance does", function()
    assert.equal(512, json.MAX_DEPTH)
    assert.truthy(json.decode(("["):rep(512) .. ("]"):rep(512)))
    assert.truthy(json.decode(('{"a":'):rep(511) .. "[1]" .. ("}"):rep(511)))
    assert.equal("nested deeper than 512 arrays/objects at line 1, column 513",
      decode_err(("["):rep(513) .. ("]"):rep(513)))
    assert.matches("nested deeper than 512", decode_err(("[1,"):rep(600) .. "1" .. ("]"):rep(600)), 1, true)
    assert.is_nil((cjson.decode(("["):rep(513) .. ("]"):rep(513))))
    local deep = {}
    local cur = deep
    for _ = 1, 511 do cur[1] = {} cur = cur[1] end
    assert.truthy(json.encode(deep))
    cur[1] = {}
    assert.same({ nil, "cannot encode tables nested deeper than 512" }, { json.encode(deep) })
  end)

  it("refuses to encode what JSON cannot hold", function()
    local function enc_err(v)
      local s, err = json.encode(v)
      assert.is_nil(s)
      return err
    end
    assert.equal("cannot encode nan (JSON has no NaN or infinity)", enc_err({ 0 / 0 }):gsub("%-nan", "nan"))
    assert.equal("cannot encode inf (JSON has no NaN or infinity)", enc_err({ x = math.huge }))
    assert.equal("cannot encode -inf (JSON has no NaN or infinity)", enc_err(-math.huge))
    assert.equal("cannot encode a function", enc_err({ f = print }))
    assert.equal("cannot encode a thread", enc_err({ coroutine.create(print) }))
    assert.equal("cannot encode a table mixing array items (key 1) and object keys ('a')", enc_err({ 1, a = 2 }))
    assert.equal("cannot encode a table mixing array items (key 3) and object keys ('a')", enc_err({ a = 1, [3] = 2 }))
    assert.equal("cannot encode a table with the key true (boolean): object keys are strings, array indexes 1..n",
      enc_err({ [true] = 1 }))
    assert.equal("cannot encode a table with the key 1.5 (number): object keys are strings, array indexes 1..n",
      enc_err({ [1.5] = 1 }))
    assert.equal("cannot encode a table with the key 0 (number): object keys are strings, array indexes 1..n",
      enc_err({ [0] = 1, [1] = 2 }))
    assert.equal("cannot encode a table marked as an array with the object key 'a'", enc_err(json.array({ a = 1 })))
    assert.equal("cannot encode an excessively sparse array (2 items, up to index 20)", enc_err({ [1] = 1, [20] = 2 }))
    local t = {}
    t.self = { t }
    assert.equal("cannot encode a table that contains itself (a cycle)", enc_err(t))
    -- holes within lua-cjson's ratio are nulls; nil is null
    assert.equal("[1,null,3]", json.encode({ 1, nil, 3 }))
    assert.equal("[null,\"x\"]", json.encode({ [2] = "x" }))
    assert.equal("null", json.encode(nil))
    assert.equal("null", json.encode(json.null))
    -- the encoder is usable again after an error
    assert.equal('{"ok":true}', json.encode({ ok = true }))
  end)
end)

describe("gw.json null and scalars", function()
  it("JSON null is json.null (cjson.null), both ways", function()
    assert.equal(cjson_mod.null, json.null)
    assert.equal(json.null, json.decode("null"))
    assert.same({ json.null, 1 }, json.decode("[null,1]"))
    assert.equal('{"a":null}', json.encode({ a = json.null }))
    assert.equal("null", json.type(json.null))
    assert.equal(true, json.decode(" true "))
    assert.equal(false, json.decode("false"))
    assert.equal("x", json.decode('"x"'))
    assert.equal(-12.5, json.decode("-1.25e1"))
    assert.is_nil(json.type(print))
  end)

  it("is what gw.json is in the gw API", function()
    assert.equal(json.encode, gw.json.encode)
    assert.equal(json.decode, gw.json.decode)
    assert.equal(json.null, gw.json.null)
    assert.equal(json.array_mt, gw.json.array_mt)
    assert.equal('{"tags":[]}', gw.json.encode(gw.json.decode('{"tags":[]}')))
    assert.equal('["http://x/y",12345678901234567890]',
      gw.json.encode(gw.json.decode('["http:\\/\\/x\\/y",12345678901234567890]')))
  end)
end)

---------------------------------------------------------------------------------------------------
-- Random documents

local PIECES = { "a", "key", "é", "中文", "😀", "\n", "\t", '"', "\\", "/", "\0", "\1", "\31", "\127",
                 " ", "http://x/y", "\\u0041", "[]", "{}", "\255", "line\r\n" }

local function rand_string()
  local t = {}
  for i = 1, math.random(0, 4) do t[i] = PIECES[math.random(#PIECES)] end
  return table.concat(t)
end

local function rand_number()
  local k = math.random(1, 9)
  if k == 1 then return math.random(-1000, 1000) end
  if k == 2 then return math.random(0, 2 ^ 31) * math.random(0, 2 ^ 22) end   -- up to 2^53
  if k == 3 then return (math.random() - 0.5) * 10 ^ math.random(-20, 20) end
  if k == 4 then return math.random() end
  if k == 5 then return math.random(1, 99) / 100 end
  if k == 6 then return (math.random() - 0.5) * 10 ^ math.random(-300, 300) end
  if k == 7 then return -0.0 end
  if k == 8 then return 2 ^ math.random(0, 1000) end
  return json.number(tostring(math.random(1, 9)) .. ("%09d%09d"):format(math.random(0, 999999999),
    math.random(0, 999999999)))                                   -- 19 digits: a json.number
end

local function rand_value(depth)
  local k = math.random(1, depth > 4 and 6 or 9)
  if k == 1 then return rand_string() end
  if k == 2 then return rand_number() end
  if k == 3 then return math.random() < 0.5 end
  if k == 4 then return json.null end
  if k == 5 then return json.array() end
  if k == 6 then return {} end
  if k <= 7 then
    local t = {}
    for i = 1, math.random(1, 5) do t[i] = rand_value(depth + 1) end
    return t
  end
  local t = {}
  for _ = 1, math.random(1, 5) do t[rand_string()] = rand_value(depth + 1) end
  return t
end

-- what lua-cjson decodes a value to: empty arrays unmarked, json.number values as doubles
local function as_cjson(v)
  if type(v) ~= "table" then return v end
  if getmetatable(v) == json.number_mt then return json.tonumber(v) end
  local t = {}
  for k, x in pairs(v) do t[k] = as_cjson(x) end
  return t
end

local function has_number_obj(v)
  if type(v) ~= "table" then return false end
  if getmetatable(v) == json.number_mt then return true end
  for _, x in pairs(v) do if has_number_obj(x) then return true end end
  return false
end

describe("gw.json random documents", function()
  it("decode(encode(x)) is x, and lua-cjson reads the same text to the same values", function()
    math.randomseed(20240601)
    local n, with_cjson = 0, 0
    for _ = 1, 400 do
      local x = rand_value(1)
      local text, err = json.encode(x)
      assert.is_string(text, err)
      local back, derr = json.decode(text)
      assert.is_not_nil(back, tostring(derr) .. " " .. text)
      assert.is_true(same_json(x, back), text)
      -- lua-cjson reads the text too (rounding json.number values), to the same values
      local ctv, cerr = cjson.decode(text)
      assert.is_not_nil(ctv, tostring(cerr) .. " " .. text)
      assert.same(as_cjson(x), ctv, text)
      -- and where lua-cjson writes the document exactly (no empty array, no number beyond its
      -- 14 digits), gw.json reads lua-cjson's text to the same values (`\/` included)
      local ctext = cjson.encode(as_cjson(x))
      local exact = ctext and not has_number_obj(x) and not ctext:find("[", 1, true)
        and same_json(cjson.decode(ctext), as_cjson(x))
      if exact then
        with_cjson = with_cjson + 1
        local mine, merr = json.decode(ctext)
        assert.is_not_nil(mine, tostring(merr) .. " " .. ctext)
        assert.is_true(same_json(cjson.decode(ctext), mine), ctext)
      end
      n = n + 1
    end
    assert.equal(400, n)
    assert.is_true(with_cjson > 40, "only " .. with_cjson .. " documents compared with lua-cjson")
  end)

  it("number tokens: the same double as lua-cjson, or a json.number keeping the token", function()
    math.randomseed(7)
    local plain, kept = 0, 0
    for _ = 1, 3000 do
      local digits = {}
      for i = 1, math.random(1, 25) do digits[i] = tostring(math.random(0, 9)) end
      local d = table.concat(digits):gsub("^0+(%d)", "%1")
      local tok = (math.random() < 0.3 and "-" or "") .. d
      if math.random() < 0.5 then
        local cut = math.random(1, #tok)
        if tok:sub(cut, cut) ~= "-" and not tok:sub(cut + 1):find("%.") then
          tok = tok:sub(1, cut) .. "." .. tok:sub(cut + 1)
        end
      end
      if math.random() < 0.4 then tok = tok .. "e" .. ({ "", "+", "-" })[math.random(3)] .. math.random(0, 400) end
      local c = cjson.decode("[" .. tok .. "]")
      local v, err = json.decode("[" .. tok .. "]")
      assert.equal(c == nil, v == nil, tok .. ": " .. tostring(err))
      if v then
        c, v = c[1], v[1]
        if type(v) == "number" then
          plain = plain + 1
          assert.equal(c, v, tok)
          -- a plain number writes back as the same decimal value
          assert.equal(decimal(tok), decimal(json.encode(v)), tok)
        else
          kept = kept + 1
          assert.equal(tok, v.text)
          assert.equal(c, json.tonumber(v), tok)
          -- kept because its double would write back as another value
          local x = tonumber(tok)
          if x == x and x ~= math.huge and x ~= -math.huge then
            assert.are_not.equal(decimal(tok), decimal(json.encode(x)), tok)
          end
          assert.equal(tok, json.encode(v))
        end
      end
    end
    assert.is_true(plain > 1000 and kept > 300, plain .. " plain, " .. kept .. " kept")
  end)

  it("every one-byte edit of a document: accepted and refused like lua-cjson, same values", function()
    local seed = '{"a":[1,2.5,{"b":"c\\u00e9\\n\\/"}],"n":-12.5e3,"t":true,"z":null,"s":"x\\"y","e":{},"l":[]}'
    local alphabet = '{}[]":,.-+eE019 \\u"atfnx/'
    local accepted, tried = 0, 0
    local function check(s)
      tried = tried + 1
      local v, err = json.decode(s)
      local c = cjson.decode(s)
      assert.equal(c == nil, v == nil, s .. " " .. tostring(err))
      if v == nil then
        assert.matches(" at line %d+, column %d+$", err, nil, false)
        return
      end
      accepted = accepted + 1
      assert.same(c, as_cjson(v), s)
      local out = assert(json.encode(v))
      local again = json.decode(out)
      assert.is_true(same_json(v, again), s)
    end
    for i = 1, #seed do
      check(seed:sub(1, i - 1) .. seed:sub(i + 1))                                -- dropped
      for k = 1, #alphabet do
        local ch = alphabet:sub(k, k)
        check(seed:sub(1, i - 1) .. ch .. seed:sub(i))                            -- inserted
        check(seed:sub(1, i - 1) .. ch .. seed:sub(i + 1))                        -- replaced
      end
    end
    assert.is_true(accepted > 500 and tried - accepted > 2000, accepted .. " of " .. tried .. " accepted")
  end)
end)

---------------------------------------------------------------------------------------------------
-- Benchmark: printed, not asserted (the machine is shared; timings vary)

describe("gw.json benchmark", function()
  it("prints ops/s of gw.json and lua-cjson on a few document shapes", function()
    local clock = os.clock
    local function ops(f, arg)
      for _ = 1, 50 do f(arg) end                                   -- JIT warm-up
      local n, t0 = 0, clock()
      repeat
        for _ = 1, 10 do f(arg) end
        n = n + 10
      until clock() - t0 > 0.05
      return n / (clock() - t0)
    end
    local function rep(n, f) local t = {} for i = 1, n do t[i] = f(i) end return t end
    local docs = {
      { "API list (objects)", rep(40, function(i)
          return { id = i, name = "user " .. i, email = "u" .. i .. "@example.com", score = i * 0.37,
                   active = i % 2 == 0, roles = { "admin", "dev" }, meta = { created = "2024-01-01T00:00:00Z" } }
        end) },
      { "numbers", rep(400, function(i) return i % 2 == 0 and i * 7919 or i * 1.1234567 end) },
      { "long strings", rep(20, function() return ("lorem ipsum dolor sit amet "):rep(20) end) },
      { "escaped strings", rep(60, function(i) return "line\n\"quoted\"\ttab/é " .. i end) },
    }
    local rx = require("gw.regex").compile("\\[[ \\t\\r\\n]*\\]|[0-9.]{16}|[0-9.][eE][-+]?[0-9]{3}")
    local function scan_then_cjson(s) if not rx:match(s) then return cjson.decode(s) end end
    print()
    print(("%-20s %6s | %12s %12s %12s | %12s %12s"):format("document", "bytes", "cjson.decode",
      "json.decode", "scan+cjson", "cjson.encode", "json.encode"))
    for _, d in ipairs(docs) do
      local text = assert(cjson.encode(d[2]))
      local v = assert(cjson.decode(text))
      assert(json.decode(text))
      print(("%-20s %6d | %12.0f %12.0f %12.0f | %12.0f %12.0f"):format(d[1], #text,
        ops(cjson.decode, text), ops(json.decode, text), ops(scan_then_cjson, text),
        ops(cjson.encode, v), ops(json.encode, v)))
    end
    print("(ops/s; scan+cjson: the exactness pre-scan a lua-cjson fast path would need, then lua-cjson)")
  end)
end)
