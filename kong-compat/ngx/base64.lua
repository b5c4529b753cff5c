-- ngx.base64 (gw kong-compat): the lua-resty-core module.
local crypto = require "gw_kong.crypto"
return {
  encode_base64url = function(s) return crypto.base64url_encode(s) end,
  decode_base64url = function(s) return crypto.base64url_decode(s) end,
}
