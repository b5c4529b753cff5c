-- kong.tools.table (gw kong-compat): table helpers Kong plugins import.
local type, pairs, next, setmetatable, getmetatable = type, pairs, next, setmetatable, getmetatable

local _M = {}

_M.EMPTY = setmetatable({}, { __newindex = function() error("empty table is read-only", 2) end })

function _M.table_merge(t1, t2)
  local out = {}
  if t1 then for k, v in pairs(t1) do out[k] = v end end
  if t2 then for k, v in pairs(t2) do out[k] = v end end
  return out
end

function _M.table_contains(arr, val)
  if arr then
    for _, v in ipairs(arr) do if v == val then return true end end
  end
  return false
end

function _M.is_array(t, mode)
  if type(t) ~= "table" then return false end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then return false end
    n = n + 1
  end
  if mode == "fast" then return true end
  for i = 1, n do if t[i] == nil then return false end end
  return true
end

function _M.shallow_copy(t)
  if type(t) ~= "table" then return t end
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

local function deep_copy(t, mt, seen)
  if type(t) ~= "table" then return t end
  if seen[t] then return seen[t] end
  local out = {}
  seen[t] = out
  for k, v in pairs(t) do out[deep_copy(k, mt, seen)] = deep_copy(v, mt, seen) end
  if mt ~= false then setmetatable(out, getmetatable(t)) end
  return out
end

--- A deep copy that keeps shared sub-tables shared and survives cycles; metatables are copied by
-- reference unless `remove_metatables`.
function _M.cycle_aware_deep_copy(t, remove_metatables, deep_copy_keys, cycle_aware_cache)
  return deep_copy(t, not remove_metatables, cycle_aware_cache or {})
end

function _M.deep_copy(t, copy_mt)
  return deep_copy(t, copy_mt ~= false, {})
end

function _M.deep_merge(t1, t2)
  local out = _M.cycle_aware_deep_copy(t1)
  for k, v in pairs(t2) do
    if type(v) == "table" and type(out[k]) == "table" then out[k] = _M.deep_merge(out[k], v)
    else out[k] = _M.cycle_aware_deep_copy(v) end
  end
  return out
end

function _M.pack(...) return { n = select("#", ...), ... } end
function _M.unpack(t, i, j) return unpack(t, i or 1, j or t.n or #t) end

function _M.nkeys(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

function _M.concat(...) return table.concat(...) end

function _M.add_error(errors, k, v)
  if not errors then return { [k] = v } end
  if errors[k] then
    if type(errors[k]) ~= "table" then errors[k] = { errors[k] } end
    errors[k][#errors[k] + 1] = v
  else
    errors[k] = v
  end
  return errors
end

_M.isempty = function(t) return next(t) == nil end

return _M
