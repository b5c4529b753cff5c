-- kong.tools.http (gw kong-compat): header/cookie name checks, argument encoding, mime types.
local ngx = require "gw_kong.ngx"

local _M = {}

local TOKEN = "^[%w!#$%%&'*+%-%.%^_`|~]+$"

function _M.validate_header_name(name)
  if type(name) ~= "string" or name == "" then return nil, "no header name provided" end
  if name:find("^[%w%-_]+$") then return name end
  return nil, "bad header name '" .. name .. "', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
end

function _M.validate_cookie_name(name)
  if type(name) ~= "string" or name == "" then return nil, "no cookie name provided" end
  if name:find(TOKEN) then return name end
  return nil, "bad cookie name '" .. name .. "', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
end

function _M.encode_args(args) return ngx.encode_args(args) end
function _M.decode_args(s, max) return ngx.decode_args(s, max) end

function _M.get_mime_type(content_header, use_default)
  if use_default == nil then use_default = true end
  local media = (content_header or ""):match("^%s*([^;%s]+)")
  if media then media = media:lower() end
  local types = {
    ["application/json"] = "application/json; charset=utf-8",
    ["text/html"] = "text/html; charset=utf-8",
    ["application/xml"] = "application/xml; charset=utf-8",
    ["text/plain"] = "text/plain; charset=utf-8",
    ["application/grpc"] = "application/grpc",
  }
  local t = media and types[media]
  if t then return t end
  if media and media:find("^application/") then return types["application/json"] end
  if media and media:find("^text/") then return types["text/plain"] end
  return use_default and types["application/json"] or nil
end

function _M.get_response_type(accept)
  return require("gw_kong.pdk")._response_type(accept)
end

--- "max-age=60, private" -> { ["max-age"] = 60, private = true }
function _M.parse_directive_header(h)
  local out = {}
  if type(h) == "table" then h = table.concat(h, ", ") end
  if type(h) ~= "string" then return out end
  for part in h:gmatch("[^,]+") do
    local k, v = part:match("^%s*([^=%s]+)%s*=%s*\"?([^\"]*)\"?%s*$")
    if k then out[k:lower()] = tonumber(v) or v
    else
      k = part:match("^%s*(.-)%s*$")
      if k ~= "" then out[k:lower()] = true end
    end
  end
  return out
end

return _M
