--- gw.transform — what the request-transformer and response-transformer plugins share: their
-- rule lists ("name:value" strings) compiled once per config, the `$(...)` templates, dotted
-- JSON field paths, a JSON codec that gives back what it read (empty arrays stay arrays, long
-- numbers keep their digits), ordered query/form argument lists (untouched pairs keep their
-- bytes), and the remove / rename / replace / add / append operations on headers, arguments and
-- JSON objects.
--
-- Nothing here calls gw.* when the module loads: schema.lua files require it in the master and
-- in `gw check`, where `gw` does not exist.
-- @module gw.transform
local M = {}

local type, pairs, ipairs, tostring, tonumber, setmetatable, getmetatable, pcall, error =
      type, pairs, ipairs, tostring, tonumber, setmetatable, getmetatable, pcall, error
local byte, char, sub, find, gsub, gmatch, format, lower, match =
      string.byte, string.char, string.sub, string.find, string.gsub, string.gmatch, string.format,
      string.lower, string.match
local concat = table.concat
local floor, huge = math.floor, math.huge

M.OPS = { "remove", "rename", "replace", "add", "append" }   -- the order rules are applied in
M.JSON_TYPES = { "string", "number", "boolean" }

---------------------------------------------------------------------------------------------------
-- "name:value" pairs and names

--- Splits "name:value" at its first colon; nil when there is none.
function M.split_pair(s)
  local i = find(s, ":", 1, true)
  if not i then return nil end
  return sub(s, 1, i - 1), sub(s, i + 1)
end
local split_pair = M.split_pair

local function trim(s) return (gsub(s, "^%s+", ""):gsub("%s+$", "")) end

local function is_header_name(s) return find(s, "^[%w!#$%%&'*+.^_`|~%-]+$") ~= nil end

-- header names compare case-insensitively, and gw's header functions take `_` for `-`
local function header_key(s) return (gsub(lower(s), "_", "-")) end

---------------------------------------------------------------------------------------------------
-- Templates: "$(headers.x-user)", "$(query.id)", "$(uri_captures.id)", "$(uri_captures[1])",
-- with an optional fallback: "$(headers.x-user or 'anonymous')". `$$` and `\$` are a literal `$`.

local SOURCES = { headers = "headers", query = "query", query_params = "query",
                  uri_captures = "uri_captures" }

local function parse_ref(expr)
  expr = trim(expr)
  local base, rest = match(expr, "^([%a_][%w_]*)(.*)$")
  if not base then return nil, "expected $(headers.NAME), $(query.NAME) or $(uri_captures.NAME)" end
  local src = SOURCES[base]
  if not src then
    return nil, "unknown source '" .. base .. "' (expected headers, query or uri_captures)"
  end
  local name, tail
  local c = sub(rest, 1, 1)
  if c == "." then
    name, tail = match(rest, "^%.([^%s%[%]\"']+)(.*)$")
  elseif c == "[" then
    local q = sub(rest, 2, 2)
    if q == '"' or q == "'" then
      local close = find(rest, q .. "]", 3, true)
      if close then name, tail = sub(rest, 3, close - 1), sub(rest, close + 2) end
    else
      name, tail = match(rest, "^%[%s*(%d+)%s*%](.*)$")
    end
  end
  if not name or name == "" then return nil, "expected a name after '" .. base .. "'" end
  tail = trim(tail)
  local default
  if tail ~= "" then
    local _, d = match(tail, "^or%s+([\"'])(.*)%1$")
    if not d then return nil, "unexpected '" .. tail .. "' (a fallback is written: or 'text')" end
    default = d
  end
  if src == "uri_captures" and find(name, "^%d+$") then name = tonumber(name) end
  return { src = src, name = name, default = default }
end

-- index of the `)` closing the `$(` whose `(` is at i, quotes respected
local function closing(s, i)
  local quote
  for j = i + 1, #s do
    local c = sub(s, j, j)
    if quote then
      if c == quote then quote = nil end
    elseif c == '"' or c == "'" then quote = c
    elseif c == ")" then return j end
  end
  return nil
end

--- Compiles a template. Returns the literal string when `s` references nothing, else a template
-- table `{ parts = { "literal", ref, ... } }`; nil and a message when `s` is not a valid template.
-- `path`: the result is a request path (substituted values are percent-encoded where a path
-- cannot carry them as they are).
function M.compile_template(s, path)
  if not find(s, "$", 1, true) then return s end
  local parts, buf, refs = {}, {}, 0
  local i, n = 1, #s
  while i <= n do
    local c, d = sub(s, i, i), sub(s, i + 1, i + 1)
    if (c == "\\" or c == "$") and d == "$" then
      buf[#buf + 1] = "$"
      i = i + 2
    elseif c == "$" and d == "(" then
      local close = closing(s, i + 1)
      if not close then return nil, "unclosed '$(' at position " .. i end
      local ref, err = parse_ref(sub(s, i + 2, close - 1))
      if not ref then return nil, "'" .. sub(s, i, close) .. "': " .. err end
      if #buf > 0 then parts[#parts + 1] = concat(buf) buf = {} end
      parts[#parts + 1] = ref
      refs = refs + 1
      i = close + 1
    else
      buf[#buf + 1] = c
      i = i + 1
    end
  end
  if #buf > 0 then parts[#parts + 1] = concat(buf) end
  if refs == 0 then return parts[1] or "" end
  return { parts = parts, path = path or nil }
end

--- A request's template values, read when first needed: `env` is a table per request.
local function lookup(env, ref)
  local src, name = ref.src, ref.name
  if src == "headers" then return gw.request.get_header(name) end
  if src == "query" then
    local q = env.query
    if not q then q = gw.request.get_query(1000) env.query = q end
    local v = q[name]
    if type(v) == "table" then v = v[1] end
    if v == true then return "" end
    return v
  end
  local caps = env.captures
  if not caps then caps = gw.request.get_uri_captures() env.captures = caps end
  local v
  if type(name) == "number" then v = caps.unnamed[name] else v = caps.named[name] end
  if v == false then return nil end
  return v
end

local function path_escape(c) return format("%%%02X", byte(c)) end

local buf = {}   -- reused by render (nothing in it yields)

--- Renders a compiled template; nil when a referenced value is absent and has no fallback.
function M.render(t, env)
  if type(t) == "string" then return t end
  local parts, n = t.parts, 0
  for i = 1, #parts do
    local p = parts[i]
    if type(p) ~= "string" then
      local v = lookup(env, p)
      if v == nil then v = p.default end
      if v == nil then
        for j = 1, n do buf[j] = nil end
        return nil
      end
      if t.path then v = gsub(v, "[%z\1-\32?#\127-\255]", path_escape) end
      p = v
    end
    n = n + 1
    buf[n] = p
  end
  local s = concat(buf, "", 1, n)
  for j = 1, n do buf[j] = nil end
  return s
end
local render = M.render

--- true when the path has a `.` or `..` segment (also percent-encoded).
function M.has_dot_segment(p)
  for seg in gmatch(p, "[^/]+") do
    local d = gsub(lower(seg), "%%2e", ".")
    if d == "." or d == ".." then return true end
  end
  return false
end

---------------------------------------------------------------------------------------------------
-- JSON field paths: "user.name" is the field `name` of the object `user`; `\.` is a dot inside a
-- name ("a\.b" is the top-level field "a.b").

--- Returns the list of names, or nil and a message.
function M.compile_path(s)
  local segs, cur = {}, {}
  local i, n = 1, #s
  while i <= n do
    local c = sub(s, i, i)
    if c == "\\" and sub(s, i + 1, i + 1) == "." then
      cur[#cur + 1] = "."
      i = i + 2
    else
      if c == "." then
        if #cur == 0 then return nil, "'" .. s .. "' has an empty name between dots" end
        segs[#segs + 1] = concat(cur)
        cur = {}
      else
        cur[#cur + 1] = c
      end
      i = i + 1
    end
  end
  if #cur == 0 then
    return nil, s == "" and "empty field name" or ("'" .. s .. "' has an empty name between dots")
  end
  segs[#segs + 1] = concat(cur)
  return segs
end

---------------------------------------------------------------------------------------------------
-- JSON. Decoding goes through lua-cjson (an instance of its own: its settings do not touch
-- gw.json's), which also validates. lua-cjson reads `[]` as an empty table, which encodes back as
-- `{}`, and reads numbers as doubles; a body with an empty array or a run of 16 digits is
-- therefore decoded again by the Lua decoder below, which marks arrays (ARRAY) and keeps long
-- numbers as the text they were written as (RAWNUM). The encoder is ours: arrays marked or with an
-- element 1 are arrays, other tables objects; integers print as integers, other numbers with the
-- fewest digits that read back the same.

local cjson = require("cjson.safe").new()
cjson.decode_invalid_numbers(false)   -- no NaN, Infinity, hex: strict JSON
local null = cjson.null
M.null = null

local ARRAY = { __name = "json array" }
local RAWNUM = { __name = "json number" }
M.ARRAY = ARRAY

local function is_array(v)
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  return mt == ARRAY or (mt == nil and v[1] ~= nil)
end

local function is_object(v)
  return type(v) == "table" and getmetatable(v) == nil and v[1] == nil
end
M.is_array, M.is_object = is_array, is_object

--- A new JSON array of the arguments.
function M.array(...) return setmetatable({ ... }, ARRAY) end

-- what lua-cjson cannot give back: an empty array, or a run of 16 digits (and dots); one
-- JIT-compiled PCRE2 scan, compiled at first use
local needs_lua_decoder
local function lua_decoder_needed(s)
  if not needs_lua_decoder then
    needs_lua_decoder = assert(require("gw.regex").compile("\\[[ \\t\\r\\n]*\\]|[0-9.]{16}"))
  end
  return needs_lua_decoder:match(s)
end

local ESC_IN = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n",
                 r = "\r", t = "\t" }

local function utf8(cp)
  if cp < 0x80 then return char(cp) end
  if cp < 0x800 then return char(0xC0 + floor(cp / 0x40), 0x80 + cp % 0x40) end
  if cp < 0x10000 then
    return char(0xE0 + floor(cp / 0x1000), 0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  end
  return char(0xF0 + floor(cp / 0x40000), 0x80 + floor(cp / 0x1000) % 0x40,
              0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

local function skip(s, i) return find(s, "[^ \t\r\n]", i) or #s + 1 end

local function bad(s, i) error("unexpected character at " .. i, 0) end

local function decode_string(s, i)
  if byte(s, i) ~= 34 then bad(s, i) end
  local j, parts = i + 1, nil
  while true do
    local k = find(s, '["\\]', j)
    if not k then bad(s, #s) end
    if byte(s, k) == 34 then
      local piece = sub(s, j, k - 1)
      if not parts then return piece, k + 1 end
      parts[#parts + 1] = piece
      return concat(parts), k + 1
    end
    parts = parts or {}
    parts[#parts + 1] = sub(s, j, k - 1)
    local e = sub(s, k + 1, k + 1)
    if e == "u" then
      local cp = tonumber(sub(s, k + 2, k + 5), 16)
      if not cp then bad(s, k) end
      j = k + 6
      if cp >= 0xD800 and cp <= 0xDBFF and sub(s, j, j + 1) == "\\u" then
        local lo = tonumber(sub(s, j + 2, j + 5), 16)
        if lo and lo >= 0xDC00 and lo <= 0xDFFF then
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
          j = j + 6
        end
      end
      parts[#parts + 1] = utf8(cp)
    else
      local ch = ESC_IN[e]
      if not ch then bad(s, k) end
      parts[#parts + 1] = ch
      j = k + 2
    end
  end
end

local decode_value

local function decode_container(s, i, close)
  local t, is_arr = {}, close == 93
  if is_arr then setmetatable(t, ARRAY) end
  i = skip(s, i + 1)
  if byte(s, i) == close then return t, i + 1 end
  local n = 0
  while true do
    if is_arr then
      local v
      v, i = decode_value(s, i)
      n = n + 1
      t[n] = v
    else
      local k, v
      k, i = decode_string(s, i)
      i = skip(s, i)
      if byte(s, i) ~= 58 then bad(s, i) end
      v, i = decode_value(s, i + 1)
      t[k] = v
    end
    i = skip(s, i)
    local c = byte(s, i)
    if c == close then return t, i + 1 end
    if c ~= 44 then bad(s, i) end
    i = skip(s, i + 1)
  end
end

function decode_value(s, i)
  i = skip(s, i)
  local c = byte(s, i)
  if c == 123 or c == 91 then return decode_container(s, i, c + 2) end   -- { } and [ ]
  if c == 34 then return decode_string(s, i) end
  if sub(s, i, i + 3) == "true" then return true, i + 4 end
  if sub(s, i, i + 4) == "false" then return false, i + 5 end
  if sub(s, i, i + 3) == "null" then return null, i + 4 end
  local tok = match(s, "^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  if not tok then bad(s, i) end
  local _, digits = gsub(tok, "%d", "")
  if digits >= 16 then return setmetatable({ tok }, RAWNUM), i + #tok end
  return tonumber(tok), i + #tok
end

local function lua_decode(s)
  local v, i = decode_value(s, 1)
  if skip(s, i) <= #s then bad(s, i) end
  return v
end

--- Decodes JSON text: the value, or nil and a message.
function M.json_decode(s)
  local v, err = cjson.decode(s)
  if v == nil then return nil, err end
  if lua_decoder_needed(s) then
    local ok, v2 = pcall(lua_decode, s)
    if not ok then return nil, v2 end
    return v2
  end
  return v
end

local ESC_OUT = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
                  ["\r"] = "\\r", ["\t"] = "\\t", ["\127"] = "\\u007f" }
for b = 0, 31 do
  local ch = char(b)
  if not ESC_OUT[ch] then ESC_OUT[ch] = format("\\u%04x", b) end
end

-- a string into the buffer as three pieces (no concatenation: no new string to intern)
local function put_string(s, out, n)
  if find(s, '[%c"\\]') then s = gsub(s, '[%c"\\]', ESC_OUT) end
  out[n + 1], out[n + 2], out[n + 3] = '"', s, '"'
  return n + 3
end

local PRECISION = { "%.14g", "%.15g", "%.16g", "%.17g" }

local function enc_number(x)
  if x ~= x or x == huge or x == -huge then error("cannot encode " .. tostring(x) .. " as JSON", 0) end
  if x == floor(x) and x > -2 ^ 53 and x < 2 ^ 53 then return format("%d", x) end
  for _, f in ipairs(PRECISION) do
    local s = format(f, x)
    if tonumber(s) == x then return s end
  end
  return format("%.17g", x)
end

local function encode(v, out, n)
  local t = type(v)
  if t == "string" then n = put_string(v, out, n)
  elseif t == "number" then n = n + 1 out[n] = enc_number(v)
  elseif t == "boolean" then n = n + 1 out[n] = v and "true" or "false"
  elseif v == null then n = n + 1 out[n] = "null"
  elseif t == "table" then
    local mt = getmetatable(v)
    if mt == RAWNUM then
      n = n + 1 out[n] = v[1]
    elseif mt == ARRAY or (mt == nil and v[1] ~= nil) then
      n = n + 1 out[n] = "["
      for i = 1, #v do
        if i > 1 then n = n + 1 out[n] = "," end
        n = encode(v[i], out, n)
      end
      n = n + 1 out[n] = "]"
    else
      n = n + 1 out[n] = "{"
      local first = true
      for k, x in pairs(v) do
        if not first then n = n + 1 out[n] = "," end
        first = false
        n = put_string(tostring(k), out, n)
        n = n + 1 out[n] = ":"
        n = encode(x, out, n)
      end
      n = n + 1 out[n] = "}"
    end
  else
    error("cannot encode a " .. t .. " as JSON", 0)
  end
  return n
end

--- Encodes a value as JSON text; nil and a message when it cannot.
function M.json_encode(v)
  local out = {}
  local ok, n = pcall(encode, v, out, 0)
  if not ok then return nil, n end
  return concat(out, "", 1, n)
end

---------------------------------------------------------------------------------------------------
-- Rules. A compiled rule: { name = "x", path = {segments} (JSON), from/to (rename), value =
-- constant string or nil, tmpl = template table or nil, jvalue = the constant as its JSON type,
-- type = "string" | "number" | "boolean" }.

--- Converts a string to a JSON type; nil when it does not convert.
function M.convert(jtype, s)
  if jtype == "number" then
    local x = tonumber(s)
    if x and x == x and x ~= huge and x ~= -huge and find(s, "^%s*[-+]?%d*%.?%d*[eE]?[-+]?%d*%s*$") then
      return x
    end
    return nil
  elseif jtype == "boolean" then
    if s == "true" then return true elseif s == "false" then return false end
    return nil
  end
  return s
end
local convert = M.convert

-- kind: "headers" (header names), "args" (query names), "json" (JSON paths), "body" (JSON paths
-- that also name form fields).
local function compile_rule(op, kind, s, jtype)
  local r = { type = jtype or "string" }
  local function name_of(x)
    if kind == "headers" then return trim(x) end
    if kind == "args" then return x end
    local segs = assert(M.compile_path(x))
    return concat(segs, "."), segs
  end
  if op == "remove" then
    r.name, r.path = name_of(s)
    return r
  end
  local a, b = split_pair(s)
  if op == "rename" then
    r.from, r.from_path = name_of(a)
    r.to, r.to_path = name_of(b)
    if kind == "headers" then r.same = header_key(r.from) == header_key(r.to)
    else r.same = r.from == r.to end
    return r
  end
  r.name, r.path = name_of(a)
  if kind == "headers" then b = trim(b) end
  local t = assert(M.compile_template(b))
  if type(t) == "string" then
    r.value = t
    r.jvalue = convert(r.type, t)
  else
    r.tmpl = t
  end
  return r
end

--- Compiles the rule lists of a transformer config. `fields` maps a list name of the op records
-- to its kind, e.g. { headers = "headers", querystring = "args", body = "body" }; `typed` is the
-- list name whose values `json_types` types. Returns a table with one group per list name that
-- has rules: { remove = {...}, rename = {...}, replace = {...}, add = {...}, append = {...},
-- templated = true when a value of the group is a template }, and `templates` = true when any
-- group has one.
function M.compile(conf, fields, typed)
  local c = { templates = false }
  for field, kind in pairs(fields) do
    local g = { remove = {}, rename = {}, replace = {}, add = {}, append = {}, templated = false }
    local any = false
    for _, op in ipairs(M.OPS) do
      local sec = conf[op]
      local list = type(sec) == "table" and sec[field]
      if list and #list > 0 then
        any = true
        local types = field == typed and sec.json_types or nil
        for i, s in ipairs(list) do
          local r = compile_rule(op, kind, s, types and types[i])
          if r.tmpl then g.templated = true c.templates = true end
          g[op][#g[op] + 1] = r
        end
      end
    end
    if any then c[field] = g end
  end
  return c
end

-- the value of a rule as a string (nil: skip the rule); `vals` holds values rendered ahead
local function str_value(r, env, vals)
  if r.value then return r.value end
  if vals then return vals[r] or nil end
  return render(r.tmpl, env)
end

local function json_value(r, env)
  local v = r.jvalue
  if v ~= nil or not r.tmpl then return v end
  local s = render(r.tmpl, env)
  if s == nil then return nil end
  return convert(r.type, s)
end

---------------------------------------------------------------------------------------------------
-- JSON objects

-- the object holding the path's last name, and that name; `create` makes missing objects on the
-- way. nil when something on the way is not an object.
local function parent_of(doc, segs, create)
  local t = doc
  for i = 1, #segs - 1 do
    local k = segs[i]
    local v = t[k]
    if v == nil then
      if not create then return nil end
      v = {}
      t[k] = v
    elseif not is_object(v) then
      return nil
    end
    t = v
  end
  return t, segs[#segs]
end

--- Applies a compiled group to a decoded JSON object; true when something changed.
function M.apply_json(g, doc, env)
  local changed = false
  for _, r in ipairs(g.remove) do
    local p, k = parent_of(doc, r.path)
    if p and p[k] ~= nil then p[k] = nil changed = true end
  end
  for _, r in ipairs(g.rename) do
    local p, k = parent_of(doc, r.from_path)
    local v = p and p[k]
    if v ~= nil and not r.same then
      p[k] = nil
      local q, l = parent_of(doc, r.to_path, true)
      if q then q[l] = v changed = true else p[k] = v end
    end
  end
  for _, r in ipairs(g.replace) do
    local p, k = parent_of(doc, r.path)
    if p and p[k] ~= nil then
      local v = json_value(r, env)
      if v ~= nil then p[k] = v changed = true end
    end
  end
  for _, r in ipairs(g.add) do
    local p, k = parent_of(doc, r.path)
    if not (p and p[k] ~= nil) then
      local v = json_value(r, env)
      if v ~= nil then
        p, k = parent_of(doc, r.path, true)
        if p then p[k] = v changed = true end
      end
    end
  end
  for _, r in ipairs(g.append) do
    local v = json_value(r, env)
    local p, k
    if v ~= nil then p, k = parent_of(doc, r.path, true) end
    if p then
      local old = p[k]
      if old == nil then p[k] = setmetatable({ v }, ARRAY)
      elseif is_array(old) then old[#old + 1] = v
      else p[k] = setmetatable({ old, v }, ARRAY) end
      changed = true
    end
  end
  return changed
end

---------------------------------------------------------------------------------------------------
-- Query strings and form bodies as ordered lists of { k = name, v = value or true, raw = the pair
-- as it came }: a pair no rule touches is written back with its own bytes.

local function unescape(s)
  s = gsub(s, "+", " ")
  return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

local function escape(s)
  return (gsub(s, "[^%w%-%._~]", function(c) return format("%%%02X", byte(c)) end))
end

--- Parses "a=1&b&c=x+y" into an ordered list.
function M.parse_args(s)
  local list = {}
  for pair in gmatch(s, "[^&]+") do
    local k, v = match(pair, "^([^=]*)=(.*)$")
    if k then k, v = unescape(k), unescape(v) else k, v = unescape(pair), true end
    list[#list + 1] = { k = k, v = v, raw = pair }
  end
  return list
end

--- The list as a query string / form body.
function M.encode_args(list)
  local out = {}
  for i, e in ipairs(list) do
    if e.raw then out[i] = e.raw
    elseif e.v == true then out[i] = escape(e.k)
    else out[i] = escape(e.k) .. "=" .. escape(e.v) end
  end
  return concat(out, "&")
end

local function find_arg(list, name)
  for i, e in ipairs(list) do if e.k == name then return i end end
  return nil
end

-- drops the entries named `name` after index `keep` (all of them when keep is 0)
local function drop_args(list, name, keep)
  local j, dropped = 0, false
  for i = 1, #list do
    local e = list[i]
    list[i] = nil
    if e.k == name and i ~= keep then dropped = true
    else j = j + 1 list[j] = e end
  end
  return dropped
end

--- Applies a compiled group to an argument list; true when something changed.
function M.apply_args(g, list, env)
  local changed = false
  for _, r in ipairs(g.remove) do
    if drop_args(list, r.name, 0) then changed = true end
  end
  for _, r in ipairs(g.rename) do
    if not r.same and find_arg(list, r.from) then
      drop_args(list, r.to, 0)
      for _, e in ipairs(list) do
        if e.k == r.from then e.k, e.raw = r.to, nil end
      end
      changed = true
    end
  end
  for _, r in ipairs(g.replace) do
    local i = find_arg(list, r.name)
    if i then
      local v = str_value(r, env)
      if v then
        local e = list[i]
        e.v, e.raw = v, nil
        drop_args(list, r.name, i)
        changed = true
      end
    end
  end
  for _, r in ipairs(g.add) do
    if not find_arg(list, r.name) then
      local v = str_value(r, env)
      if v then list[#list + 1] = { k = r.name, v = v } changed = true end
    end
  end
  for _, r in ipairs(g.append) do
    local v = str_value(r, env)
    if v then list[#list + 1] = { k = r.name, v = v } changed = true end
  end
  return changed
end

---------------------------------------------------------------------------------------------------
-- Headers, through an `api` of five functions (the request's or the response's): get (first
-- value), all (every value), set, add, clear.

M.REQUEST_HEADERS = {
  get = function(n) return gw.request.get_header(n) end,
  all = function(n) return gw.request.get_headers(1000)[n] end,
  set = function(n, v) gw.service.request.set_header(n, v) end,
  add = function(n, v) gw.service.request.add_header(n, v) end,
  clear = function(n) gw.service.request.clear_header(n) end,
}

M.RESPONSE_HEADERS = {
  get = function(n) return gw.response.get_header(n) end,
  all = function(n) return gw.response.get_headers(1000)[n] end,
  set = function(n, v) gw.response.set_header(n, v) end,
  add = function(n, v) gw.response.add_header(n, v) end,
  clear = function(n) gw.response.clear_header(n) end,
}

-- a rendered value that cannot be a header value (a decoded query argument may hold CR or LF)
local function header_safe(v)
  if v and find(v, "[\r\n%z]") then
    gw.log.info("header value from a template holds CR, LF or NUL: rule skipped")
    return nil
  end
  return v
end

local VALUE_OPS = { "replace", "add", "append" }

--- Applies a compiled header group. Template values are all rendered before the first change,
-- so they read the headers as they were.
function M.apply_headers(g, api, env)
  local vals
  if g.templated then
    vals = {}
    for _, op in ipairs(VALUE_OPS) do
      for _, r in ipairs(g[op]) do
        if r.tmpl then vals[r] = header_safe(render(r.tmpl, env)) or false end
      end
    end
  end
  for _, r in ipairs(g.remove) do api.clear(r.name) end
  for _, r in ipairs(g.rename) do
    if not r.same then
      local v = api.all(r.from)
      if v ~= nil then
        api.clear(r.from)
        api.set(r.to, v)
      end
    end
  end
  for _, r in ipairs(g.replace) do
    if api.get(r.name) ~= nil then
      local v = str_value(r, env, vals)
      if v then api.set(r.name, v) end
    end
  end
  for _, r in ipairs(g.add) do
    if api.get(r.name) == nil then
      local v = str_value(r, env, vals)
      if v then api.set(r.name, v) end
    end
  end
  for _, r in ipairs(g.append) do
    local v = str_value(r, env, vals)
    if v then api.add(r.name, v) end
  end
end

---------------------------------------------------------------------------------------------------
-- Content types

--- "json", "form" or nil, from a Content-Type value.
function M.body_kind(ct)
  if not ct then return nil end
  local mime = lower(match(ct, "^%s*([^;%s]+)") or "")
  if mime == "application/json" or find(mime, "^[%w!#$&^_.+-]+/[%w!#$&^_.+-]*%+json$") then
    return "json"
  end
  if mime == "application/x-www-form-urlencoded" then return "form" end
  return nil
end

--- true when a Content-Encoding value means the body is not plain (gzip, br, ...).
function M.encoded(ce)
  return ce ~= nil and lower(trim(ce)) ~= "identity" and trim(ce) ~= ""
end

---------------------------------------------------------------------------------------------------
-- Schema pieces: field definitions whose custom validators give messages naming the rule.

local function quote(s) return "'" .. s .. "'" end

local function check_template(s, v, path)
  local t, err = M.compile_template(v, path)
  if not t then return nil, quote(s) .. ": invalid template: " .. err end
  return true
end

local function check_name(kind, s, x)
  if kind == "headers" then
    if not is_header_name(trim(x)) then return nil, quote(s) .. ": '" .. x .. "' is not a header name" end
  elseif kind == "args" then
    if x == "" then return nil, quote(s) .. ": empty name" end
  else
    local _, err = M.compile_path(x)
    if err then return nil, quote(s) .. ": " .. err end
  end
  return true
end

local function pair_check(kind)
  return function(s)
    local name, value = split_pair(s)
    if not name then return nil, quote(s) .. " is not a 'name:value' pair (no ':')" end
    local ok, err = check_name(kind, s, name)
    if not ok then return nil, err end
    if kind == "headers" and find(value, "[\r\n%z]") then
      return nil, quote(s) .. ": a header value cannot hold CR, LF or NUL"
    end
    return check_template(s, value)
  end
end

local function rename_check(kind)
  return function(s)
    local a, b = split_pair(s)
    if not a then return nil, quote(s) .. " is not an 'old:new' pair (no ':')" end
    local ok, err = check_name(kind, s, a)
    if ok then ok, err = check_name(kind, s, b) end
    return ok, err
  end
end

local function name_check(kind)
  return function(s) return check_name(kind, s, s) end
end

local function list(desc, check)
  return { type = "array", default = {}, elements = { type = "string", custom_validator = check },
           description = desc }
end

--- The list fields of the op records, by kind and op.
function M.rule_list(kind, op, desc)
  if op == "remove" then return list(desc, name_check(kind)) end
  if op == "rename" then return list(desc, rename_check(kind)) end
  return list(desc, pair_check(kind))
end


--- A record validator: json_types has no more entries than `field`, and every constant value of
-- `field` converts to its type.
function M.types_check(field)
  return function(rec)
    local types, rules = rec.json_types or {}, rec[field] or {}
    if #types > #rules then
      return nil, "json_types has " .. #types .. " entries for " .. #rules .. " " .. field .. " rules"
    end
    for i, jt in ipairs(types) do
      local _, v = split_pair(rules[i])
      local t = v and M.compile_template(v)
      if type(t) == "string" and convert(jt, t) == nil then
        return nil, "json_types[" .. (i - 1) .. "] is " .. jt .. " but " .. field .. "[" .. (i - 1)
          .. "] " .. quote(rules[i]) .. " has a value that is not a " .. jt
          .. (jt == "boolean" and " (true or false)" or "")
      end
    end
    return true
  end
end

local OP_DESC = {
  remove = "names to remove",
  rename = "'old:new' pairs: renamed when old is present",
  replace = "'name:value' pairs: set only when name is present",
  add = "'name:value' pairs: set only when name is absent",
  append = "'name:value' pairs: one more value (header line, argument, JSON array item)",
}

--- The field of one op record (`op` one of M.OPS) in a schema's fields: `lists` is a list of
-- { list name, kind, description prefix }; `typed` names the list json_types applies to (added to
-- replace, add and append); `extra` more fields of the record.
function M.op_field(op, lists, typed, extra)
  local fields = {}
  for _, l in ipairs(lists) do
    fields[#fields + 1] = { [l[1]] = M.rule_list(l[2], op, l[3] .. ": " .. OP_DESC[op]) }
  end
  for _, f in ipairs(extra or {}) do fields[#fields + 1] = f end
  local has_types = op == "replace" or op == "add" or op == "append"
  if has_types then
    fields[#fields + 1] = { json_types = { type = "array", default = {},
      elements = { type = "string", one_of = M.JSON_TYPES },
      description = "the JSON type of each " .. typed .. " value, in order (string, number, boolean); default string" } }
  end
  return { [op] = { type = "record", fields = fields,
                    custom_validator = has_types and M.types_check(typed) or nil } }
end

--- The replace.uri field check: a path template starting with /.
function M.check_uri(s)
  if sub(s, 1, 1) ~= "/" then return nil, quote(s) .. " does not start with /" end
  local t, err = M.compile_template(s, true)
  if not t then return nil, quote(s) .. ": invalid template: " .. err end
  local literal = type(t) == "string" and t or ""
  if type(t) == "table" then
    for _, p in ipairs(t.parts) do if type(p) == "string" then literal = literal .. p end end
  end
  if find(literal, "[%s%z?#]") then return nil, quote(s) .. ": a path cannot hold whitespace, ? or #" end
  return true
end

return M
