--- gw.jsonschema: a JSON Schema (draft 7) validator compiler.
--
-- `compile(schema, opts)` checks a schema (a Lua table, as YAML or JSON gives it, or JSON text)
-- and turns it into a tree of closures, once; the validator it returns then checks values
-- without looking at the schema table again, and without allocating unless a check fails.
--
--   local jsonschema = require "gw.jsonschema"
--   local v = assert(jsonschema.compile({ type = "object", required = { "email" },
--     properties = { email = { type = "string", format = "email" } } }))
--   local ok, errs = v.validate(jsonschema.decode('{"email":"x"}'), "body")
--   -- ok == false, errs == { "body.email: must be a valid email" }
--
-- Keywords: type, enum, const, multipleOf, maximum, exclusiveMaximum, minimum,
-- exclusiveMinimum, maxLength, minLength (UTF-8 characters), pattern (PCRE2 through gw.regex,
-- in UTF mode, unanchored), format (email, uuid, date-time, date, time, uri, uri-reference,
-- hostname, ipv4, ipv6, regex), items (a schema or a tuple), additionalItems, maxItems,
-- minItems, uniqueItems, contains, maxProperties, minProperties, required, properties,
-- patternProperties, additionalProperties, dependencies, propertyNames, if/then/else, allOf,
-- anyOf, oneOf, not, $ref (local: "#", "#/definitions/name", any JSON pointer into the schema),
-- definitions; boolean schemas; `nullable: true` (OpenAPI) also admits null. Annotations
-- (title, description, default, examples, $schema, $id, $comment, readOnly, writeOnly,
-- contentMediaType, contentEncoding, example, deprecated) and `x-*` keys are accepted and
-- ignored. Any other keyword is an error: a misspelt keyword would otherwise check nothing.
--
-- JSON text goes through gw.json: JSON null is `json.null`, an empty array carries
-- `json.array_mt` (so `type: array` and `type: object` stay apart), a number a double cannot hold
-- is a json.number, checked here as its nearest double (as lua-cjson would have read it).
local json = require "gw.json"
local ok_rx, regex = pcall(require, "gw.regex")

local type, pairs, ipairs, next, tostring, tonumber = type, pairs, ipairs, next, tostring, tonumber
local getmetatable, setmetatable, pcall, error = getmetatable, setmetatable, pcall, error
local floor, abs, huge = math.floor, math.abs, math.huge
local byte, find, sub, format, char = string.byte, string.find, string.sub, string.format, string.char
local concat, sort = table.concat, table.sort

local M = {}
local plain_numbers

local NULL = json.null
M.null = NULL

--- The metatable that marks an empty array (`[]` as opposed to `{}`): gw.json's.
local array_mt = json.array_mt
M.array_mt = array_mt
local number_mt = json.number_mt
--- A new empty array, marked as such.
function M.empty_array() return setmetatable({}, array_mt) end


--- Decodes JSON text. Returns the value (JSON null is `jsonschema.null`, an empty array is marked
-- with `array_mt`), or nil and a message.
M.decode = json.decode

---------------------------------------------------------------------------------------------------
-- Instance helpers

-- an array: marked empty, or a table whose [1] is set (decoded objects have string keys only)
local is_array = json.is_array

-- a json.number as its double, other values as they are
local function plain(v)
  if type(v) == "table" and getmetatable(v) == number_mt then return tonumber(v.text) end
  return v
end

local function deep_equal(a, b)
  if a == b then return true end
  a, b = plain(a), plain(b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  local ea, eb = next(a) == nil, next(b) == nil
  if ea or eb then return ea and eb end                 -- [] and {} of YAML are alike
  if is_array(a) ~= is_array(b) then return false end
  for k, v in pairs(a) do
    if not deep_equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end
M.deep_equal = deep_equal

local function utf8_len(s)
  local n = 0
  for i = 1, #s do
    local c = byte(s, i)
    if c < 128 or c > 191 then n = n + 1 end
  end
  return n
end
M.utf8_len = utf8_len

--- JSON text of a value (gw.json's: "/" unescaped, exact numbers, `[]` kept). nil, err when not
-- encodable.
local encode = json.encode
M.encode = encode

local function show(v)
  if v == NULL then return "null" end
  if type(v) == "table" and next(v) == nil then return getmetatable(v) == array_mt and "[]" or "{}" end
  return encode(v) or tostring(v)
end

---------------------------------------------------------------------------------------------------
-- Formats: each takes a string, returns true when valid.

local function days_in(y, m)
  if m == 2 then return (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) and 29 or 28 end
  if m == 4 or m == 6 or m == 9 or m == 11 then return 30 end
  return 31
end

local function valid_date(s)
  local y, m, d = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  if not y then return false end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  return m >= 1 and m <= 12 and d >= 1 and d <= days_in(y, m)
end

local function valid_time(s)
  local h, mi, se, rest = s:match("^(%d%d):(%d%d):(%d%d)(.*)$")
  if not h then return false end
  if tonumber(h) > 23 or tonumber(mi) > 59 or tonumber(se) > 60 then return false end
  local frac = rest:match("^%.%d+")
  if frac then rest = sub(rest, #frac + 1) end
  if rest == "Z" or rest == "z" then return true end
  local oh, om = rest:match("^[+-](%d%d):(%d%d)$")
  return oh ~= nil and tonumber(oh) <= 23 and tonumber(om) <= 59
end

local function valid_hostname(s)
  if #s == 0 or #s > 253 then return false end
  if sub(s, -1) == "." then s = sub(s, 1, -2) end       -- a fully qualified name
  for label in (s .. "."):gmatch("([^.]*)%.") do
    if #label == 0 or #label > 63 or label:find("[^%w%-]") or label:find("^%-") or label:find("%-$") then
      return false
    end
  end
  return true
end

local function valid_ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, o in ipairs({ a, b, c, d }) do
    if #o > 3 or (#o > 1 and byte(o, 1) == 48) or tonumber(o) > 255 then return false end
  end
  return true
end

local function valid_ipv6(s)
  if s:find("[^%x:.]") then return false end
  local head, tail = s, nil
  local dc = s:find("::", 1, true)
  if dc then
    head, tail = sub(s, 1, dc - 1), sub(s, dc + 2)
    if tail:find("::", 1, true) then return false end
  end
  local n = 0
  local function groups(part, last)
    if part == "" then return true end
    local items = {}
    for g in (part .. ":"):gmatch("([^:]*):") do items[#items + 1] = g end
    for i, g in ipairs(items) do
      if last and i == #items and g:find(".", 1, true) then
        if not valid_ipv4(g) then return false end
        n = n + 2
      elseif #g < 1 or #g > 4 or g:find("[^%x]") then
        return false
      else
        n = n + 1
      end
    end
    return true
  end
  if not groups(head, tail == nil) or (tail and not groups(tail, true)) then return false end
  if dc then return n <= 7 end
  return n == 8
end

local URI_CHARS = "[^%w%-._~:/?#%[%]@!$&'()*+,;=%%]"
local function uri_chars_ok(s)
  if s:find(URI_CHARS) then return false end
  for i in s:gmatch("()%%") do
    if not sub(s, i + 1, i + 2):find("^%x%x$") then return false end
  end
  return true
end

local FORMATS = {
  email = function(s)
    if #s > 254 then return false end
    local l, d = s:match("^([^@]+)@([^@]+)$")
    if not l or #l > 64 then return false end
    if l:find("[^%w!#$%%&'*+/=?^_`{|}~.%-]") or l:find("^%.") or l:find("%.$") or l:find("..", 1, true) then
      return false
    end
    return d:find(".", 1, true) ~= nil and sub(d, -1) ~= "." and valid_hostname(d)
  end,
  uuid = function(s)
    return s:find("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$") ~= nil
  end,
  ["date-time"] = function(s)
    local d, t = s:match("^(%d%d%d%d%-%d%d%-%d%d)[Tt](.+)$")
    return d ~= nil and valid_date(d) and valid_time(t)
  end,
  date = valid_date,
  time = valid_time,
  uri = function(s) return s:find("^%a[%w+.%-]*:") ~= nil and uri_chars_ok(s) end,
  ["uri-reference"] = uri_chars_ok,
  hostname = valid_hostname,
  ipv4 = valid_ipv4,
  ipv6 = valid_ipv6,
  regex = function(s)
    if not ok_rx then return true end
    return regex.check(s) == true
  end,
}
M.formats = FORMATS

local FORMAT_NAMES = {}
for k in pairs(FORMATS) do FORMAT_NAMES[#FORMAT_NAMES + 1] = k end
sort(FORMAT_NAMES)

---------------------------------------------------------------------------------------------------
-- Patterns: PCRE2 in UTF mode (a "." is a character, not a byte), unanchored as in JSON Schema.

local UTF = "(*UTF)"
local function compile_pattern(p)
  if not ok_rx then return nil, "gw.regex is not available" end
  if regex.compile then
    local re, err = regex.compile(UTF .. p)
    if not re then
      return nil, (tostring(err):gsub("at offset (%d+)", function(o) return "at offset " .. math.max(0, o - #UTF) end))
    end
    return function(s) return re:match(s) end
  end
  local ok, err = regex.check(UTF .. p)
  if not ok then
    return nil, (tostring(err):gsub("at offset (%d+)", function(o) return "at offset " .. math.max(0, o - #UTF) end))
  end
  local full = UTF .. p
  return function(s) return regex.match(full, s) == true end
end

---------------------------------------------------------------------------------------------------
-- Validation state and error reporting.
--
-- A compiled node is `fn(v, st) -> ok`. st.path[1..st.n] is the path from the root (string keys,
-- numeric array indices); st.quiet > 0 while probing a subschema (anyOf, oneOf, not, if,
-- contains, propertyNames): nothing is recorded. st.stop tells a node to return at once (quiet,
-- or the error list is full).

local IDENT = "^[%a_][%w_%-]*$"

local function path_string(st)
  local parts = { st.prefix }
  for i = 1, st.n do
    local k = st.path[i]
    if type(k) == "number" then parts[#parts + 1] = "[" .. (k - 1) .. "]"
    elseif find(k, IDENT) then parts[#parts + 1] = (#parts == 1 and parts[1] == "") and k or ("." .. k)
    else parts[#parts + 1] = "[" .. (encode(k) or k) .. "]" end
  end
  local s = concat(parts)
  if s == "" then s = "(root)" end
  return s
end

local function report(st, msg)
  if st.quiet > 0 then return end
  local errs = st.errs
  if not errs then errs = {} st.errs = errs end
  errs[#errs + 1] = path_string(st) .. ": " .. msg
  if #errs >= st.max then st.stop = true end
end

-- a failure at a child of the current value (a missing or forbidden property)
local function report_at(st, key, msg)
  local n = st.n + 1
  st.n = n
  st.path[n] = key
  report(st, msg)
  st.n = n - 1
end

local function quiet_begin(st)
  st.quiet = st.quiet + 1
  st.stop = true
end
local function quiet_end(st)
  st.quiet = st.quiet - 1
  st.stop = st.quiet > 0 or (st.errs ~= nil and #st.errs >= st.max)
end

-- runs node on v quietly: true when v is valid
local function probe(node, v, st)
  quiet_begin(st)
  local n = st.n
  local ok = node(v, st)
  st.n = n
  quiet_end(st)
  return ok
end

-- runs node on the child value at key
local function child(node, v, key, st)
  local n = st.n + 1
  st.n = n
  st.path[n] = key
  local ok = node(v, st)
  st.n = n - 1
  return ok
end

---------------------------------------------------------------------------------------------------
-- Schema compilation.

local TYPES = { string = true, number = true, integer = true, boolean = true, object = true, array = true, null = true }
local TYPE_LIST = "array, boolean, integer, null, number, object, string"
local TYPE_WORD = { string = "a string", number = "a number", integer = "an integer", boolean = "a boolean",
                    object = "an object", array = "an array", null = "null" }
local TYPE_ORDER = { "object", "array", "string", "integer", "number", "boolean", "null" }

local ANNOTATIONS = { title = true, description = true, default = true, examples = true, ["$schema"] = true,
  ["$id"] = true, ["$comment"] = true, readOnly = true, writeOnly = true, contentMediaType = true,
  contentEncoding = true, example = true, deprecated = true, definitions = true }

local KEYWORDS = { type = true, enum = true, const = true, multipleOf = true, maximum = true,
  exclusiveMaximum = true, minimum = true, exclusiveMinimum = true, maxLength = true, minLength = true,
  pattern = true, format = true, items = true, additionalItems = true, maxItems = true, minItems = true,
  uniqueItems = true, contains = true, maxProperties = true, minProperties = true, required = true,
  properties = true, patternProperties = true, additionalProperties = true, dependencies = true,
  propertyNames = true, ["if"] = true, ["then"] = true, ["else"] = true, allOf = true, anyOf = true,
  oneOf = true, ["not"] = true, ["$ref"] = true, nullable = true }

local function spath(base, key)
  if type(key) == "number" then return base .. "[" .. (key - 1) .. "]" end
  if base == "" then return key end
  return base .. "." .. key
end

local function is_list(t)
  if type(t) ~= "table" then return false end
  if getmetatable(t) == array_mt then return true end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  for i = 1, n do if t[i] == nil then return false end end
  return n > 0 or next(t) == nil
end

local function is_object(t) return type(t) == "table" and (next(t) == nil and getmetatable(t) ~= array_mt or not is_list(t)) end

local function nonneg_int(v) return type(v) == "number" and v >= 0 and v == floor(v) and v < huge end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

local function plural(n, one, many) return n .. " " .. (n == 1 and one or many) end

-- string -> number/boolean/array for parameters (query, headers, path, forms): only when the
-- schema's types do not admit the string itself
local function coercer(types)
  if types.string then return nil end
  local want_int, want_num, want_bool, want_arr = types.integer, types.number, types.boolean, types.array
  if not (want_int or want_num or want_bool or want_arr) then return nil end
  return function(v)
    if want_num or want_int then
      if find(v, "^%-?%d+$") then return tonumber(v) end
      if want_num and find(v, "^%-?%d*%.?%d+[eE]?[+-]?%d*$") then
        local n = tonumber(v)
        if n and n == n and n ~= huge and n ~= -huge then return n end
      end
    end
    if want_bool then
      if v == "true" then return true end
      if v == "false" then return false end
    end
    if want_arr then return { v } end
    return v
  end
end

local compile_node   -- forward

local Compiler = {}
Compiler.__index = Compiler

function Compiler:err(path, msg)
  self.errs[#self.errs + 1] = (path == "" and "(root)" or path) .. ": " .. msg
end

-- resolves a local JSON pointer ("#", "#/definitions/a", "#/properties/x/items/0")
function Compiler:resolve(ref)
  if ref == "#" then return self.root end
  if sub(ref, 1, 2) ~= "#/" then return nil end
  local node = self.root
  for tok in (sub(ref, 3) .. "/"):gmatch("([^/]*)/") do
    tok = tok:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end):gsub("~1", "/"):gsub("~0", "~")
    if type(node) ~= "table" then return nil end
    local nxt = node[tok]
    if nxt == nil and tok:find("^%d+$") and is_list(node) then nxt = node[tonumber(tok) + 1] end
    if nxt == nil then return nil end
    node = nxt
  end
  return node
end

-- a subschema at a deeper instance level (properties, items...): cycles through it are fine
function Compiler:sub_descend(s, path)
  self.level = self.level + 1
  local fn = self:node(s, path)
  self.level = self.level - 1
  return fn
end

-- a subschema applied to the same value (allOf, $ref...): a cycle made of these alone would
-- never end, so it is an error
function Compiler:node(s, path)
  local memo = self.memo[s]
  if memo then
    if memo.fn then return memo.fn end
    if memo.level == self.level then
      self:err(path, "the schema refers to itself without descending into a property or an item")
      return function() return true end
    end
    return function(v, st) return memo.fn(v, st) end   -- resolved once compiled
  end
  if type(s) ~= "table" then return compile_node(self, s, path) end
  memo = { level = self.level }
  self.memo[s] = memo
  memo.fn = compile_node(self, s, path)
  return memo.fn
end

-- a check that reports msg when test(v) is false
local function checker(msg, test)
  return function(v, st)
    if test(v) then return true end
    report(st, msg)
    return false
  end
end
local function add(list, msg, test) list[#list + 1] = checker(msg, test) end

-- a check that every one of names is present; each missing one is reported at its path
local function present(names, msg)
  return function(v, st)
    local ok = true
    for i = 1, #names do
      if v[names[i]] == nil then
        report_at(st, names[i], msg)
        ok = false
        if st.stop then return false end
      end
    end
    return ok
  end
end

-- no two items of the array equal
local function unique(v)
  local n = #v
  if n <= 8 then                                        -- small: pairwise, nothing allocated
    for i = 2, n do
      for j = 1, i - 1 do
        if deep_equal(v[i], v[j]) then return false end
      end
    end
    return true
  end
  local seen, tabs = {}, {}
  for i = 1, n do
    local x = v[i]
    if type(x) == "table" then
      for j = 1, #tabs do
        if deep_equal(tabs[j], x) then return false end
      end
      tabs[#tabs + 1] = x
    else
      if seen[x] then return false end
      seen[x] = true
    end
  end
  return true
end

local function bool_schema(b)
  if b then return function() return true end end
  return checker("is not allowed", function() return false end)
end

function compile_node(c, s, path)
  if s == true or s == false then return bool_schema(s) end
  if not is_object(s) then
    c:err(path, "a schema must be an object or a boolean")
    return bool_schema(true)
  end

  -- $ref: the other keywords next to it are ignored (draft 7)
  local ref = s["$ref"]
  if ref ~= nil then
    if type(ref) ~= "string" then c:err(spath(path, "$ref"), "must be a string") return bool_schema(true) end
    if sub(ref, 1, 1) ~= "#" then
      c:err(spath(path, "$ref"), "only local references (\"#/definitions/...\") are supported")
      return bool_schema(true)
    end
    local target = c:resolve(ref)
    if target == nil then c:err(spath(path, "$ref"), "cannot resolve " .. ref) return bool_schema(true) end
    return c:node(target, ref == "#" and "(root)" or sub(ref, 3):gsub("/", "."))
  end

  for _, k in ipairs(sorted_keys(s)) do
    if type(k) ~= "string" then c:err(path, "keyword " .. tostring(k) .. " is not a string")
    elseif not KEYWORDS[k] and not ANNOTATIONS[k] and sub(k, 1, 2) ~= "x-" then
      c:err(spath(path, k), "unknown keyword")
    end
  end
  if s.definitions ~= nil then
    if not is_object(s.definitions) then c:err(spath(path, "definitions"), "must be an object")
    else
      for _, k in ipairs(sorted_keys(s.definitions)) do
        c:sub_descend(s.definitions[k], spath(spath(path, "definitions"), k))
      end
    end
  end

  local function num(k)
    local v = s[k]
    if v == nil then return nil end
    if type(v) ~= "number" or v ~= v then
      local hint = type(v) == "boolean" and " (the draft 4 boolean form is not supported)" or ""
      c:err(spath(path, k), "must be a number" .. hint)
      return nil
    end
    return v
  end
  local function count(k)
    local v = s[k]
    if v == nil then return nil end
    if not nonneg_int(v) then c:err(spath(path, k), "must be a non-negative integer") return nil end
    return v
  end
  local function schema_list(k)
    local v = s[k]
    if v == nil then return nil end
    if not is_list(v) or #v == 0 then c:err(spath(path, k), "must be a non-empty array of schemas") return nil end
    local out = {}
    for i, x in ipairs(v) do out[i] = c:node(x, spath(spath(path, k), i)) end
    return out
  end

  -- type
  local types, type_msg
  local tv = s.type
  if tv ~= nil then
    local list = type(tv) == "string" and { tv } or (is_list(tv) and tv) or nil
    if not list or #list == 0 then
      c:err(spath(path, "type"), "must be a type name or a non-empty array of type names")
    else
      types = {}
      for i, name in ipairs(list) do
        if not TYPES[name] then
          c:err(type(tv) == "string" and spath(path, "type") or spath(spath(path, "type"), i),
                "unknown type " .. show(name) .. " (expected one of: " .. TYPE_LIST .. ")")
        elseif types[name] then
          c:err(spath(spath(path, "type"), i), "duplicate type " .. show(name))
        else
          types[name] = true
        end
      end
    end
  end
  if s.nullable ~= nil then
    if type(s.nullable) ~= "boolean" then c:err(spath(path, "nullable"), "must be a boolean")
    elseif s.nullable and types then types.null = true end
  end
  if types then
    local words = {}
    for _, t in ipairs(TYPE_ORDER) do
      if types[t] and not (t == "integer" and types.number) then words[#words + 1] = TYPE_WORD[t] end
    end
    if #words == 0 then types = nil
    elseif #words == 1 then type_msg = "must be " .. words[1]
    else type_msg = "must be " .. concat(words, ", ", 1, #words - 1) .. " or " .. words[#words] end
  end
  local coerce = c.coerce and types and coercer(types) or nil

  local checks = {}        -- fn(v, st) -> ok, applied to every value
  local str_checks, num_checks, obj_checks, arr_checks = {}, {}, {}, {}

  -- enum, const
  if s.enum ~= nil then
    local e = s.enum
    if not is_list(e) or #e == 0 then c:err(spath(path, "enum"), "must be a non-empty array")
    else
      local set, tables, shown = {}, {}, {}
      for i, x in ipairs(e) do
        if type(x) == "table" then tables[#tables + 1] = x else set[x] = true end
        if i <= 10 then shown[i] = show(x) end
      end
      add(checks, "must be one of: " .. concat(shown, ", ") .. (#e > 10 and ", ..." or ""), function(v)
        if type(v) ~= "table" then return set[v] == true end
        for i = 1, #tables do if deep_equal(tables[i], v) then return true end end
        return false
      end)
    end
  end
  if s.const ~= nil then
    local k = s.const
    add(checks, "must be equal to " .. show(k), function(v) return v == k or deep_equal(k, v) end)
  end

  -- numbers
  local mult = num("multipleOf")
  if mult and mult <= 0 then c:err(spath(path, "multipleOf"), "must be greater than 0") mult = nil end
  if mult then
    add(num_checks, "must be a multiple of " .. show(mult), function(v)
      local q = v / mult
      return q == q and abs(q - floor(q + 0.5)) <= 1e-9 * math.max(1, abs(q))
    end)
  end
  local lo, hi, xlo, xhi = num("minimum"), num("maximum"), num("exclusiveMinimum"), num("exclusiveMaximum")
  if lo then add(num_checks, "must be at least " .. show(lo), function(v) return v >= lo end) end
  if hi then add(num_checks, "must be at most " .. show(hi), function(v) return v <= hi end) end
  if xlo then add(num_checks, "must be greater than " .. show(xlo), function(v) return v > xlo end) end
  if xhi then add(num_checks, "must be less than " .. show(xhi), function(v) return v < xhi end) end

  -- strings: a UTF-8 character is 1 to 4 bytes, so most lengths are settled by the byte count
  local minl, maxl = count("minLength"), count("maxLength")
  if minl and minl > 0 then
    add(str_checks, "must be at least " .. plural(minl, "character", "characters"), function(v)
      local n = #v
      return n >= 4 * minl or (n >= minl and utf8_len(v) >= minl)
    end)
  end
  if maxl then
    add(str_checks, "must be at most " .. plural(maxl, "character", "characters"), function(v)
      return #v <= maxl or utf8_len(v) <= maxl
    end)
  end
  if s.pattern ~= nil then
    if type(s.pattern) ~= "string" then c:err(spath(path, "pattern"), "must be a string")
    else
      local m, err = compile_pattern(s.pattern)
      if not m then c:err(spath(path, "pattern"), "invalid regex: " .. tostring(err))
      else add(str_checks, "must match the pattern " .. s.pattern, m) end
    end
  end
  if s.format ~= nil then
    local f = type(s.format) == "string" and FORMATS[s.format]
    if not f then
      c:err(spath(path, "format"), "unknown format " .. show(s.format) .. " (known: " .. concat(FORMAT_NAMES, ", ") .. ")")
    else
      add(str_checks, "must be a valid " .. s.format, f)
    end
  end

  -- arrays
  local items = s.items
  if items ~= nil then
    -- a tuple (a schema per position, then additionalItems), or one schema for every item
    local tuple, rest = {}, nil
    if is_list(items) and next(items) ~= nil then
      for i, x in ipairs(items) do tuple[i] = c:sub_descend(x, spath(spath(path, "items"), i)) end
      rest = s.additionalItems ~= nil and c:sub_descend(s.additionalItems, spath(path, "additionalItems")) or nil
    else
      rest = c:sub_descend(items, spath(path, "items"))
    end
    local nt = #tuple
    arr_checks[#arr_checks + 1] = function(v, st)
      local ok = true
      for i = 1, #v do
        local node = i <= nt and tuple[i] or rest
        if not node then break end
        if not child(node, v[i], i, st) then
          ok = false
          if st.stop then return false end
        end
      end
      return ok
    end
  elseif s.additionalItems ~= nil then
    c:sub_descend(s.additionalItems, spath(path, "additionalItems"))     -- checked, has no effect
  end
  local mini, maxi = count("minItems"), count("maxItems")
  if mini and mini > 0 then
    add(arr_checks, "must have at least " .. plural(mini, "item", "items"), function(v) return #v >= mini end)
  end
  if maxi then
    add(arr_checks, "must have at most " .. plural(maxi, "item", "items"), function(v) return #v <= maxi end)
  end
  if s.uniqueItems ~= nil and type(s.uniqueItems) ~= "boolean" then
    c:err(spath(path, "uniqueItems"), "must be a boolean")
  elseif s.uniqueItems then
    add(arr_checks, "must not contain duplicate items", unique)
  end
  if s.contains ~= nil then
    local node = c:sub_descend(s.contains, spath(path, "contains"))
    arr_checks[#arr_checks + 1] = function(v, st)
      for i = 1, #v do
        if probe(node, v[i], st) then return true end
      end
      report(st, "must contain at least one matching item")
      return false
    end
  end

  -- objects
  local minp, maxp = count("minProperties"), count("maxProperties")
  if minp or maxp then
    obj_checks[#obj_checks + 1] = function(v, st)
      local n = 0
      for _ in pairs(v) do n = n + 1 end
      if minp and n < minp then report(st, "must have at least " .. plural(minp, "property", "properties")) return false end
      if maxp and n > maxp then report(st, "must have at most " .. plural(maxp, "property", "properties")) return false end
      return true
    end
  end
  local lower = c.lower_keys
  local function key(k) return lower and type(k) == "string" and k:lower() or k end
  if s.required ~= nil then
    local r = s.required
    if not is_list(r) then c:err(spath(path, "required"), "must be an array of property names"
      .. (type(r) == "boolean" and " (the draft 4 boolean form is not supported)" or ""))
    else
      local names, seen = {}, {}
      for i, name in ipairs(r) do
        if type(name) ~= "string" then c:err(spath(spath(path, "required"), i), "must be a string")
        elseif not seen[key(name)] then seen[key(name)] = true names[#names + 1] = key(name) end
      end
      if #names > 0 then obj_checks[#obj_checks + 1] = present(names, "is required") end
    end
  end

  local props, prop_names, prop_nodes = {}, {}, {}
  if s.properties ~= nil then
    if not is_object(s.properties) then c:err(spath(path, "properties"), "must be an object")
    else
      for _, k in ipairs(sorted_keys(s.properties)) do
        local name = key(tostring(k))
        prop_names[#prop_names + 1] = name
        prop_nodes[#prop_nodes + 1] = c:sub_descend(s.properties[k], spath(spath(path, "properties"), tostring(k)))
        props[name] = true
      end
    end
  end
  local pat_match, pat_nodes = {}, {}
  if s.patternProperties ~= nil then
    if not is_object(s.patternProperties) then c:err(spath(path, "patternProperties"), "must be an object")
    else
      for _, k in ipairs(sorted_keys(s.patternProperties)) do
        local p = spath(spath(path, "patternProperties"), tostring(k))
        local m, err = compile_pattern(tostring(k))
        if not m then c:err(p, "invalid regex: " .. tostring(err)) end
        local node = c:sub_descend(s.patternProperties[k], p)
        if m then pat_match[#pat_match + 1] = m pat_nodes[#pat_nodes + 1] = node end
      end
    end
  end
  local additional = s.additionalProperties
  local add_node = additional ~= nil and additional ~= true and c:sub_descend(additional, spath(path, "additionalProperties")) or nil
  if #prop_names > 0 then
    local np = #prop_names
    obj_checks[#obj_checks + 1] = function(v, st)
      local ok = true
      for i = 1, np do
        local name = prop_names[i]
        local x = v[name]
        if x ~= nil and not child(prop_nodes[i], x, name, st) then
          ok = false
          if st.stop then return false end
        end
      end
      return ok
    end
  end
  if #pat_match > 0 or add_node then
    local npat = #pat_match
    obj_checks[#obj_checks + 1] = function(v, st)
      local ok = true
      for k, x in pairs(v) do
        local ks = type(k) == "string" and k or tostring(k)
        local matched = props[k] ~= nil
        for i = 1, npat do
          if pat_match[i](ks) then
            matched = true
            if not child(pat_nodes[i], x, k, st) then
              ok = false
              if st.stop then return false end
            end
          end
        end
        if not matched and add_node and not child(add_node, x, k, st) then
          ok = false
          if st.stop then return false end
        end
      end
      return ok
    end
  end
  if s.dependencies ~= nil then
    if not is_object(s.dependencies) then c:err(spath(path, "dependencies"), "must be an object")
    else
      for _, k in ipairs(sorted_keys(s.dependencies)) do
        local d = s.dependencies[k]
        local p = spath(spath(path, "dependencies"), tostring(k))
        local name = key(k)
        local check
        if is_list(d) and (next(d) == nil or type(d[1]) == "string") then
          local need = {}
          for i, x in ipairs(d) do
            if type(x) ~= "string" then c:err(spath(p, i), "must be a string") else need[#need + 1] = key(x) end
          end
          check = present(need, "is required when " .. tostring(k) .. " is present")
        else
          check = c:node(d, p)
        end
        obj_checks[#obj_checks + 1] = function(v, st)
          if v[name] == nil then return true end
          return check(v, st)
        end
      end
    end
  end
  if s.propertyNames ~= nil then
    local node = c:sub_descend(s.propertyNames, spath(path, "propertyNames"))
    obj_checks[#obj_checks + 1] = function(v, st)
      local ok = true
      for k in pairs(v) do
        if not probe(node, tostring(k), st) then
          report_at(st, k, "is not a valid property name")
          ok = false
          if st.stop then return false end
        end
      end
      return ok
    end
  end

  -- combinators
  local all = schema_list("allOf")
  if all then
    for _, node in ipairs(all) do checks[#checks + 1] = node end
  end
  local any = schema_list("anyOf")
  if any then
    checks[#checks + 1] = function(v, st)
      for i = 1, #any do
        if probe(any[i], v, st) then return true end
      end
      report(st, "must match at least one of the schemas in anyOf")
      return false
    end
  end
  local one = schema_list("oneOf")
  if one then
    checks[#checks + 1] = function(v, st)
      local n = 0
      for i = 1, #one do
        if probe(one[i], v, st) then n = n + 1 end
      end
      if n == 1 then return true end
      report(st, "must match exactly one of the schemas in oneOf (matched " .. n .. ")")
      return false
    end
  end
  if s["not"] ~= nil then
    local node = c:node(s["not"], spath(path, "not"))
    checks[#checks + 1] = function(v, st)
      if not probe(node, v, st) then return true end
      report(st, "must not match the schema in not")
      return false
    end
  end
  if s["if"] ~= nil then
    local cond = c:node(s["if"], spath(path, "if"))
    local th = s["then"] ~= nil and c:node(s["then"], spath(path, "then")) or nil
    local el = s["else"] ~= nil and c:node(s["else"], spath(path, "else")) or nil
    if th or el then
      checks[#checks + 1] = function(v, st)
        if probe(cond, v, st) then
          return th == nil or th(v, st)
        end
        return el == nil or el(v, st)
      end
    end
  else
    if s["then"] ~= nil then c:node(s["then"], spath(path, "then")) end   -- checked, no effect
    if s["else"] ~= nil then c:node(s["else"], spath(path, "else")) end
  end

  -- the node
  local nc, ns, nn, no, na = #checks, #str_checks, #num_checks, #obj_checks, #arr_checks
  local function run(list, n, v, st)
    local ok = true
    for i = 1, n do
      if not list[i](v, st) then
        ok = false
        if st.stop then return false end
      end
    end
    return ok
  end
  if not types and not coerce and nc + ns + nn + no + na == 0 then return bool_schema(true) end
  local tint, tnum = types and types.integer, types and types.number
  return function(v, st)
    if coerce and type(v) == "string" then v = coerce(v) end
    local t = type(v)
    local array
    if t == "table" then
      local mt = getmetatable(v)
      if mt == number_mt then v, t = tonumber(v.text), "number"   -- a number beyond a double
      else array = mt == array_mt or v[1] ~= nil end
    end
    if types then
      local ok
      if t == "number" then
        ok = tnum or (tint and v == floor(v) and v > -huge and v < huge)
      elseif t == "table" then ok = types[array and "array" or "object"]
      elseif v == NULL then ok = types.null
      else ok = types[t] end
      if not ok then report(st, type_msg) return false end
    end
    local ok = true
    if t == "string" then ok = run(str_checks, ns, v, st)
    elseif t == "number" then ok = run(num_checks, nn, v, st)
    elseif t == "table" then
      if array then ok = run(arr_checks, na, v, st) else ok = run(obj_checks, no, v, st) end
    end
    if not ok and st.stop then return false end
    return run(checks, nc, v, st) and ok
  end
end

---------------------------------------------------------------------------------------------------

-- json.number values of a schema (from JSON text) as their doubles: the keywords read numbers
function plain_numbers(t, seen)
  if seen[t] then return end
  seen[t] = true
  for k, v in pairs(t) do
    if type(v) == "table" then
      if getmetatable(v) == number_mt then t[k] = tonumber(v.text) else plain_numbers(v, seen) end
    end
  end
end

--- Compiles a schema.
-- @param schema a table (boolean schemas too) or JSON text
-- @tparam[opt] table opts `coerce` (strings are read as the integer, number, boolean or
--   one-item array the schema asks for: query arguments, headers, path parameters, forms),
--   `lower_keys` (property names are lowercased: headers), `max_errors` (default 20)
-- @return a validator `{ validate = fn }`, or nil and a list of "path: message" errors.
--   `validate(value, prefix, errs)` returns true, or false and the list of errors
--   ("prefix.a.b[0]: message"), appended to `errs` when given (at most max_errors in all).
function M.compile(schema, opts)
  opts = opts or {}
  if type(schema) == "string" then
    local decoded, err = M.decode(schema)
    if decoded == nil then return nil, { "(root): invalid JSON: " .. tostring(err) } end
    schema = decoded
  end
  if type(schema) == "table" then plain_numbers(schema, {}) end
  local c = setmetatable({ root = schema, errs = {}, memo = {}, level = 0,
                           coerce = opts.coerce, lower_keys = opts.lower_keys }, Compiler)
  local root = c:node(schema, "")
  if #c.errs > 0 then return nil, c.errs end
  local max = opts.max_errors or 20
  local st = { path = {}, n = 0, quiet = 0, stop = false, max = max, errs = nil, prefix = "" }
  local v = {}
  function v.validate(value, prefix, errs)
    st.n, st.quiet, st.prefix, st.errs = 0, 0, prefix or "", errs
    st.stop = errs ~= nil and #errs >= max
    if st.stop then return false, errs end
    local ok = root(value, st)
    errs = st.errs
    st.errs = nil
    return ok, errs
  end
  return v
end

--- Checks a schema: true, or nil and the errors joined with "; ".
function M.check(schema, opts)
  local v, errs = M.compile(schema, opts)
  if v then return true end
  return nil, concat(errs, "; ")
end

return M
