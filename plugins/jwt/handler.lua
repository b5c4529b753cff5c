-- jwt: authenticates a request by a signed JSON Web Token (JWS) from a Bearer header, a cookie or
-- a query argument. The key claim (iss by default, or kid) names a jwt secret of a consumer
-- (lua/gw/auth.lua); that secret fixes the algorithm, and gw.jwt verifies the token with that
-- algorithm only (runtime/lua/jwt.c). Then exp/nbf, required claims, iss and aud are checked.
local auth = require "gw.auth"
local jwt = require "gw.jwt"

local JwtAuth = {
  PRIORITY = 1450,
  VERSION = "1.0.0",
}

local type, ipairs, pairs, tostring = type, ipairs, pairs, tostring
local huge = math.huge

local MAX_KEY = 512              -- bytes of a key claim (iss / kid) looked up
local MAX_HEADER_VALUE = 4096    -- bytes of a claim sent upstream by claims_to_headers

-- The distinct tokens of the request (a list), from the query, cookies and headers.
local function find_tokens(conf)
  local list, seen = {}, {}
  local function add(t)
    if type(t) == "string" and t ~= "" and not seen[t] then
      seen[t] = true
      list[#list + 1] = t
    end
  end
  local function each(v, fn)
    if type(v) == "table" then for _, x in ipairs(v) do fn(x) end else fn(v) end
  end

  if #conf.uri_param_names > 0 then
    local args = gw.request.get_query(1000)
    for _, name in ipairs(conf.uri_param_names) do each(args[name], add) end
  end

  local headers
  if #conf.cookie_names > 0 then
    headers = gw.request.get_headers(1000)
    local wanted = {}
    for _, n in ipairs(conf.cookie_names) do wanted[n] = true end
    each(headers["cookie"], function(line)
      if type(line) ~= "string" then return end
      for pair in line:gmatch("[^;]+") do
        local k, v = pair:match("^%s*([^=%s]+)%s*=%s*(.-)%s*$")
        if k and wanted[k] then add((v:match('^"(.*)"$') or v)) end
      end
    end)
  end

  if #conf.header_names > 0 then
    headers = headers or gw.request.get_headers(1000)
    for _, name in ipairs(conf.header_names) do
      each(headers[name:lower()], function(v)
        if type(v) ~= "string" then return end
        local scheme, tok = v:match("^%s*(%S+)%s+(.-)%s*$")
        -- another scheme (Basic, ...) belongs to another plugin
        if scheme and scheme:lower() == "bearer" then add(tok) end
      end)
    end
  end
  return list
end

local function finite(v)
  return type(v) == "number" and v == v and v ~= huge and v ~= -huge
end

-- Registered and configured claim checks: true | nil, message.
local function check_claims(conf, claims)
  local now = gw.now()
  for _, name in ipairs(conf.claims_to_verify) do
    local v = claims[name]
    if not finite(v) then return nil, "'" .. name .. "' must be a number" end
    if name == "exp" and now >= v + conf.leeway then return nil, "token expired" end
    if name == "nbf" and now + conf.leeway < v then return nil, "token not valid yet" end
  end
  if conf.maximum_expiration > 0 and claims.exp - now > conf.maximum_expiration then
    return nil, "The 'exp' claim exceeds the maximum allowed expiration"
  end
  for _, name in ipairs(conf.required_claims) do
    local v = claims[name]
    if v == nil or v == gw.json.null then return nil, "Missing required claim '" .. name .. "'" end
  end
  if #conf.allowed_iss > 0 then
    local ok = false
    for _, iss in ipairs(conf.allowed_iss) do ok = ok or claims.iss == iss end
    if not ok then return nil, "Token issuer not allowed" end
  end
  if #conf.allowed_aud > 0 then
    local aud, ok = claims.aud, false
    if type(aud) == "string" then aud = { aud } end
    if type(aud) == "table" then
      for _, a in ipairs(aud) do
        for _, want in ipairs(conf.allowed_aud) do ok = ok or a == want end
      end
    end
    if not ok then return nil, "Token audience not allowed" end
  end
  return true
end

-- The claim's value as a header value, or nil when it cannot be one.
local function header_value(v)
  if v == nil or v == gw.json.null then return nil end
  if type(v) == "table" then v = gw.json.encode(v) end
  if type(v) ~= "string" then v = tostring(v) end
  if not v or #v > MAX_HEADER_VALUE or v:find("[%z\r\n]") then return nil end
  return v
end

-- consumer, credential, token, claims | nil, message
local function authenticate(conf, token)
  local header, claims = jwt.decode(token)
  if not header then return nil, "Bad token; " .. claims end

  local kname = conf.key_claim_name
  local key = claims[kname]
  if key == nil then key = header[kname] end
  if key == nil then return nil, "No mandatory '" .. kname .. "' in claims" end
  if type(key) ~= "string" or key == "" or #key > MAX_KEY then
    return nil, "Invalid '" .. kname .. "' in claims"
  end

  local credential, consumer = auth.find_credential("jwt", key)
  if not credential then return nil, "No credentials found for given '" .. kname .. "'" end

  -- the credential fixes the algorithm: the token's own alg only has to agree with it
  local alg = credential.algorithm or "HS256"
  if header.alg ~= alg then return nil, "Invalid algorithm" end
  local secret
  if alg:sub(1, 2) == "HS" then secret = credential.secret else secret = credential.rsa_public_key end
  if type(secret) ~= "string" or secret == "" then
    gw.log.err("jwt secret '", key, "' has no ", alg:sub(1, 2) == "HS" and "secret" or "rsa_public_key")
    return nil, "Invalid signature"
  end

  local verified, err = jwt.verify(token, alg, secret)
  if not verified then
    if err:find("^invalid key") or err == "unsupported algorithm" then
      gw.log.err("jwt secret '", key, "' (", alg, "): ", err)
      return nil, "Invalid signature"
    end
    if err == "invalid signature" then return nil, "Invalid signature" end
    return nil, "Bad token; " .. err
  end

  local ok, cerr = check_claims(conf, verified)
  if not ok then return nil, cerr end
  return consumer, credential, verified
end

function JwtAuth:access(conf)
  -- a client must not be able to send the headers the claims would fill in
  for _, h in pairs(conf.claims_to_headers) do gw.service.request.clear_header(h) end

  if not conf.run_on_preflight and gw.request.get_method() == "OPTIONS" then return end
  -- with `anonymous`, a request another auth plugin already accepted is left alone
  if conf.anonymous and auth.already_authenticated() then return end

  local tokens = find_tokens(conf)
  local consumer, credential, claims, err
  if #tokens == 1 then
    consumer, credential, claims = authenticate(conf, tokens[1])
    if not consumer then err = credential end
  elseif #tokens > 1 then
    err = "Multiple tokens provided"
  end

  if consumer then
    auth.authenticate(consumer, credential, credential.key)
    local shared = gw.ctx.shared
    shared.authenticated_jwt_token = tokens[1]
    shared.authenticated_jwt_claims = claims
    for claim, h in pairs(conf.claims_to_headers) do
      local v = header_value(claims[claim])
      if v then gw.service.request.set_header(h, v) end
    end
    return
  end

  if conf.anonymous then return auth.use_anonymous(conf.anonymous) end
  local challenge = 'Bearer realm="' .. conf.realm .. '"'
  if #tokens == 0 then return auth.unauthorized("Unauthorized", challenge) end
  return auth.unauthorized(err, challenge .. ', error="invalid_token"')
end

return JwtAuth
