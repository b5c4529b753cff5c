-- kong.tools.uuid (gw kong-compat): random (v4) UUIDs.
local crypto = require "gw_kong.crypto"
local bit = require "bit"

local format, byte = string.format, string.byte

local _M = {}

function _M.uuid()
  local b = { byte(crypto.random_bytes(16), 1, 16) }
  b[7] = bit.bor(bit.band(b[7], 0x0f), 0x40)
  b[9] = bit.bor(bit.band(b[9], 0x3f), 0x80)
  return format("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", unpack(b))
end

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

function _M.is_valid_uuid(s)
  return type(s) == "string" and s:find(UUID) ~= nil and s ~= "00000000-0000-0000-0000-000000000000"
end

return _M
