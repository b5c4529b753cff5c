-- resty.random (gw kong-compat): random bytes (always from OpenSSL's strong generator).
local crypto = require "gw_kong.crypto"

local _M = { _VERSION = "0.11" }

function _M.bytes(len, _) return crypto.random_bytes(len) end
function _M.number(min, max) return math.random(min or 0, max or 2147483647) end

return _M
