-- kong.tools.mime_type (gw kong-compat): media type parsing and matching.
local lower = string.lower

local _M = {}

--- "application/json; charset=utf-8" -> "application", "json", { charset = "utf-8" }
function _M.parse_mime_type(mime)
  if type(mime) ~= "string" then return nil end
  local t, sub, rest = mime:match("^%s*([^/%s;]+)%s*/%s*([^;%s]+)%s*(.*)$")
  if not t then
    if mime:match("^%s*%*%s*$") then return "*", "*", {} end
    return nil
  end
  local params = {}
  for k, v in rest:gmatch(";%s*([^=%s;]+)%s*=%s*\"?([^;\"]*)\"?") do params[lower(k)] = v end
  return lower(t), lower(sub), params
end

--- Whether media type `other` is included in `this` ({type, subtype} tables, "*" wildcards).
function _M.includes(this, other)
  if type(this) ~= "table" or type(other) ~= "table" then error("this and other must be tables", 2) end
  if this.type == "*" then return true end
  if this.type ~= other.type then return false end
  if this.subtype == "*" or this.subtype == other.subtype then return true end
  -- application/json includes application/*+json
  local suffix = other.subtype:match("%+(.+)$")
  return suffix ~= nil and suffix == this.subtype
end

return _M
