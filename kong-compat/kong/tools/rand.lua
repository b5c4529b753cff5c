-- kong.tools.rand (gw kong-compat): random bytes and strings from OpenSSL's RAND_bytes.
local crypto = require "gw_kong.crypto"

local _M = {}

function _M.get_rand_bytes(n, _) return crypto.random_bytes(n) end

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

--- A random string of `len` (default 32) alphanumeric characters.
function _M.random_string(len)
  len = len or 32
  local bytes = crypto.random_bytes(len)
  local out = {}
  for i = 1, len do
    local b = bytes:byte(i) % #ALPHABET + 1
    out[i] = ALPHABET:sub(b, b)
  end
  return table.concat(out)
end

_M.get_rand_bytes = _M.get_rand_bytes
return _M
