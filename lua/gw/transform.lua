--- gw.transform — what the request-transformer and response-transformer plugins share: their
-- rule lists ("name:value" strings) compiled once per config, the `$(...)` templates, dotted
-- JSON field paths, the JSON codec (gw.json's, under the names the plugins use), ordered
-- query/form argument lists (untouched pairs keep their bytes), and the remove / rename /
-- replace / add / append operations on headers, arguments and JSON objects.
--
-- Nothing here calls gw.* when the module loads: schema.lua files require it in the master and
-- in `gw check`, where `gw` does not exist.
-- @module gw.transform
local M = {}

local type, pairs, ipairs, tonumber, setmetatable = type, pairs, ipairs, tonumber, setmetatable
local byte, char, sub, find, gsub, gmatch, format, lower, match =
      string.byte, string.char, string.sub, string.find, string.gsub, string.gmatch, string.format,
      string.lower, string.match
local concat = table.concat
local huge = math.huge

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
-- JSON: gw.json, which gives back what it read (empty arrays stay arrays, numbers a double cannot
-- hold keep their digits). These names are what the transformer plugins and specs use.

local json = require "gw.json"
M.null = json.null
M.ARRAY = json.array_mt
local is_array, is_object = json.is_array, json.is_object
M.is_array, M.is_object = is_array, is_object

--- A new JSON array of the arguments.
function M.array(...) return setmetatable({ ... }, json.array_mt) end

--- Decodes JSON text: the value, or nil and a message.
M.json_decode = json.decode
--- Encodes a value as JSON text; nil and a message when it cannot.
M.json_encode = json.encode

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
      if old == nil then p[k] = setmetatable({ v }, json.array_mt)
      elseif is_array(old) then old[#old + 1] = v
      else p[k] = setmetatable({ old, v }, json.array_mt) end
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
