-- kong.tools.sha256 (gw kong-compat): SHA-256 digests.
local crypto = require "gw_kong.crypto"

local _M = {}
function _M.sha256_bin(s) return crypto.digest("sha256", s) end
function _M.sha256_hex(s) return crypto.hex(crypto.digest("sha256", s)) end
function _M.sha256_base64(s) return crypto.base64_encode(crypto.digest("sha256", s)) end
function _M.sha256_base64url(s) return crypto.base64url_encode(crypto.digest("sha256", s)) end
return _M
