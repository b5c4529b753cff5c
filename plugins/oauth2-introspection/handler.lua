-- oauth2-introspection: validates OAuth 2.0 access tokens by asking the identity provider
-- (RFC 7662 token introspection, gw authenticated with its client credentials over HTTP Basic),
-- through gw.http. Results are cached in a gw.shared dict (else a per-worker LRU table): active
-- ones until min(exp, ttl), inactive ones for negative_ttl. The token's subject or client is
-- mapped to a consumer of the config. Never a 500 for a bad token: 401 (no/inactive token),
-- 403 (missing scope), 503 (identity provider down, slow or answering nonsense).
local auth = require "gw.auth"

local Introspection = {
  PRIORITY = 1700,
  VERSION = "1.0.0",
}

local type, tostring, tonumber, pairs, ipairs = type, tostring, tonumber, pairs, ipairs
local concat = table.concat

local MAX_TOKEN = 8192

local MSG_MISSING = "The access token is missing"
local MSG_INVALID = "The access token is invalid or has expired"
local MSG_SCOPE = "The access token does not have the required scope"
local MSG_UNAVAILABLE = "The authorization server is unavailable"

---------------------------------------------------------------------------------------------
-- cache keys: SHA-256 of (endpoint, client, token) when libcrypto is there (bin/gw links it),
-- so tokens are not kept in memory as such and keys stay short

local function cache_key(conf, token)
  return "oauth2i:" .. auth.sha256(conf.introspection_url .. "\0" .. conf.client_id .. "\0" .. token)
end

---------------------------------------------------------------------------------------------
-- the cache: the shared dict conf.cache_dict, or per worker a small LRU table

local LRU_MAX = 10000
local lru = { map = {}, n = 0 }          -- key -> node {key, value, expires, prev, next}
lru.head = { }                           -- sentinel: head.next is the most recently used
lru.head.next, lru.head.prev = lru.head, lru.head

local function lru_unlink(node)
  node.prev.next, node.next.prev = node.next, node.prev
end

local function lru_front(node)
  local h = lru.head
  node.next, node.prev = h.next, h
  h.next.prev = node
  h.next = node
end

local lru_cache = {}
function lru_cache.get(_, key)
  local node = lru.map[key]
  if not node then return nil end
  if node.expires <= gw.now() then
    lru_unlink(node)
    lru.map[key] = nil
    lru.n = lru.n - 1
    return nil
  end
  lru_unlink(node)
  lru_front(node)
  return node.value
end
function lru_cache.set(_, key, value, ttl)
  local node = lru.map[key]
  if node then
    lru_unlink(node)
  else
    node = { key = key }
    lru.map[key] = node
    lru.n = lru.n + 1
    if lru.n > LRU_MAX then
      local last = lru.head.prev
      lru_unlink(last)
      lru.map[last.key] = nil
      lru.n = lru.n - 1
    end
  end
  node.value, node.expires = value, gw.now() + ttl
  lru_front(node)
  return true
end

local warned = {}
local function cache_of(conf)
  local dict = gw.shared[conf.cache_dict]
  if dict then return dict end
  if not warned[conf.cache_dict] then
    warned[conf.cache_dict] = true
    gw.log.warn("shared dict '", conf.cache_dict, "' is not declared in gw.shared_dicts: ",
                "caching introspection results per worker")
  end
  return lru_cache
end

---------------------------------------------------------------------------------------------
-- the token


-- The token, where it came from ("header" / "query"), or nil.
local function find_token(conf)
  local v = gw.request.get_header(conf.token_header)
  if v then
    local t = v:match("^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
    if not t and conf.token_header:lower() ~= "authorization" then t = v:match("^%s*(%S+)%s*$") end
    if t then return t, "header" end
  end
  if conf.token_query then
    local q = gw.request.get_query_arg(conf.token_query)
    if type(q) == "string" and q ~= "" then return q, "query" end
  end
  return nil
end

local function hide_token(conf, where)
  if where == "header" then
    gw.service.request.clear_header(conf.token_header)
  else
    gw.service.request.set_raw_query(auth.strip_query_arg(gw.request.get_raw_query(), conf.token_query))
  end
end

---------------------------------------------------------------------------------------------
-- introspection

local function form_escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local d1, d2, d3, d4 = math.floor(n / 262144) % 64, math.floor(n / 4096) % 64, math.floor(n / 64) % 64, n % 64
    out[#out + 1] = B64:sub(d1 + 1, d1 + 1) .. B64:sub(d2 + 1, d2 + 1) ..
      (b and B64:sub(d3 + 1, d3 + 1) or "=") .. (c and B64:sub(d4 + 1, d4 + 1) or "=")
  end
  return concat(out)
end

-- Calls the endpoint: the decoded introspection response, or nil, reason (provider failure).
local function introspect(conf, token)
  local body = "token=" .. form_escape(token)
  if conf.token_type_hint ~= "" then body = body .. "&token_type_hint=" .. form_escape(conf.token_type_hint) end
  local res, err = gw.http.request{
    method = "POST",
    url = conf.introspection_url,
    headers = {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["Accept"] = "application/json",
      -- RFC 6749 2.3.1: the client id and secret are form-encoded before base64
      ["Authorization"] = "Basic " .. b64(form_escape(conf.client_id) .. ":" .. form_escape(conf.client_secret)),
    },
    body = body,
    timeout = conf.timeout,
    ssl_verify = conf.ssl_verify,
    ssl_ca_file = conf.ssl_ca_file,
    max_body_size = 1024 * 1024,
  }
  if not res then return nil, err end
  if res.status ~= 200 then return nil, "status " .. res.status end
  local doc = gw.json.decode(res.body)
  if type(doc) ~= "table" or type(doc.active) ~= "boolean" then return nil, "not an introspection response" end
  return doc
end

local function str(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then return tostring(v) end
  return nil
end

-- What is kept of an active result (and passed on as the credential).
local function keep(doc)
  return {
    active = true,
    sub = str(doc.sub),
    client_id = str(doc.client_id),
    username = str(doc.username),
    scope = str(doc.scope),
    token_type = str(doc.token_type),
    exp = tonumber(doc.exp),
    iss = str(doc.iss),
  }
end

local INACTIVE = "inactive"
local inflight = {}          -- cache key -> true while this worker asks the provider

-- The cached or fresh result: a table for an active token, false for an inactive one, or
-- nil, reason when the provider failed.
local function lookup(conf, token)
  local cache = cache_of(conf)
  local key = cache_key(conf, token)
  local v = cache:get(key)
  if v == nil and inflight[key] then
    -- the same token is being introspected by another request of this worker: wait for it
    local deadline = gw.now() + conf.timeout / 1000 + 0.1
    while inflight[key] and gw.now() < deadline do gw.sleep(0.005) end
    v = cache:get(key)
  end
  if v == INACTIVE then return false end
  if type(v) == "string" then
    local doc = gw.json.decode(v)
    if type(doc) == "table" then return doc end
  end
  inflight[key] = true
  local ok, doc, err = pcall(introspect, conf, token)
  inflight[key] = nil
  if not ok then error(doc, 0) end
  if not doc then return nil, err end
  local now = gw.now()
  local exp = tonumber(doc.exp)
  local nbf = tonumber(doc.nbf)
  if not doc.active or (exp and exp <= now) or (nbf and nbf > now + 1) then
    if conf.negative_ttl > 0 then cache:set(key, INACTIVE, conf.negative_ttl) end
    return false
  end
  local kept = keep(doc)
  local ttl = conf.ttl
  if exp and exp - now < ttl then ttl = exp - now end
  if ttl > 0 then cache:set(key, gw.json.encode(kept), ttl) end
  return kept
end

---------------------------------------------------------------------------------------------
-- consumers: the config's, found by username or custom_id (the anonymous one by id or username)

local consumer_by_claim = auth.find_consumer_by_claim
local consumer_by_ref = auth.find_consumer

local UPSTREAM_HEADERS = { "X-Consumer-ID", "X-Consumer-Custom-ID", "X-Consumer-Username",
  "X-Anonymous-Consumer", "X-Credential-Identifier", "X-Authenticated-Scope", "X-Authenticated-UserId" }

-- Authenticates the request and writes the upstream headers (every one of them set or cleared,
-- so a client cannot send its own).
local function authenticate(consumer, credential, anonymous)
  gw.client.authenticate(consumer, credential)
  local h = {}
  if consumer then
    h["X-Consumer-ID"] = consumer.id
    h["X-Consumer-Custom-ID"] = consumer.custom_id
    h["X-Consumer-Username"] = consumer.username
  end
  if anonymous then h["X-Anonymous-Consumer"] = "true" end
  if credential then
    h["X-Credential-Identifier"] = credential.client_id or credential.sub
    h["X-Authenticated-Scope"] = credential.scope
    h["X-Authenticated-UserId"] = credential.sub or credential.username
  end
  local req = gw.service.request
  for _, name in ipairs(UPSTREAM_HEADERS) do
    local v = h[name]
    if v ~= nil and tostring(v) ~= "" and not tostring(v):find("[%c]") then req.set_header(name, tostring(v))
    else req.clear_header(name) end
  end
end

local function challenge(conf, err, extra)
  local c = 'Bearer realm="' .. conf.realm .. '"'
  if err then c = c .. ', error="' .. err .. '"' end
  if extra then c = c .. ", " .. extra end
  return { ["WWW-Authenticate"] = c }
end

-- Authentication failed: the anonymous consumer when one is configured, else 401.
local function fail(conf, message, err)
  if conf.anonymous then
    local consumer = consumer_by_ref(conf.anonymous)
    if consumer then
      authenticate(consumer, nil, true)
      return
    end
    gw.log.err("anonymous consumer '", conf.anonymous, "' not found")
  end
  return gw.response.exit(401, { message = message }, challenge(conf, err))
end

local function has_scopes(granted, required)
  if #required == 0 then return true end
  local set = {}
  for s in (granted or ""):gmatch("%S+") do set[s] = true end
  for _, s in ipairs(required) do
    if not set[s] then return false end
  end
  return true
end

function Introspection:access(conf)
  if not conf.run_on_preflight and gw.request.get_method() == "OPTIONS" then return end
  -- with `anonymous`, a request another auth plugin already accepted is left alone
  if conf.anonymous and gw.client.get_credential() ~= nil then return end

  local token, where = find_token(conf)
  if not token then return fail(conf, MSG_MISSING) end
  -- not worth asking the provider about: too long, or not a token (RFC 6750 b64token, a bit wider)
  if #token > MAX_TOKEN or token:find("[^%w%-%._~%+/=]") then return fail(conf, MSG_INVALID, "invalid_token") end

  local result, err = lookup(conf, token)
  if result == nil then
    gw.log.warn("introspection at ", conf.introspection_url, " failed: ", err)
    return gw.response.exit(503, { message = MSG_UNAVAILABLE })
  end
  if result == false then return fail(conf, MSG_INVALID, "invalid_token") end

  if not has_scopes(result.scope, conf.required_scopes) then
    return gw.response.exit(403, { message = MSG_SCOPE },
      challenge(conf, "insufficient_scope", 'scope="' .. concat(conf.required_scopes, " ") .. '"'))
  end

  if conf.hide_credentials then hide_token(conf, where) end
  local consumer = consumer_by_claim(result[conf.consumer_by])
  if not consumer and conf.anonymous then
    local anon = consumer_by_ref(conf.anonymous)
    if anon then return authenticate(anon, result, true) end
    gw.log.err("anonymous consumer '", conf.anonymous, "' not found")
  end
  return authenticate(consumer, result, false)
end

-- The cache's dict, declared with 1 MiB (thousands of tokens) unless gw.shared_dicts sizes it.
function Introspection:shared_dicts(conf)
  return { [conf.cache_dict] = "1m" }
end

return Introspection
