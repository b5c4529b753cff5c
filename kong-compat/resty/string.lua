-- resty.string (gw kong-compat): to_hex and atoi of lua-resty-string.
local crypto = require "gw_kong.crypto"

local _M = { _VERSION = "0.11" }

function _M.to_hex(s) return crypto.hex(s) end
function _M.atoi(s) return tonumber(s) end

return _M
