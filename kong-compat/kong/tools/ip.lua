-- kong.tools.ip (gw kong-compat): address checks on gw.ip.
local gwip = require "gw.ip"

local _M = {}

function _M.is_valid_ipv4(s)
  if type(s) ~= "string" then return false end
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, x in ipairs({ a, b, c, d }) do
    if tonumber(x) > 255 or (#x > 1 and x:sub(1, 1) == "0") then return false end
  end
  return true
end

function _M.is_valid_ipv6(s)
  return type(s) == "string" and s:find(":", 1, true) ~= nil and gwip.parse(s) ~= nil
end

function _M.is_valid_ip(s) return _M.is_valid_ipv4(s) or _M.is_valid_ipv6(s) end

function _M.is_valid_ip_or_cidr(s)
  return type(s) == "string" and gwip.parse_cidr(s) ~= nil
end

function _M.is_valid_ip_or_cidr_v4(s)
  if type(s) ~= "string" then return false end
  local ip, bits = s:match("^([^/]+)/(%d+)$")
  if not ip then return _M.is_valid_ipv4(s) end
  return _M.is_valid_ipv4(ip) and tonumber(bits) <= 32
end

function _M.is_valid_cidr(s)
  return type(s) == "string" and s:find("/", 1, true) ~= nil and gwip.parse_cidr(s) ~= nil
end

--- "type" of a host: "ipv4", "ipv6" or "name"
function _M.hostname_type(name)
  if _M.is_valid_ipv4(name) then return "ipv4" end
  if name:find(":", 1, true) then return "ipv6" end
  return "name"
end

--- { type, host, port } of "host", "host:port", "[v6]:port", or nil, err
function _M.normalize_ip(address)
  if type(address) ~= "string" then return nil, "invalid value" end
  local host, port = address:match("^%[([^%]]+)%]:?(%d*)$")
  if host then
    if not _M.is_valid_ipv6(host) then return nil, "invalid ipv6 address: " .. address end
    port = port ~= "" and tonumber(port) or nil
    if port and port > 65535 then return nil, "invalid port number" end
    return { type = "ipv6", host = "[" .. host .. "]", port = port }
  end
  if _M.is_valid_ipv6(address) then return { type = "ipv6", host = "[" .. address .. "]" } end
  host, port = address:match("^([^:]+):(%d+)$")
  if not host then host = address end
  port = port and tonumber(port)
  if port and port > 65535 then return nil, "invalid port number" end
  if address:find(":", 1, true) and not port then return nil, "invalid port number" end
  if _M.is_valid_ipv4(host) then return { type = "ipv4", host = host, port = port } end
  if host:find("^%d+%.%d+%.%d+%.%d+$") then return nil, "invalid ipv4 address: " .. address end
  if host == "" or #host > 253 then return nil, "invalid hostname: " .. address end
  for label in (host .. "."):gmatch("([^.]*)%.") do
    if label == "" or #label > 63 or not label:find("^[%w_][%w%-_]*$") or label:sub(-1) == "-" then
      return nil, "invalid hostname: " .. address
    end
  end
  return { type = "name", host = host:lower(), port = port }
end

return _M
