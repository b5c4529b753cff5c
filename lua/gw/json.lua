--- gw.json — JSON text to Lua values and back, without losing anything on the way.
--
-- lua-cjson 2.1.0 (what gw links) reads `[]` and `{}` as the same empty table (a round trip
-- turns `[]` into `{}`), writes numbers with 14 significant digits (an id of 16 digits comes out
-- as 1.2345678901235e+15) and writes `/` as `\/`. This module is the one place that deals with
-- it; gw.json, gw.jsonschema, gw.transform and the aggregator plugin use it.
--
--   local json = require "gw.json"
--   local v = assert(json.decode('{"tags":[],"id":12345678901234567890}'))
--   json.encode(v)   --> {"tags":[],"id":12345678901234567890} (key order is Lua's)
--
-- Decoding gives:
--   * objects: plain tables with string keys; arrays: sequences (1..n). An EMPTY array carries
--     the metatable `json.array_mt`, so it encodes back as `[]` (non-empty arrays carry none).
--   * JSON null: `json.null` (= cjson.null, a lightuserdata).
--   * numbers: Lua numbers, except a number a double cannot hold without changing it (see
--     "Exact numbers"), which decodes to a `json.number`: a table { text = "the digits as
--     written" } with metatable `json.number_mt` (tostring() and `..` give the text, arithmetic
--     works on its nearest double, `json.tonumber` gives that double). Encoding writes the text
--     back as it was.
--
-- Exact numbers. A number token keeps its value when the double it reads as is written back
-- (by `encode`, below) as the same decimal value. That holds for every token of at most 15
-- digits with an exponent of at most 2 digits (its magnitude is within 1e-114..1e114, and IEEE
-- doubles carry 15 decimal digits exactly), and for integers up to 2^53. Other tokens (16 digits
-- or more, or an exponent of 3 digits) are checked one by one: their double is formatted as
-- `encode` would and compared, as a decimal, with the token; when the two differ
-- (9007199254740993, 12345678901234567890, 0.1000000000000000055511, 1e400, 1e-400) the token
-- becomes a json.number.
--
-- The decoder is written in Lua. JIT-compiled, it beats lua-cjson on usual documents (measured:
-- about 1.2x on lists of objects, 1.5x on numbers, 15x on long strings, which it cuts out with
-- memchr-based finds where lua-cjson copies byte by byte; numbers of up to 15 digits are computed
-- without strtod) and loses on strings dense with escapes (2-3x; a string holding escapes is
-- handed to lua-cjson). A lua-cjson fast path was measured and dropped: knowing when it is exact
-- takes a scan of the text (empty arrays, long digit runs) that, with lua-cjson after it, costs
-- more than this decoder (spec/01-unit/json_spec.lua prints the numbers). Errors say what was
-- expected, with the line and column.
-- Grammar: RFC 8259, plus what lua-cjson accepts too (`1.`, `1.e5`, `-.5`, raw control
-- characters inside strings); duplicate keys (the last wins); nesting at most `json.MAX_DEPTH`
-- (512) arrays/objects deep.
--
-- Encoding (pure Lua: deciding that lua-cjson's output would be exact costs as much as encoding):
--   * integers with |x| <= 2^53 as integers (no exponent); other numbers with the fewest digits
--     that read back as the same double (%.14g, %.15g, %.16g, else %.17g: the first of these
--     that reads back is the shortest; subnormals try from %.1g); NaN and infinities
--     are errors; json.number values as their text.
--   * a table with metatable array_mt, or whose [1] is set, is an array; its keys must be
--     1..n (holes are written as null as long as n <= 10 or n <= 2 * the item count, as lua-cjson
--     does; sparser is an error); other tables are objects, keys strings only (an integer key
--     among string keys, or a key of another type, is an error). An empty table without
--     array_mt is `{}`.
--   * strings: `"`, `\` and control characters (and DEL) escaped, `/` not, other bytes as they
--     are (UTF-8 passes through).
--   * nil is null (as lua-cjson does); functions, userdata other than null, threads: errors;
--     a cycle is an error, and so is nesting deeper than MAX_DEPTH.
-- @module gw.json
local cjson_mod = require "cjson.safe"

local type, pairs, tostring, tonumber, setmetatable, getmetatable, pcall, error =
      type, pairs, tostring, tonumber, setmetatable, getmetatable, pcall, error
local byte, char, sub, find, gsub, format, match, gmatch =
      string.byte, string.char, string.sub, string.find, string.gsub, string.format, string.match,
      string.gmatch
local concat = table.concat
local floor, huge = math.floor, math.huge

local M = {}

local MAX_DEPTH = 512
M.MAX_DEPTH = MAX_DEPTH

-- an instance of our own: strict numbers (no NaN, Infinity, hex) and our depth bound, without
-- touching the settings of other users of the cjson module
local cjson = cjson_mod.new()
cjson.decode_invalid_numbers(false)
cjson.decode_max_depth(MAX_DEPTH)

local null = cjson_mod.null
M.null = null

--- The metatable that marks an array: an empty array decodes with it, and a table carrying it
-- encodes as an array even when empty (`setmetatable({}, json.array_mt)` or `json.array()`).
local array_mt = { __name = "json.array" }
M.array_mt = array_mt

local ok_nkeys, nkeys = pcall(require, "table.nkeys")
if not ok_nkeys then
  nkeys = function(t)
    local n = 0
    for _ in pairs(t) do n = n + 1 end
    return n
  end
end
local ok_clear, clear = pcall(require, "table.clear")
if not ok_clear then clear = function(t) for k in pairs(t) do t[k] = nil end end end

---------------------------------------------------------------------------------------------------
-- Numbers

local TWO53 = 2 ^ 53
local DBL_MIN = 2.2250738585072014e-308   -- the smallest normal double
local FMT = {}
for p = 1, 17 do FMT[p] = "%." .. p .. "g" end

local function number_text(x)
  if x == floor(x) and x >= -TWO53 and x <= TWO53 then
    if x == 0 and 1 / x < 0 then return "-0" end
    return format("%d", x)
  end
  if x ~= x or x == huge or x == -huge then
    error({ "cannot encode " .. tostring(x) .. " (JSON has no NaN or infinity)" }, 0)
  end
  if x > -DBL_MIN and x < DBL_MIN then                        -- subnormal: fewer digits held
    for p = 1, 16 do
      local s = format(FMT[p], x)
      if tonumber(s) == x then return s end
    end
    return format("%.17g", x)
  end
  local s = format("%.14g", x)
  if tonumber(s) == x then return s end
  s = format("%.15g", x)
  if tonumber(s) == x then return s end
  s = format("%.16g", x)
  if tonumber(s) == x then return s end
  return format("%.17g", x)
end

-- the decimal value of a number token as "sign digits e exponent" (value = 0.digits * 10^e),
-- digits without leading or trailing zeros; "0" for zero
local function decimal_key(tok)
  local sign, int, frac, exp = match(tok, "^(-?)(%d*)%.?(%d*)[eE]?([-+]?%d*)$")
  local digits = int .. frac
  local e = #int + (tonumber(exp) or 0)
  local lead = #match(digits, "^0*")
  digits = gsub(sub(digits, lead + 1), "0+$", "")
  if digits == "" then return "0" end
  return sign .. digits .. "e" .. format("%.0f", e - lead)
end

local number_mt = { __name = "json.number" }
M.number_mt = number_mt

local function tonum(x)
  if getmetatable(x) == number_mt then return tonumber(x.text) end
  return x
end

--- The number a decoded value stands for: a Lua number as it is, a json.number as its nearest
-- double; nil for anything else.
function M.tonumber(x)
  if type(x) == "number" then return x end
  if type(x) == "table" and getmetatable(x) == number_mt then return tonumber(x.text) end
  return nil
end

number_mt.__tostring = function(x) return x.text end
number_mt.__concat = function(a, b)
  if getmetatable(a) == number_mt then a = a.text end
  if getmetatable(b) == number_mt then b = b.text end
  return a .. b
end
number_mt.__add = function(a, b) return tonum(a) + tonum(b) end
number_mt.__sub = function(a, b) return tonum(a) - tonum(b) end
number_mt.__mul = function(a, b) return tonum(a) * tonum(b) end
number_mt.__div = function(a, b) return tonum(a) / tonum(b) end
number_mt.__mod = function(a, b) return tonum(a) % tonum(b) end
number_mt.__pow = function(a, b) return tonum(a) ^ tonum(b) end
number_mt.__unm = function(a) return -tonum(a) end
-- between two json.number values (Lua compares a table with a number by no metamethod)
number_mt.__eq = function(a, b) return decimal_key(a.text) == decimal_key(b.text) end
number_mt.__lt = function(a, b) return tonum(a) < tonum(b) end
number_mt.__le = function(a, b) return tonum(a) <= tonum(b) end

-- the value of a number token: its double, or a json.number when the double would change it
local function number_value(tok)
  local x = tonumber(tok)
  if x ~= huge and x ~= -huge and x == x and decimal_key(number_text(x)) == decimal_key(tok) then
    return x
  end
  return setmetatable({ text = tok }, number_mt)
end

---------------------------------------------------------------------------------------------------
-- The Lua decoder

local function describe(s, i)
  local c = byte(s, i)
  if not c then return "the end of the text" end
  if c >= 33 and c <= 126 then return "'" .. char(c) .. "'" end
  return format("byte 0x%02x", c)
end

-- raises { "message at line L, column C" }
local function fail(s, i, msg)
  local line, last = 1, 0
  for nl in gmatch(sub(s, 1, i - 1), "()\n") do line, last = line + 1, nl end
  error({ format("%s at line %d, column %d", msg, line, i - last) }, 0)
end

local function expected(s, i, what)
  fail(s, i, "expected " .. what .. " but found " .. describe(s, i))
end

-- Scanning is done with byte loops (LuaJIT compiles them) and plain finds (memchr): several
-- times faster than pattern finds.

local function skip(s, i)
  local c = byte(s, i)
  while c == 32 or c == 10 or c == 13 or c == 9 do
    i = i + 1
    c = byte(s, i)
  end
  return i
end

local ESC_IN = { [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f", [110] = "\n",
                 [114] = "\r", [116] = "\t" }

local function utf8(cp)
  if cp < 0x80 then return char(cp) end
  if cp < 0x800 then return char(0xC0 + floor(cp / 0x40), 0x80 + cp % 0x40) end
  if cp < 0x10000 then
    return char(0xE0 + floor(cp / 0x1000), 0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  end
  return char(0xF0 + floor(cp / 0x40000), 0x80 + floor(cp / 0x1000) % 0x40,
              0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

local HEX = {}
for d = 0, 9 do HEX[48 + d] = d end
for d = 0, 5 do HEX[65 + d], HEX[97 + d] = 10 + d, 10 + d end

-- the value of the 4 hex digits at i, or nil
local function hex4(s, i)
  local a, b, c, d = byte(s, i, i + 3)
  a, b, c, d = HEX[a], HEX[b], HEX[c], HEX[d]
  if not (a and b and c and d) then return nil end
  return a * 4096 + b * 256 + c * 16 + d
end

local parts = {}   -- scratch for strings with escapes (decode_string does not recurse)
-- the index of the next backslash at or after the decoder's position (huge: none): found once
-- per stretch of text, not once per string (lua_decode resets it)
local bs = 0

-- a string with escapes, decoded by cjson (C) from the opening quote at i to the closing one
-- (the first quote from q that follows an even run of backslashes); nil when cjson refuses it
local function cjson_string(s, i, q)
  local close = q
  repeat
    local k = close - 1
    while byte(s, k) == 92 do k = k - 1 end
    if (close - k) % 2 == 1 then
      local str = cjson.decode(sub(s, i, close))
      if str == nil then return nil end
      return str, close + 1
    end
    close = find(s, '"', close + 1, true)
  until not close
  return nil
end

-- the string whose opening quote is at i, and the index after its closing quote
local function decode_string(s, i)
  local from = i + 1
  local q = find(s, '"', from, true)
  if not q then fail(s, i, "unterminated string") end
  if bs < from then bs = find(s, "\\", from, true) or huge end
  if q < bs then return sub(s, from, q - 1), q + 1 end
  local str, after = cjson_string(s, i, q)
  if str then return str, after end
  -- lua-cjson refused it: decoded here, which finds the error and says where
  local np = 0
  while true do                                               -- an escape at bs, before q
    local j = bs
    np = np + 1
    parts[np] = sub(s, from, j - 1)
    local e = byte(s, j + 1)
    if e == 117 then                                          -- \uXXXX
      local cp = hex4(s, j + 2)
      if not cp then fail(s, j, "invalid \\u escape (4 hex digits expected)") end
      from = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local lo = sub(s, from, from + 1) == "\\u" and hex4(s, from + 2)
        if not lo or lo < 0xDC00 or lo > 0xDFFF then
          fail(s, j, "invalid \\u escape (a high surrogate not followed by a low one)")
        end
        cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
        from = from + 6
      elseif cp >= 0xDC00 and cp <= 0xDFFF then
        fail(s, j, "invalid \\u escape (a low surrogate without a high one)")
      end
      np = np + 1
      parts[np] = utf8(cp)
    else
      local ch = ESC_IN[e]
      if not ch then
        if not e then fail(s, i, "unterminated string") end
        fail(s, j, "invalid escape '\\" .. char(e) .. "'")
      end
      np = np + 1
      parts[np] = ch
      from = j + 2
    end
    bs = find(s, "\\", from, true) or huge
    if q < from then
      q = find(s, '"', from, true)
      if not q then fail(s, i, "unterminated string") end
    end
    if q < bs then
      np = np + 1
      parts[np] = sub(s, from, q - 1)
      return concat(parts, "", 1, np), q + 1
    end
  end
end

local POW10 = {}
for k = 1, 22 do POW10[k] = tonumber("1e" .. k) end   -- exact doubles

-- the number token at i (the grammar lua-cjson accepts), its value, the index after it. A token
-- of at most 15 digits whose value is m * 10^k with |k| <= 22 is computed here: m and 10^k are
-- exact doubles, so one multiplication or division rounds correctly, as strtod would (Clinger's
-- fast path); other tokens go through tonumber, and number_value's check when suspicious.
local function decode_number(s, i)
  local j, c = i, byte(s, i)
  local neg = c == 45
  if neg then j = j + 1 c = byte(s, j) end                     -- -
  local m, digits, scale = 0, 0, 0
  if c == 48 then                                             -- 0
    j = j + 1
    c = byte(s, j)
    if c and c >= 48 and c <= 57 then fail(s, i, "invalid number (a leading zero)") end
    digits = 1
  elseif c and c >= 49 and c <= 57 then
    repeat
      m = m * 10 + (c - 48)
      digits = digits + 1
      j = j + 1
      c = byte(s, j)
    until not (c and c >= 48 and c <= 57)
  elseif c == 46 and neg then                                 -- -.5 (as lua-cjson reads it)
    c = byte(s, j + 1)
    if not (c and c >= 48 and c <= 57) then fail(s, i, "invalid number") end
    c = 46
  else
    fail(s, i, "invalid number")
  end
  if c == 46 then                                             -- . (digits after it optional)
    j = j + 1
    c = byte(s, j)
    while c and c >= 48 and c <= 57 do
      m = m * 10 + (c - 48)
      digits = digits + 1
      scale = scale + 1
      j = j + 1
      c = byte(s, j)
    end
  end
  local suspicious, k = digits >= 16, -scale
  if c == 101 or c == 69 then                                 -- e E
    j = j + 1
    c = byte(s, j)
    local eneg = c == 45
    if eneg or c == 43 then j = j + 1 c = byte(s, j) end
    local e, ed = 0, 0
    while c and c >= 48 and c <= 57 do
      e = e * 10 + (c - 48)
      ed = ed + 1
      j = j + 1
      c = byte(s, j)
    end
    if ed == 0 then fail(s, j, "invalid number (digits expected after the exponent)") end
    if ed >= 3 then suspicious = true end
    k = eneg and k - e or k + e
  end
  if suspicious then return number_value(sub(s, i, j - 1)), j end
  local x
  if k == 0 then x = m
  elseif k > 0 and k <= 22 then x = m * POW10[k]
  elseif k < 0 and k >= -22 then x = m / POW10[-k]
  else return tonumber(sub(s, i, j - 1)), j end
  if neg then x = -x end
  return x, j
end

local decode_value

local function decode_array(s, i, depth)
  if depth > MAX_DEPTH then fail(s, i, "nested deeper than " .. MAX_DEPTH .. " arrays/objects") end
  i = skip(s, i + 1)
  if byte(s, i) == 93 then return setmetatable({}, array_mt), i + 1 end
  local t, n = {}, 0
  while true do
    local v
    v, i = decode_value(s, i, depth)
    n = n + 1
    t[n] = v
    i = skip(s, i)
    local c = byte(s, i)
    if c == 93 then return t, i + 1 end
    if c ~= 44 then expected(s, i, "',' or ']'") end
    i = skip(s, i + 1)
  end
end

local function decode_object(s, i, depth)
  if depth > MAX_DEPTH then fail(s, i, "nested deeper than " .. MAX_DEPTH .. " arrays/objects") end
  i = skip(s, i + 1)
  local t = {}
  if byte(s, i) == 125 then return t, i + 1 end
  while true do
    if byte(s, i) ~= 34 then expected(s, i, "a string key") end
    local k, v
    k, i = decode_string(s, i)
    i = skip(s, i)
    if byte(s, i) ~= 58 then expected(s, i, "':'") end
    v, i = decode_value(s, skip(s, i + 1), depth)
    t[k] = v
    i = skip(s, i)
    local c = byte(s, i)
    if c == 125 then return t, i + 1 end
    if c ~= 44 then expected(s, i, "',' or '}'") end
    i = skip(s, i + 1)
  end
end

-- the value at i (no blanks before it) and the index after it
function decode_value(s, i, depth)
  local c = byte(s, i)
  if c == 34 then return decode_string(s, i) end
  if c == 123 then return decode_object(s, i, depth + 1) end
  if c == 91 then return decode_array(s, i, depth + 1) end
  if c == 45 or (c and c >= 48 and c <= 57) then return decode_number(s, i) end
  if c == 116 then if sub(s, i, i + 3) == "true" then return true, i + 4 end
  elseif c == 102 then if sub(s, i, i + 4) == "false" then return false, i + 5 end
  elseif c == 110 then if sub(s, i, i + 3) == "null" then return null, i + 4 end
  end
  expected(s, i, "a value")
end

local function lua_decode(s)
  bs = 0
  local v, i = decode_value(s, skip(s, 1), 0)
  i = skip(s, i)
  if i <= #s then expected(s, i, "the end of the text") end
  return v
end

local function error_text(e)
  if type(e) == "table" then return e[1] end
  return tostring(e)
end

--- Decodes JSON text: the value, or nil and a message ("expected ... at line L, column C").
function M.decode(s)
  if type(s) ~= "string" then return nil, "expected a string to decode, got a " .. type(s) end
  local ok, v = pcall(lua_decode, s)
  if ok then return v end
  return nil, error_text(v)
end

--- The value `decode` gives for a number token (a string such as "12345678901234567890"): a
-- Lua number, or a json.number when a double cannot hold it; nil and a message when `s` is not
-- a JSON number. A finite Lua number is returned as it is.
function M.number(s)
  if type(s) == "number" then
    if s ~= s or s == huge or s == -huge then return nil, "not a finite number" end
    return s
  end
  if type(s) ~= "string" then return nil, "expected a string, got a " .. type(s) end
  local c = byte(s, 1)
  if not (c == 45 or (c and c >= 48 and c <= 57)) then return nil, "'" .. s .. "' is not a JSON number" end
  local ok, v, j = pcall(decode_number, s, 1)
  if not ok or j <= #s then return nil, "'" .. s .. "' is not a JSON number" end
  return v
end

---------------------------------------------------------------------------------------------------
-- Kinds of values

--- The JSON type of a value: "object", "array", "string", "number", "boolean", "null", or nil
-- for a Lua value JSON has no type for.
function M.type(v)
  local t = type(v)
  if t == "table" then
    local mt = getmetatable(v)
    if mt == array_mt then return "array" end
    if mt == number_mt then return "number" end
    return v[1] ~= nil and "array" or "object"
  end
  if t == "string" or t == "number" or t == "boolean" then return t end
  if v == null then return "null" end
  return nil
end

--- true for a table that encodes as an array (marked with array_mt, or with [1] set).
function M.is_array(v)
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  if mt == array_mt then return true end
  return mt ~= number_mt and v[1] ~= nil
end

--- true for a table that encodes as an object.
function M.is_object(v)
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  return mt ~= array_mt and mt ~= number_mt and v[1] == nil
end

--- Marks `t` (a new table when nil) as an array and returns it.
function M.array(t)
  return setmetatable(t or {}, array_mt)
end

---------------------------------------------------------------------------------------------------
-- The encoder. Pieces go into `buf` (module level: encode does not yield and calls no code of
-- the caller's), `stack` holds the tables being encoded (for telling a cycle from deep nesting).

local buf, stack = {}, {}
local deepest = 0

local ESC_OUT = { [34] = '\\"', [92] = "\\\\", [8] = "\\b", [12] = "\\f", [10] = "\\n", [13] = "\\r",
                  [9] = "\\t", [127] = "\\u007f" }
for c = 0, 31 do ESC_OUT[c] = ESC_OUT[c] or format("\\u%04x", c) end

-- a string into buf between `open` and `close` ('"' and '"', or '{"' / ',"' and '":' for a key).
-- A byte loop (LuaJIT compiles it) finds what needs escaping ("/" does not); a string with
-- nothing to escape goes in as it is, others as the runs between escapes and the escapes.
local function put_string(s, n, open, close)
  n = n + 1
  buf[n] = open
  local from = 1
  for i = 1, #s do
    local c = byte(s, i)
    if c < 32 or c == 34 or c == 92 or c == 127 then
      if i > from then
        n = n + 1
        buf[n] = sub(s, from, i - 1)
      end
      n = n + 1
      buf[n] = ESC_OUT[c]
      from = i + 1
    end
  end
  if from == 1 then
    n = n + 1
    buf[n] = s
  elseif from <= #s then
    n = n + 1
    buf[n] = sub(s, from)
  end
  n = n + 1
  buf[n] = close
  return n
end

local function raise(msg) error({ msg }, 0) end

local encode_value

local function too_deep(v, depth)
  for i = 1, depth - 1 do
    if stack[i] == v then raise("cannot encode a table that contains itself (a cycle)") end
  end
  raise("cannot encode tables nested deeper than " .. MAX_DEPTH)
end

local function key_text(k)
  if type(k) == "string" then return "'" .. k .. "'" end
  return tostring(k)
end

-- a table whose keys are not simply 1..#t or strings: an array with holes, or an error
local function encode_irregular(v, n, depth)
  local count, max, str, other = 0, 0, nil, nil
  for k in pairs(v) do
    if type(k) == "number" and k >= 1 and k == floor(k) and k < huge then
      count = count + 1
      if k > max then max = k end
    elseif type(k) == "string" then
      str = str or k
    else
      other = other or k
    end
  end
  if other ~= nil then
    raise("cannot encode a table with the key " .. key_text(other) .. " (" .. type(other)
      .. "): object keys are strings, array indexes 1..n")
  end
  if str then
    if count > 0 then
      raise("cannot encode a table mixing array items (key " .. max .. ") and object keys ("
        .. key_text(str) .. ")")
    end
    raise("cannot encode a table marked as an array with the object key " .. key_text(str))
  end
  if max > 10 and max > 2 * count then
    raise("cannot encode an excessively sparse array (" .. count .. " items, up to index " .. max .. ")")
  end
  n = n + 1
  buf[n] = "["
  for i = 1, max do
    if i > 1 then n = n + 1 buf[n] = "," end
    local x = v[i]
    if x == nil then n = n + 1 buf[n] = "null" else n = encode_value(x, n, depth + 1) end
  end
  n = n + 1
  buf[n] = "]"
  return n
end

local function encode_table(v, n, depth)
  local mt = getmetatable(v)
  if mt == number_mt then
    n = n + 1
    buf[n] = v.text
    return n
  end
  if depth > MAX_DEPTH then too_deep(v, depth) end
  stack[depth] = v
  if depth > deepest then deepest = depth end
  local len = #v
  if len > 0 or mt == array_mt then
    if nkeys(v) ~= len then return encode_irregular(v, n, depth) end
    if len == 0 then
      n = n + 1
      buf[n] = "[]"
      return n
    end
    n = n + 1
    buf[n] = "["
    n = encode_value(v[1], n, depth + 1)
    for i = 2, len do
      n = n + 1
      buf[n] = ","
      n = encode_value(v[i], n, depth + 1)
    end
    n = n + 1
    buf[n] = "]"
    return n
  end
  local start, sep = n, '{"'
  for k, x in pairs(v) do
    if type(k) ~= "string" then return encode_irregular(v, start, depth) end
    n = encode_value(x, put_string(k, n, sep, '":'), depth + 1)
    sep = ',"'
  end
  n = n + 1
  buf[n] = n == start + 1 and "{}" or "}"
  return n
end

function encode_value(v, n, depth)
  local t = type(v)
  if t == "string" then
    return put_string(v, n, '"', '"')
  elseif t == "number" then
    n = n + 1
    buf[n] = number_text(v)
    return n
  elseif t == "table" then
    return encode_table(v, n, depth)
  elseif t == "boolean" then
    n = n + 1
    buf[n] = v and "true" or "false"
    return n
  elseif v == null or t == "nil" then
    n = n + 1
    buf[n] = "null"
    return n
  end
  raise("cannot encode a " .. t)
end

local function encode_all(v)
  local n = encode_value(v, 0, 1)
  return concat(buf, "", 1, n), n
end

--- Encodes a value as JSON text: the text, or nil and a message.
function M.encode(v)
  deepest = 0
  local ok, s, n = pcall(encode_all, v)
  for i = 1, deepest do stack[i] = nil end
  if ok then
    for i = 1, n do buf[i] = nil end   -- no text of this value kept alive
    return s
  end
  clear(buf)
  return nil, error_text(s)
end

return M
