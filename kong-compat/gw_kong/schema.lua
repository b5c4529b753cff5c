-- gw_kong.schema — a Kong plugin schema (Kong's schema DSL) in gw's schema format.
--
--   translate(kong_schema) -> { name, fields = { { config = RECORD } }, kong_schema = original }
--
-- The config record keeps the attributes gw's checker knows (lua/gw/schema.lua); Kong's others
-- become checks in the field's custom_validator:
--   strings: Kong refuses "" unless len_min says otherwise (len_min = 1 is added)
--   ne, contains, is_regex, uuid, match_all / match_none / match_any, mutually_exclusive_subsets
--   entity_checks (the schema's, on "config.*" fields, and a record's own): at_least_one_of,
--     only_one_of, mutually_exclusive, mutually_required, distinct, conditional,
--     conditional_at_least_one_of, custom_entity_check, mutually_exclusive_sets
--   shorthand_fields: fields of their own, moved where their func says once the record passed
--     (the moved values are not checked again)
-- Dropped: nullable, reference/on_delete, and eq = ngx.null (typedefs.no_consumer and friends).
-- Types: foreign, json and function become "any"; an unknown type is left for gw to report.
local gw_schema = require "gw.schema"

local type, tostring, ipairs, pairs, next = type, tostring, ipairs, pairs, next
local concat = table.concat
local find, format = string.find, string.format

local NULL = gw_schema.null

local M = {}

local KEEP = {
  type = true, required = true, default = true, one_of = true, not_one_of = true, eq = true,
  between = true, gt = true, len_min = true, len_max = true, len_eq = true, match = true,
  not_match = true, starts_with = true, description = true,
}
local KONG_TYPES = { foreign = true, json = true, ["function"] = true }
local TYPES = { string = true, number = true, integer = true, boolean = true, array = true, set = true,
                map = true, record = true, any = true }

local function is_nonempty(v)
  if v == nil or v == NULL then return false end
  if type(v) == "table" then return next(v) ~= nil end
  if type(v) == "string" then return v ~= "" end
  return true
end

-- a dotted name inside a table ("config.allow" in { config = {...} })
local function get(t, name)
  for part in name:gmatch("[^%.]+") do
    if type(t) ~= "table" then return nil end
    t = t[part]
  end
  return t
end

local function quoted(names)
  local out = {}
  for i, n in ipairs(names) do out[i] = "'" .. n .. "'" end
  return concat(out, ", ")
end

-- value checks of Kong attributes gw's checker does not have
local function value_checks(f)
  local checks = {}
  if f.ne ~= nil then
    local ne = f.ne
    checks[#checks + 1] = function(v)
      if v == ne then return nil, "value must not be " .. tostring(ne) end
      return true
    end
  end
  if f.contains ~= nil then
    local c = f.contains
    checks[#checks + 1] = function(v)
      if type(v) == "table" then
        for _, x in ipairs(v) do if x == c then return true end end
      end
      return nil, "expected to contain: " .. tostring(c)
    end
  end
  if f.is_regex then
    checks[#checks + 1] = function(v)
      local ok, err = require("gw.regex").check(v)
      if not ok then return nil, "not a valid regex: " .. tostring(v) .. (err and (" (" .. err .. ")") or "") end
      return true
    end
  end
  if f.uuid then
    checks[#checks + 1] = function(v)
      if type(v) == "string" and not v:find("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$") then
        return nil, "expected a valid UUID"
      end
      return true
    end
  end
  if type(f.match_all) == "table" then
    local list = f.match_all
    checks[#checks + 1] = function(v)
      for _, m in ipairs(list) do
        if not find(v, m.pattern) then return nil, m.err or ("invalid value: " .. v) end
      end
      return true
    end
  end
  if type(f.match_none) == "table" then
    local list = f.match_none
    checks[#checks + 1] = function(v)
      for _, m in ipairs(list) do
        if find(v, m.pattern) then return nil, m.err or ("invalid value: " .. v) end
      end
      return true
    end
  end
  if type(f.match_any) == "table" then
    local m = f.match_any
    checks[#checks + 1] = function(v)
      for _, p in ipairs(m.patterns or {}) do
        if find(v, p) then return true end
      end
      return nil, m.err or ("invalid value: " .. v)
    end
  end
  if type(f.mutually_exclusive_subsets) == "table" then
    local subsets = f.mutually_exclusive_subsets
    checks[#checks + 1] = function(v)
      local found
      for _, x in ipairs(v) do
        for i, set in ipairs(subsets) do
          for _, y in ipairs(set) do
            if x == y then
              if found and found ~= i then
                return nil, "these sets are mutually exclusive: " .. tostring(subsets[found][1]) .. ", " .. tostring(set[1])
              end
              found = i
            end
          end
        end
      end
      return true
    end
  end
  return checks
end

---------------------------------------------------------------------------------------------
-- entity checks

-- does `value` pass the partial field definition `match` (conditional's if_match / then_match)?
local function passes(match, field, value)
  if match.required and (value == nil or value == NULL) then return false, "required field missing" end
  if value == nil or value == NULL then return true end
  local def = {}
  for k, v in pairs(field or {}) do if KEEP[k] then def[k] = v end end
  for k, v in pairs(match) do if KEEP[k] then def[k] = v end end
  def.required, def.default = nil, nil
  def.type = TYPES[def.type] and def.type or "any"
  if def.type == "record" then def.fields = def.fields or (field and field.fields) or {} end
  local _, errs = gw_schema.validate(def, value)
  if errs and errs[1] then return false, errs[1].msg end
  return true
end

local CHECKERS = {}

function CHECKERS.at_least_one_of(e, names)
  for _, n in ipairs(names) do if is_nonempty(get(e, n)) then return true end end
  return nil, "at least one of these fields must be non-empty: " .. quoted(names)
end

function CHECKERS.only_one_of(e, names)
  local n = 0
  for _, name in ipairs(names) do if is_nonempty(get(e, name)) then n = n + 1 end end
  if n == 1 then return true end
  return nil, "exactly one of these fields must be non-empty: " .. quoted(names)
end

function CHECKERS.mutually_exclusive(e, names)
  local n = 0
  for _, name in ipairs(names) do if is_nonempty(get(e, name)) then n = n + 1 end end
  if n <= 1 then return true end
  return nil, "only one or none of these fields must be set: " .. quoted(names)
end

function CHECKERS.mutually_required(e, names)
  local n = 0
  for _, name in ipairs(names) do if is_nonempty(get(e, name)) then n = n + 1 end end
  if n == 0 or n == #names then return true end
  return nil, "all or none of these fields must be set: " .. quoted(names)
end

function CHECKERS.distinct(e, names)
  local seen = {}
  for _, name in ipairs(names) do
    local v = get(e, name)
    if is_nonempty(v) then
      if seen[v] then return nil, "values of these fields must be distinct: " .. quoted(names) end
      seen[v] = true
    end
  end
  return true
end

function CHECKERS.mutually_exclusive_sets(e, arg)
  local function any(set)
    for _, n in ipairs(set) do if is_nonempty(get(e, n)) then return true end end
  end
  if any(arg.set1 or {}) and any(arg.set2 or {}) then
    return nil, "these sets are mutually exclusive: " .. quoted(arg.set1) .. ", " .. quoted(arg.set2)
  end
  return true
end

function CHECKERS.conditional(e, arg, fields_of)
  local if_value = get(e, arg.if_field)
  if if_value == nil or not passes(arg.if_match or {}, fields_of(arg.if_field), if_value) then return true end
  local ok, err = passes(arg.then_match or {}, fields_of(arg.then_field), get(e, arg.then_field))
  if ok then return true end
  if arg.then_err then return nil, format(arg.then_err, arg.if_field) end
  return nil, "failed conditional validation given value of field '" .. arg.if_field .. "': " ..
              arg.then_field .. ": " .. tostring(err)
end

function CHECKERS.conditional_at_least_one_of(e, arg, fields_of)
  local if_value = get(e, arg.if_field)
  if if_value == nil then return true end
  local names, err_fmt
  if passes(arg.if_match or {}, fields_of(arg.if_field), if_value) then
    names, err_fmt = arg.then_at_least_one_of, arg.then_err
  elseif arg.else_match and passes(arg.else_match, fields_of(arg.if_field), if_value) then
    names, err_fmt = arg.else_then_at_least_one_of, arg.else_then_err
  end
  if not names then return true end
  for _, n in ipairs(names) do if is_nonempty(get(e, n)) then return true end end
  if err_fmt then return nil, format(err_fmt, quoted(names)) end
  return nil, "at least one of these fields must be non-empty: " .. quoted(names)
end

function CHECKERS.custom_entity_check(e, arg)
  for _, n in ipairs(arg.field_sources or {}) do
    if get(e, n) == nil then return true end
  end
  local ok, err = arg.fn(e)
  if ok then return true end
  return nil, err or "entity check failed"
end

-- A validator running a list of entity checks on the value `wrap(v)`; `prefix` ("config.")
-- limits the schema-level checks to the config's fields.
local function entity_validator(list, wrap, fields_of, prefix)
  local checks = {}
  for _, item in ipairs(list or {}) do
    local name, arg = next(item)
    local fn = CHECKERS[name]
    if fn then
      local relevant = true
      if prefix then
        local names = type(arg) == "table" and (arg[1] and arg or { arg.if_field, arg.then_field }) or {}
        for _, n in ipairs(names) do
          if type(n) == "string" and n:sub(1, #prefix) ~= prefix then relevant = false end
        end
        if name == "custom_entity_check" then
          for _, n in ipairs(arg.field_sources or {}) do
            if n:sub(1, #prefix) ~= prefix then relevant = false end
          end
        end
      end
      if relevant then checks[#checks + 1] = { fn, arg } end
    end
  end
  if #checks == 0 then return nil end
  return function(v)
    local e = wrap(v)
    for _, c in ipairs(checks) do
      local ok, err = c[1](e, c[2], fields_of)
      if not ok then return nil, err end
    end
    return true
  end
end

---------------------------------------------------------------------------------------------
-- fields

local translate_field

local function field_index(fields)
  local idx = {}
  for _, item in ipairs(fields or {}) do
    if type(item) == "table" then
      local n, f = next(item)
      if n ~= nil then idx[n] = f end
    end
  end
  return idx
end

-- the definition of a dotted field name inside a record's fields
local function field_lookup(fields)
  return function(name)
    local f
    local cur = fields
    for part in name:gmatch("[^%.]+") do
      f = field_index(cur)[part]
      if type(f) ~= "table" then return nil end
      cur = f.fields
    end
    return f
  end
end

local function chain(validators)
  local list = {}
  for i = 1, table.maxn(validators) do
    if validators[i] then list[#list + 1] = validators[i] end
  end
  if #list == 0 then return nil end
  if #list == 1 then return list[1] end
  return function(v)
    for _, fn in ipairs(list) do
      local ok, err = fn(v)
      if not ok then return nil, err end
    end
    return true
  end
end

local function translate_fields(fields)
  local out = {}
  for _, item in ipairs(fields or {}) do
    if type(item) == "table" then
      local name, f = next(item)
      if name ~= nil then out[#out + 1] = { [name] = translate_field(f) } end
    end
  end
  return out
end

-- merges `add` (what a shorthand's func returned) into the record value v
local function merge(v, add)
  for k, x in pairs(add) do
    if type(x) == "table" and type(v[k]) == "table" and next(x) ~= nil and x[1] == nil then
      merge(v[k], x)
    else
      v[k] = x
    end
  end
end

-- Kong's shorthand_fields (deprecated input names): each becomes a field of its own type, and a
-- validator (the record's first) moves its value where `func` says, in the config the handler
-- gets, then drops it.
local function shorthands(list, fields)
  local funcs = {}
  for _, item in ipairs(list) do
    local name, sf = next(item)
    if type(sf) == "table" and type(sf.func) == "function" then
      local def = {}
      for k, v in pairs(sf) do if k ~= "func" and k ~= "translate_backwards" then def[k] = v end end
      fields[#fields + 1] = { [name] = translate_field(def) }
      funcs[#funcs + 1] = { name, sf.func }
    end
  end
  if #funcs == 0 then return nil end
  return function(v)
    for _, nf in ipairs(funcs) do
      local x = v[nf[1]]
      if x ~= nil then
        v[nf[1]] = nil
        local ok, add = pcall(nf[2], x)
        if not ok then return nil, tostring(add) end
        if type(add) == "table" then merge(v, add) end
      end
    end
    return true
  end
end

function translate_field(f)
  if type(f) ~= "table" then return { type = "any" } end
  local out = {}
  for k, v in pairs(f) do if KEEP[k] then out[k] = v end end
  if KONG_TYPES[out.type] then out.type = "any" end   -- anything else unknown: gw reports it
  if out.eq == NULL then out.eq = nil end
  if out.default == NULL then out.default = nil end
  if out.type == "string" and out.len_min == nil and f.default ~= "" then out.len_min = 1 end
  if f.elements then out.elements = translate_field(f.elements) end
  if f.keys then out.keys = translate_field(f.keys) end
  if f.values then out.values = translate_field(f.values) end
  if out.type ~= "array" and out.type ~= "set" then out.elements = nil end
  if out.type ~= "map" then out.keys, out.values = nil, nil end
  local validators = value_checks(f)
  if out.type == "record" then
    out.fields = translate_fields(f.fields)
    if type(f.shorthand_fields) == "table" then
      validators[#validators + 1] = shorthands(f.shorthand_fields, out.fields)
    end
    validators[#validators + 1] = entity_validator(f.entity_checks, function(v) return v end,
                                                   field_lookup(f.fields))
  end
  if type(f.custom_validator) == "function" then validators[#validators + 1] = f.custom_validator end
  out.custom_validator = chain(validators)
  return out
end

--- The schema of a Kong plugin as gw checks it: its config record (a schema without one takes
-- no configuration), with the schema's entity checks on config.* fields folded in.
function M.translate(s)
  if type(s) ~= "table" or type(s.fields) ~= "table" then return s end
  local config
  for _, item in ipairs(s.fields) do
    if type(item) == "table" then
      local n, f = next(item)
      if n == "config" and type(f) == "table" then config = f end
    end
  end
  if not config then
    return { name = s.name, fields = { { config = { type = "record", fields = {} } } }, kong_schema = s }
  end
  local rec = translate_field(config)
  rec.type = "record"
  rec.fields = rec.fields or {}
  local top = entity_validator(s.entity_checks, function(v) return { config = v } end,
                               field_lookup(s.fields), "config.")
  rec.custom_validator = chain({ rec.custom_validator, top })
  return { name = s.name, fields = { { config = rec } }, kong_schema = s }
end

return M
