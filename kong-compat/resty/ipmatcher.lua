-- resty.ipmatcher (gw kong-compat): IPv4/IPv6 address and CIDR sets on gw.ip.
--   ipmatcher.new(list) -> matcher | nil, err;  m:match(ip) / m:match_bin(4 or 16 bytes) -> bool
local gwip = require "gw.ip"

local byte, format = string.byte, string.format

local _M = { _VERSION = "0.6.1" }
local mt = { __index = _M }

function _M.new(list)
  if type(list) ~= "table" then return nil, "invalid ip list" end
  local set, err = gwip.set(list)
  if not set then return nil, "invalid ip address: " .. tostring(err) end
  return setmetatable({ set = set }, mt)
end

function _M.new_with_value(list)
  local l = {}
  for k in pairs(list) do l[#l + 1] = k end
  local m, err = _M.new(l)
  if not m then return nil, err end
  m.values = list
  return m
end

function _M:match(ip)
  if type(ip) ~= "string" or not gwip.parse(ip) then return false, "invalid ip address: " .. tostring(ip) end
  return self.set:contains(ip)
end

local function bin_to_text(bin)
  if #bin == 4 then return format("%d.%d.%d.%d", byte(bin, 1, 4)) end
  if #bin == 16 then
    local g = {}
    for i = 1, 16, 2 do g[#g + 1] = format("%x", byte(bin, i) * 256 + byte(bin, i + 1)) end
    return table.concat(g, ":")
  end
end
_M.bin_to_text = bin_to_text

function _M:match_bin(bin)
  local ip = type(bin) == "string" and bin_to_text(bin)
  if not ip then return false, "invalid binary ip address" end
  return self.set:contains(ip)
end

return _M
