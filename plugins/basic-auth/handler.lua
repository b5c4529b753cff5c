-- basic-auth: authenticates a request by `Authorization: Basic base64(username:password)` (or
-- Proxy-Authorization) against the basicauth_credentials of the config's consumers, whose
-- passwords are stored as salted SHA-256 hashes and compared in constant time (lua/gw/auth.lua).
local auth = require "gw.auth"

local BasicAuth = {
  PRIORITY = 1100,
  VERSION = "1.0.0",
}

-- "Basic dXNlcjpwYXNz" -> "user", "pass" | nil (anything malformed)
local function parse(value)
  if type(value) ~= "string" then return nil end
  local b64 = value:match("^%s*[Bb][Aa][Ss][Ii][Cc]%s+(%S+)%s*$")
  if not b64 then return nil end
  local decoded = auth.decode_base64(b64)
  if not decoded then return nil end
  local user, pass = decoded:match("^([^:]*):(.*)$")
  if not user or user == "" then return nil end
  return user, pass
end
BasicAuth._parse = parse

function BasicAuth:access(conf)
  if not conf.run_on_preflight and gw.request.get_method() == "OPTIONS" then return end
  if conf.anonymous and auth.already_authenticated() then return end

  local header = "Authorization"
  local value = gw.request.get_header(header)
  local user, pass = parse(value)
  if not user then
    local proxy = gw.request.get_header("Proxy-Authorization")
    if proxy then
      header, value = "Proxy-Authorization", proxy
      user, pass = parse(proxy)
    end
  end

  local err = "Unauthorized"
  if value ~= nil then
    if user then
      local consumer, credential = auth.verify_basic(user, pass)
      if consumer then
        if conf.hide_credentials then gw.service.request.clear_header(header) end
        return auth.authenticate(consumer, credential, credential.username)
      end
    end
    err = "Invalid authentication credentials"
  end
  if conf.anonymous then return auth.use_anonymous(conf.anonymous) end
  return auth.unauthorized(err, 'Basic realm="' .. conf.realm .. '"')
end

return BasicAuth
