-- gw.schema — checks values against the plugin schema format (Kong-like) and fills defaults.
--
--   schema.validate(schema_or_fields, value) -> normalized copy | nil, errors
--   schema.validate_partial(schema_or_fields, value) -> best-effort copy, errors (never nil errors)
--   schema.check_schema(schema) -> true | nil, errors     (is a plugin's schema.lua well formed?)
--
-- errors is a list of { path = "a.b[0].c", msg = "expected a string" }; paths are relative to the
-- value ("" for the value itself), with keys joined by "." and 0-based "[i]" sequence indices.
--
-- A schema is { name = "x", fields = { { field_name = FIELD }, ... }, custom_validator = fn }
-- and a FIELD is a table of attributes: type (string|number|integer|boolean|array|set|map|record|
-- any), required, default, one_of, not_one_of, eq, between = {min, max}, gt, len_min, len_max,
-- len_eq, match (Lua pattern), not_match, starts_with, elements, keys, values, fields (record),
-- custom_validator = function(v) return true | nil, "msg" end, description.
local M = {}

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local floor, huge = math.floor, math.huge
local concat, sort = table.concat, table.sort

-- Explicit nulls (yaml.null and cjson.null are the same lightuserdata NULL) count as absent.
local NULL
do
  local ok, cjson = pcall(require, "cjson")
  if ok then NULL = cjson.null end
  if NULL == nil then
    local ok2, yaml = pcall(require, "gw.yaml")
    if ok2 then NULL = yaml.null end
  end
end
M.null = NULL

local function is_null(v) return v == nil or (NULL ~= nil and v == NULL) end
M.is_null = is_null

local TYPES = {
  string = true, number = true, integer = true, boolean = true, array = true, set = true,
  map = true, record = true, any = true,
}

-- Attributes a field may carry, and the Kong ones that are accepted but have no effect here
-- (so Kong-style schemas still pass check_schema).
local ATTRS = {
  type = true, required = true, default = true, one_of = true, not_one_of = true, eq = true,
  between = true, gt = true, len_min = true, len_max = true, len_eq = true, match = true,
  not_match = true, starts_with = true, elements = true, keys = true, values = true,
  fields = true, custom_validator = true, description = true,
}
local IGNORED_ATTRS = {
  referenceable = true, encrypted = true, auto = true, unique = true, indexed = true,
  immutable = true, examples = true, deprecation = true, err = true, uuid = true,
  timestamp = true, legacy = true, translate_backwards = true, json_schema = true,
}

local function join(path, key)
  key = tostring(key)
  if path == "" then return key end
  return path .. "." .. key
end
local function index(path, i) return path .. "[" .. (i - 1) .. "]" end
M.join, M.index = join, index

local function deep_copy(v, seen)
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local out = {}
  seen[v] = out
  for k, x in pairs(v) do out[deep_copy(k, seen)] = deep_copy(x, seen) end
  return out
end
M.deep_copy = deep_copy

-- A Lua table is an array when its keys are exactly 1..n (the empty table is both).
local function is_array(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  for i = 1, n do
    if t[i] == nil then return false end
  end
  return true
end
M.is_array = is_array

local function is_map(t) return type(t) == "table" and (next(t) == nil or not is_array(t)) end

local function show(v)
  if type(v) == "string" then return v end
  return tostring(v)
end

local function list(vs)
  local out = {}
  for i, v in ipairs(vs) do out[i] = show(v) end
  return concat(out, ", ")
end

-- The fields of a record as an ordered list of { name, field }: the Kong form is a list of
-- one-key tables; a plain name -> field map is accepted too (in name order).
local function field_list(fields)
  local out = {}
  if type(fields) ~= "table" then return out end
  if is_array(fields) then
    for _, item in ipairs(fields) do
      if type(item) == "table" then
        local name, f = next(item)
        if name ~= nil then out[#out + 1] = { name, f } end
      end
    end
  else
    for name, f in pairs(fields) do out[#out + 1] = { name, f } end
    sort(out, function(a, b) return tostring(a[1]) < tostring(b[1]) end)
  end
  return out
end
M.field_list = field_list

local TYPE_MSG = {
  string = "expected a string", number = "expected a number", integer = "expected an integer",
  boolean = "expected a boolean", array = "expected an array", set = "expected a set",
  map = "expected a map", record = "expected a record",
}

local function type_ok(t, v)
  if t == "any" or t == nil then return true end
  local lt = type(v)
  if t == "string" or t == "boolean" then return lt == t end
  if t == "number" then return lt == "number" and v == v end
  if t == "integer" then return lt == "number" and v == v and v ~= huge and v ~= -huge and floor(v) == v end
  if t == "array" or t == "set" then return lt == "table" and is_array(v) end
  if t == "map" or t == "record" then return lt == "table" and is_map(v) end
  return false
end

local function length(v)
  if type(v) == "string" then return #v end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  return n
end

local validate_field

-- Paths are built only for errors: during validation a path is the root string "" or a node
-- { parent, key [, is_index] }, turned into "a.b[0].c" by pstr.
local function pstr(node)
  if type(node) == "string" then return node end
  local parent = pstr(node[1])
  if node[3] then return parent .. "[" .. (node[2] - 1) .. "]" end
  return join(parent, node[2])
end

-- field_list for a fields table, computed once per table.
local FIELD_LISTS = setmetatable({}, { __mode = "k" })
local function cached_field_list(fields)
  if type(fields) ~= "table" then return { known = {} } end
  local l = FIELD_LISTS[fields]
  if not l then
    l = field_list(fields)
    l.known = {}
    for _, nf in ipairs(l) do l.known[nf[1]] = true end
    FIELD_LISTS[fields] = l
  end
  return l
end

local function run_custom(fn, v, path, errs)
  local ok, res, msg = pcall(fn, v)
  if not ok then
    errs[#errs + 1] = { path = pstr(path), msg = "custom validator failed: " .. tostring(res) }
  elseif not res then
    errs[#errs + 1] = { path = pstr(path), msg = msg and tostring(msg) or "invalid value" }
  end
end

-- The checks that apply once the type is right.
local function add(errs, path, msg) errs[#errs + 1] = { path = pstr(path), msg = msg } end

local function check_value(f, v, path, errs)
  local n0 = #errs
  if f.eq ~= nil and v ~= f.eq then add(errs, path, "value must be " .. show(f.eq)) end
  if f.one_of then
    local found = false
    for _, x in ipairs(f.one_of) do
      if x == v then found = true break end
    end
    if not found then add(errs, path, "expected one of: " .. list(f.one_of)) end
  end
  if f.not_one_of then
    for _, x in ipairs(f.not_one_of) do
      if x == v then add(errs, path, "must not be one of: " .. list(f.not_one_of)) break end
    end
  end
  local tv = type(v)
  if tv == "number" then
    if f.between and (v < f.between[1] or v > f.between[2]) then
      add(errs, path, "value should be between " .. show(f.between[1]) .. " and " .. show(f.between[2]))
    end
    if f.gt ~= nil and not (v > f.gt) then add(errs, path, "value must be greater than " .. show(f.gt)) end
  end
  if (tv == "string" or tv == "table") and (f.len_eq or f.len_min or f.len_max) then
    local n = length(v)
    if f.len_eq and n ~= f.len_eq then add(errs, path, "length must be " .. f.len_eq) end
    if f.len_min and n < f.len_min then add(errs, path, "length must be at least " .. f.len_min) end
    if f.len_max and n > f.len_max then add(errs, path, "length must be at most " .. f.len_max) end
  end
  if tv == "string" then
    if f.starts_with and v:sub(1, #f.starts_with) ~= f.starts_with then
      add(errs, path, 'must start with "' .. f.starts_with .. '"')
    end
    if f.match and not v:find(f.match) then add(errs, path, 'must match the pattern "' .. f.match .. '"') end
    if f.not_match and v:find(f.not_match) then
      add(errs, path, 'must not match the pattern "' .. f.not_match .. '"')
    end
  end
  return #errs == n0
end

local function validate_record(fields, v, path, errs, custom)
  local out = {}
  local n0 = #errs
  local fl = cached_field_list(fields)
  for _, nf in ipairs(fl) do
    local name, f = nf[1], nf[2]
    local x = validate_field(f, v[name], { path, name }, errs)
    if x ~= nil then out[name] = x end
  end
  local known, unknown = fl.known
  for k in pairs(v) do
    if not known[k] then
      unknown = unknown or {}
      unknown[#unknown + 1] = k
    end
  end
  if unknown then
    sort(unknown, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(unknown) do add(errs, { path, k }, "unknown field") end
  end
  if custom and #errs == n0 then run_custom(custom, out, path, errs) end
  return out
end

-- Validates v (which may be nil) against field f at path; appends errors, returns the
-- normalized value (nil when absent or invalid).
function validate_field(f, v, path, errs)
  if type(f) ~= "table" then f = { type = "any" } end
  if is_null(v) then
    if f.default ~= nil then return deep_copy(f.default) end
    if f.required then
      errs[#errs + 1] = { path = pstr(path), msg = "required field missing" }
      return nil
    end
    -- An absent record still gets its own defaults, when that needs nothing from the user.
    if f.type == "record" and f.fields then
      local sub = {}
      local out = validate_record(f.fields, {}, path, sub, nil)
      if #sub == 0 and next(out) ~= nil then return out end
    end
    return nil
  end

  local t = f.type or "any"
  if not type_ok(t, v) then
    errs[#errs + 1] = { path = pstr(path), msg = TYPE_MSG[t] or ("expected a " .. tostring(t)) }
    return nil
  end

  local n0 = #errs
  local out
  if t == "array" or t == "set" then
    out = {}
    local seen = {}
    local ef = type(f.elements) == "table" and f.elements or { type = "any" }
    local et = ef.type or "any"
    for i = 1, #v do
      local p = { path, i, true }
      local x
      if is_null(v[i]) and ef.default == nil then
        -- an explicit null item: only "any" elements may hold one
        if et == "any" then x = v[i]
        else errs[#errs + 1] = { path = pstr(p), msg = TYPE_MSG[et] or "required field missing" } end
      else
        x = validate_field(ef, v[i], p, errs)
      end
      if t == "set" and x ~= nil and type(x) ~= "table" then
        if not seen[x] then seen[x] = true out[#out + 1] = x end
      elseif t == "set" then
        out[#out + 1] = x
      else
        out[i] = x    -- keeps indices aligned with the input even when an item failed
      end
    end
  elseif t == "map" then
    out = {}
    local kf = f.keys or { type = "string" }
    for k, x in pairs(v) do
      local p = { path, k }
      local kerrs = {}
      local nk = validate_field(kf, k, p, kerrs)
      for _, e in ipairs(kerrs) do errs[#errs + 1] = { path = e.path, msg = "invalid key: " .. e.msg } end
      local nv = validate_field(f.values, x, p, errs)
      if nk ~= nil and nv ~= nil then out[nk] = nv end
    end
  elseif t == "record" then
    out = validate_record(f.fields, v, path, errs, nil)
  else
    out = deep_copy(v)
  end
  if #errs ~= n0 then return out end
  if check_value(f, out, path, errs) and f.custom_validator then
    run_custom(f.custom_validator, out, path, errs)
  end
  return out
end

-- The root field a schema_or_fields argument stands for.
local function root_field(s)
  if type(s) ~= "table" then return { type = "any" } end
  if s.fields ~= nil and s.type == nil then
    return { type = "record", fields = s.fields, custom_validator = s.custom_validator }
  end
  if type(s.type) == "string" then return s end
  return { type = "record", fields = s }
end

function M.validate_partial(s, value)
  local errs = {}
  local f = root_field(s)
  local out
  if f.type == "record" and is_null(value) then
    -- the root of a plugin config: absent means "all defaults"
    out = validate_field(f, {}, "", errs)
  else
    out = validate_field(f, value, "", errs)
  end
  return out, errs
end

function M.validate(s, value)
  local out, errs = M.validate_partial(s, value)
  if #errs > 0 then return nil, errs end
  return out
end

--- Formats errors as "path: msg" lines (for messages that are not tied to a file).
function M.format_errors(errs, prefix)
  local out = {}
  for i, e in ipairs(errs) do
    local p = e.path
    if prefix and prefix ~= "" then p = (p == "" and prefix) or join(prefix, p) end
    out[i] = (p ~= "" and (p .. ": ") or "") .. e.msg
  end
  return out
end

---------------------------------------------------------------------------------------------
-- check_schema: is a plugin's schema itself well formed?

local check_field

local function check_fields(fields, path, errs)
  if type(fields) ~= "table" then
    errs[#errs + 1] = { path = path, msg = "expected a list of fields" }
    return
  end
  if is_array(fields) then
    local names = {}
    for i, item in ipairs(fields) do
      local p = index(path, i)
      if type(item) ~= "table" then
        errs[#errs + 1] = { path = p, msg = "expected a { name = { ... } } table" }
      else
        local name, f = next(item)
        if name == nil or next(item, name) ~= nil then
          errs[#errs + 1] = { path = p, msg = "expected exactly one field name" }
        elseif type(name) ~= "string" then
          errs[#errs + 1] = { path = p, msg = "field name must be a string" }
        else
          if names[name] then errs[#errs + 1] = { path = p, msg = 'duplicate field "' .. name .. '"' } end
          names[name] = true
          check_field(f, join(p, name), errs)
        end
      end
    end
  else
    for name, f in pairs(fields) do
      if type(name) ~= "string" then
        errs[#errs + 1] = { path = join(path, name), msg = "field name must be a string" }
      else
        check_field(f, join(path, name), errs)
      end
    end
  end
end

function check_field(f, path, errs)
  local function err(msg, sub) errs[#errs + 1] = { path = sub and join(path, sub) or path, msg = msg } end
  if type(f) ~= "table" then return err("expected a field definition table") end
  if type(f.type) ~= "string" then return err("missing type", "type") end
  if not TYPES[f.type] then return err('unknown type "' .. f.type .. '"', "type") end
  local attrs = {}
  for k in pairs(f) do attrs[#attrs + 1] = k end
  sort(attrs, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(attrs) do
    if not ATTRS[k] and not IGNORED_ATTRS[k] then err("unknown attribute", k) end
  end
  if f.required ~= nil and type(f.required) ~= "boolean" then err("expected a boolean", "required") end
  if f.one_of ~= nil and (type(f.one_of) ~= "table" or not is_array(f.one_of) or #f.one_of == 0) then
    err("expected a non-empty array", "one_of")
  end
  if f.not_one_of ~= nil and (type(f.not_one_of) ~= "table" or not is_array(f.not_one_of)) then
    err("expected an array", "not_one_of")
  end
  if f.between ~= nil then
    local b = f.between
    if type(b) ~= "table" or type(b[1]) ~= "number" or type(b[2]) ~= "number" or b[1] > b[2] then
      err("expected { min, max } numbers", "between")
    end
  end
  for _, k in ipairs({ "len_min", "len_max", "len_eq" }) do
    if f[k] ~= nil and not type_ok("integer", f[k]) then err("expected an integer", k) end
  end
  if f.gt ~= nil and type(f.gt) ~= "number" then err("expected a number", "gt") end
  for _, k in ipairs({ "match", "not_match" }) do
    if f[k] ~= nil then
      if type(f[k]) ~= "string" then err("expected a string", k)
      elseif not pcall(string.find, "", f[k]) then err("invalid Lua pattern", k) end
    end
  end
  if f.starts_with ~= nil and type(f.starts_with) ~= "string" then err("expected a string", "starts_with") end
  if f.custom_validator ~= nil and type(f.custom_validator) ~= "function" then
    err("expected a function", "custom_validator")
  end
  if f.description ~= nil and type(f.description) ~= "string" then err("expected a string", "description") end
  if f.type == "array" or f.type == "set" then
    if f.elements ~= nil then check_field(f.elements, join(path, "elements"), errs) end
  elseif f.elements ~= nil then
    err("only arrays and sets have elements", "elements")
  end
  if f.type == "map" then
    if f.keys ~= nil then check_field(f.keys, join(path, "keys"), errs) end
    if f.values ~= nil then check_field(f.values, join(path, "values"), errs) end
  else
    if f.keys ~= nil then err("only maps have keys", "keys") end
    if f.values ~= nil then err("only maps have values", "values") end
  end
  if f.type == "record" then
    if f.fields == nil then err("a record needs fields", "fields")
    else check_fields(f.fields, join(path, "fields"), errs) end
  elseif f.fields ~= nil then
    err("only records have fields", "fields")
  end
  if f.default ~= nil then
    local sub = {}
    local probe = {}
    for k, x in pairs(f) do probe[k] = x end
    probe.custom_validator = nil
    validate_field(probe, f.default, "", sub)
    for _, e in ipairs(sub) do
      errs[#errs + 1] = { path = join(path, "default") .. (e.path ~= "" and ("." .. e.path) or ""),
                          msg = e.msg }
    end
  end
end

function M.check_schema(s)
  local errs = {}
  if type(s) ~= "table" then
    return nil, { { path = "", msg = "schema must be a table" } }
  end
  if s.name ~= nil and type(s.name) ~= "string" then
    errs[#errs + 1] = { path = "name", msg = "expected a string" }
  end
  if s.fields == nil then
    errs[#errs + 1] = { path = "fields", msg = "required field missing" }
  else
    check_fields(s.fields, "fields", errs)
  end
  if s.custom_validator ~= nil and type(s.custom_validator) ~= "function" then
    errs[#errs + 1] = { path = "custom_validator", msg = "expected a function" }
  end
  if #errs > 0 then return nil, errs end
  return true
end

return M
