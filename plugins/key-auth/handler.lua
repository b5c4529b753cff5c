-- key-auth: authenticates a request by an API key sent in a header, a query argument or the body,
-- looked up in the keyauth_credentials of the config's consumers (lua/gw/auth.lua).
local auth = require "gw.auth"

local KeyAuth = {
  PRIORITY = 1250,
  VERSION = "1.0.0",
}

local NO_KEY = "No API key found in request"
local DUPLICATE = "Duplicate API key found"
local INVALID = "Invalid authentication credentials"

-- The key of the request: key | nil, message. With hide_credentials, the key is removed from what
-- goes upstream.
local function find_key(conf)
  local query, body
  for _, name in ipairs(conf.key_names) do
    if conf.key_in_header then
      local v = gw.request.get_header(name)
      if v ~= nil then
        if gw.request.get_header_count(name) > 1 then return nil, DUPLICATE end
        if conf.hide_credentials then gw.service.request.clear_header(name) end
        return v
      end
    end
    if conf.key_in_query then
      query = query or gw.request.get_query(1000)
      local v = query[name]
      if type(v) == "table" then return nil, DUPLICATE end
      if type(v) == "string" then
        if conf.hide_credentials then
          gw.service.request.set_raw_query(auth.strip_query_arg(gw.request.get_raw_query(), name))
        end
        return v
      end
    end
    if conf.key_in_body then
      if body == nil then
        body = gw.request.get_body() or false      -- no body, or not JSON / form: no key there
        if type(body) ~= "table" then body = false end
      end
      local v = body and body[name]
      if type(v) == "table" and v[1] ~= nil then return nil, DUPLICATE end   -- a=1&a=2
      if type(v) == "string" then
        if conf.hide_credentials then
          body[name] = nil
          gw.service.request.set_body(body)
        end
        return v
      end
    end
  end
  return nil, NO_KEY
end

function KeyAuth:access(conf)
  if not conf.run_on_preflight and gw.request.get_method() == "OPTIONS" then return end
  -- with `anonymous`, a request another auth plugin already accepted is left alone
  if conf.anonymous and auth.already_authenticated() then return end

  local key, err = find_key(conf)
  if key == "" then key, err = nil, NO_KEY end
  if key then
    local credential, consumer = auth.find_credential("keyauth", key)
    if credential then
      -- not a tail call: the handler's frame stays, so LuaJIT's trace does not have to return
      -- straight into the runner's xpcall
      auth.authenticate(consumer, credential)
      return
    end
    err = INVALID
  end
  if conf.anonymous then return auth.use_anonymous(conf.anonymous) end
  return auth.unauthorized(err, 'Key realm="' .. conf.realm .. '"')
end

return KeyAuth
