-- proxy-cache: caches upstream responses to GET/HEAD requests (by default) and answers repeated
-- requests from the cache. The key is built from method, host, path and the sorted query (plus
-- vary_headers and the consumer when configured); the TTL comes from ttl_by_status, cache_ttl or
-- (cache_control: true) the response's s-maxage/max-age. X-Cache-Status tells what happened:
-- Miss, Hit, Bypass, Expired, Stale. Entries live behind a small storage interface (STORAGES):
-- memory (a gw.shared dict, shared by every worker) or redis (gw.redis, shared by every node).
--
-- Phases: access looks the key up and answers a fresh hit with gw.response.exit; header_filter
-- decides whether the upstream's answer may be stored (or replaces an upstream failure with a
-- stale entry); body_filter stores the body (or puts the stale body in); log writes to Redis.
local auth = require "gw.auth"

local ProxyCache = {
  PRIORITY = 100,
  VERSION = "1.0.0",
}

local type, tostring, tonumber, pairs, ipairs = type, tostring, tonumber, pairs, ipairs
local concat, sort, floor = table.concat, table.sort, math.floor

local PREFIX = "proxy-cache:"   -- every entry's key in the storage; the admin purge relies on it
ProxyCache.PREFIX = PREFIX
-- An entry stays in the storage this long past its TTL (and stale_ttl), so that a request then is
-- reported as Expired rather than Miss; the storage evicts it earlier when memory is short.
local GRACE = 60
ProxyCache.GRACE = GRACE

---------------------------------------------------------------------------------------------
-- storage: new(conf) -> store | nil, err; store:get(key) -> value, stale, err (err: the storage
-- failed, the request bypasses the cache); store:set(key, value, ttl) -> ok, err;
-- store:delete(key); store:purge(). A value is an opaque string; store.defers: set only in log.

local STORAGES = {}

STORAGES.memory = function(conf)
  local dict = gw.shared[conf.dict]
  if not dict then
    return nil, "shared dict '" .. conf.dict .. "' is not declared in gw.shared_dicts"
  end
  return {
    get = function(_, key)
      local v, _, stale = dict:get_stale(key)
      return v, stale
    end,
    set = function(_, key, value, ttl) return dict:set(key, value, ttl) end,
    delete = function(_, key) return dict:delete(key) end,
    purge = function(_)
      for _, k in ipairs(dict:get_keys(0)) do
        if k:sub(1, #PREFIX) == PREFIX then dict:delete(k) end
      end
      dict:flush_expired(0)
      return true
    end,
  }
end

-- redis: gw.redis may suspend only in rewrite, access and log, so a store that `defers` is written
-- in the log phase (the memory one is written at once in body_filter). Redis failures are logged
-- and the request goes on uncached (Bypass).
STORAGES.redis = function(conf)
  local redis = require "gw.redis"
  local function client()
    local r, err = redis.connect{ host = conf.redis_host, port = conf.redis_port,
                                  password = conf.redis_password, db = conf.redis_database,
                                  timeout = conf.redis_timeout }
    if not r then gw.log.err("redis ", conf.redis_host, ":", conf.redis_port, ": ", tostring(err)) end
    return r
  end
  local function cmd(...)
    local r = client()
    if not r then return nil, "redis unavailable" end
    local v, err = r:command(...)
    if v == nil and err then gw.log.err("redis ", (...), ": ", tostring(err)) end
    return v, err
  end
  return {
    defers = true,
    get = function(_, key)
      local v, err = cmd("GET", key)
      if err then return nil, nil, err end
      return v
    end,
    set = function(_, key, value, ttl) return cmd("SET", key, value, "EX", math.max(1, math.ceil(ttl))) end,
    delete = function(_, key) return cmd("DEL", key) end,
    purge = function(_)
      local cursor, n = "0", 0
      repeat
        local res, err = cmd("SCAN", cursor, "MATCH", PREFIX .. "*", "COUNT", 1000)
        if not res then return nil, err end
        cursor = res[1]
        for _, k in ipairs(res[2] or {}) do cmd("DEL", k); n = n + 1 end
      until cursor == "0"
      return n
    end,
  }
end

ProxyCache.STORAGES = STORAGES

local warned = {}
local function storage(conf)
  local make = STORAGES[conf.strategy]
  local store, err
  if make then store, err = make(conf) else err = "strategy '" .. tostring(conf.strategy) .. "' is not available" end
  if not store and not warned[err] then
    warned[err] = true
    gw.log.err(err, ": responses are not cached")
  end
  return store
end

---------------------------------------------------------------------------------------------
-- the key

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

--- The query with its &-separated pairs sorted (empty pairs dropped).
local function sorted_query(raw)
  local parts = {}
  for p in raw:gmatch("[^&]+") do parts[#parts + 1] = p end
  sort(parts)
  return concat(parts, "&")
end
ProxyCache.sorted_query = sorted_query

--- The text the key is the hash of, and the key itself (32 hex digits of its SHA-256).
function ProxyCache.cache_key(conf)
  local method = gw.request.get_method()
  if method == "HEAD" then method = "GET" end   -- a HEAD is answered from the GET entry
  local parts = {
    method, gw.request.get_host(), gw.request.get_path(),
    sorted_query(gw.request.get_raw_query()),
  }
  for _, name in ipairs(conf.vary_headers or {}) do
    local v = gw.request.get_header(name)
    parts[#parts + 1] = name:lower() .. "=" .. (v or "")
  end
  if conf.vary_consumer then
    local c = gw.client.get_consumer()
    parts[#parts + 1] = "consumer=" .. tostring(c and (c.id or c.username) or "")
  end
  local text = concat(parts, "\n")
  return hex(auth.sha256(text)):sub(1, 32), text
end

---------------------------------------------------------------------------------------------
-- Cache-Control

local function directives(value)
  local d = {}
  if type(value) == "table" then value = concat(value, ",") end
  if not value then return d end
  for item in value:gmatch("[^,]+") do
    local name, arg = item:match("^%s*([%w%-]+)%s*=?%s*\"?([^\"]*)\"?%s*$")
    if name then d[name:lower()] = arg ~= "" and arg or true end
  end
  return d
end
ProxyCache.directives = directives

--- The TTL for a response: seconds, or nil and the reason it must not be stored.
-- cc: the response's Cache-Control value (string, array or nil).
function ProxyCache.ttl_for(conf, status, cc)
  local d = directives(cc)
  if d["no-store"] or d["private"] or d["no-cache"] then return nil, "cache-control" end
  if conf.cache_control then
    local age = tonumber(d["s-maxage"]) or tonumber(d["max-age"])
    if age then
      if age <= 0 then return nil, "cache-control" end
      return floor(age)
    end
  end
  local t = conf.ttl_by_status and conf.ttl_by_status[tostring(status)]
  if t == nil then t = conf.cache_ttl end
  if not t or t <= 0 then return nil, "ttl" end
  return t
end

local function listed(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

local function content_type_ok(conf, ct)
  if type(ct) == "table" then ct = ct[1] end
  local media = ct and ct:match("^%s*([^;%s]+)") or ""
  media = media:lower()
  for _, want in ipairs(conf.content_type) do
    if want == "*" or want:lower() == media then return true end
  end
  return false
end

--- Whether the request asks not to be served from the cache (cache_control: true only).
function ProxyCache.request_bypasses(conf)
  if not conf.cache_control then return false end
  local d = directives(gw.request.get_header("Cache-Control"))
  if d["no-cache"] or d["no-store"] then return true end
  local pragma = gw.request.get_header("Pragma")
  return pragma ~= nil and pragma:lower():find("no-cache", 1, true) ~= nil
end

---------------------------------------------------------------------------------------------
-- entries: "<meta JSON>\n<body>"

local SKIP = {
  ["content-length"] = true, ["transfer-encoding"] = true, connection = true, ["keep-alive"] = true,
  ["x-cache-status"] = true, ["x-cache-key"] = true, age = true,
}

local function encode(meta, body)
  return gw.json.encode(meta) .. "\n" .. (body or "")
end

local function decode(s)
  local nl = s and s:find("\n", 1, true)
  if not nl then return nil end
  local meta = gw.json.decode(s:sub(1, nl - 1))
  if type(meta) ~= "table" then return nil end
  meta.body = s:sub(nl + 1)
  return meta
end

local function response_headers()
  local out = {}
  for name, v in pairs(gw.response.get_headers(1000)) do
    if not SKIP[name] then out[name] = v end
  end
  return out
end

local function age_of(e) return tostring(math.max(0, floor(gw.now() - e.stored_at))) end

-- gateway_proxy_cache_requests_total{service,route,status}: Hit, Miss, Bypass, Expired, Stale
local function count(status)
  local svc, route = gw.metrics.service_route()
  gw.metrics.counter("gateway_proxy_cache_requests_total", "Requests seen by proxy-cache, by X-Cache-Status",
                     { "service", "route", "status" }):inc(1, { svc, route, status })
end

local function status_header(conf, p, status)
  count(status)
  gw.response.set_header("X-Cache-Status", status)
  if conf.cache_key_header and p.key then gw.response.set_header("X-Cache-Key", p.key) end
end

---------------------------------------------------------------------------------------------
-- phases

function ProxyCache:access(conf)
  local p = gw.ctx.plugin
  if not listed(conf.request_method, gw.request.get_method()) or ProxyCache.request_bypasses(conf) then
    p.bypass = true
    return
  end
  local store = storage(conf)
  if not store then p.bypass = true return end
  local key = ProxyCache.cache_key(conf)
  p.key, p.store = key, store
  local raw, _, err = store:get(PREFIX .. key)
  if err then p.bypass = true return end
  local e = raw and decode(raw)
  local now = gw.now()
  if e and now < e.expires then
    p.hit = true
    local headers = e.headers or {}
    headers["X-Cache-Status"] = "Hit"
    count("Hit")
    headers["Age"] = age_of(e)
    if conf.cache_key_header then headers["X-Cache-Key"] = key end
    return gw.response.exit(e.status, e.body, headers)
  end
  p.status = e and "Expired" or "Miss"
  if e and conf.stale_ttl > 0 and now < e.expires + conf.stale_ttl then p.stale = e end
end

function ProxyCache:header_filter(conf)
  local p = gw.ctx.plugin
  if p.hit then return end
  if p.bypass or not p.key then return status_header(conf, p, "Bypass") end
  local status = gw.response.get_status()
  if status >= 500 and p.stale then
    local e = p.stale
    for name in pairs(gw.response.get_headers(1000)) do gw.response.clear_header(name) end
    gw.response.set_status(e.status)
    for name, v in pairs(e.headers or {}) do gw.response.set_header(name, v) end
    gw.response.set_header("Age", age_of(e))
    p.serve_stale = true
    return status_header(conf, p, "Stale")
  end
  if not listed(conf.response_code, status) or not content_type_ok(conf, gw.response.get_header("Content-Type"))
     or gw.response.get_header("Set-Cookie") ~= nil then
    return status_header(conf, p, "Bypass")
  end
  local ttl = ProxyCache.ttl_for(conf, status, gw.response.get_headers(1000)["cache-control"])
  local len = tonumber(gw.response.get_header("Content-Length"))
  if not ttl or (len and len > conf.max_body_size) then return status_header(conf, p, "Bypass") end
  status_header(conf, p, p.status)
  -- a HEAD response has no body to store (and runs no body_filter): only GET fills the entry
  if gw.request.get_method() ~= "HEAD" then
    p.pending = { status = status, headers = response_headers(), ttl = ttl }
  end
end

--- Stores the pending entry of this request with `body`.
function ProxyCache.save(conf, p, body)
  local m = p.pending
  p.pending = nil
  if not m or #body > conf.max_body_size then return end
  local now = gw.now()
  m.stored_at, m.expires = now, now + m.ttl
  local value, ttl = encode(m, body), m.ttl + conf.stale_ttl + GRACE
  if p.store.defers then p.deferred = { value, ttl } return end
  local ok, err = p.store:set(PREFIX .. p.key, value, ttl)
  if not ok then gw.log.warn("could not store ", p.key, ": ", tostring(err)) end
end

function ProxyCache:body_filter(conf)
  local p = gw.ctx.plugin
  if p.serve_stale then return gw.response.set_raw_body(p.stale.body) end
  if p.pending then ProxyCache.save(conf, p, gw.response.get_raw_body()) end
end

function ProxyCache:log(conf)
  local p = gw.ctx.plugin
  local d = p.deferred
  if not d then return end
  p.deferred = nil
  local ok, err = p.store:set(PREFIX .. p.key, d[1], d[2])
  if not ok then gw.log.warn("could not store ", p.key, ": ", tostring(err)) end
end

-- The memory strategy's dict, declared with 16 MiB unless gw.shared_dicts sizes it.
function ProxyCache:shared_dicts(conf)
  if conf.strategy ~= "memory" then return {} end
  return { [conf.dict] = "16m" }
end

return ProxyCache
