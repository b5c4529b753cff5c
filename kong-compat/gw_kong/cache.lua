-- gw_kong.cache — kong.cache (and kong.core_cache): Kong's mlcache API over a per-worker LRU.
--
--   cache:get(key, opts, cb, ...) -> value, err, hit_level   (1: cached, 3: loaded by cb now)
--   cache:probe(key) -> ttl, err, value        cache:invalidate(key), :invalidate_local(key)
--   cache:get_bulk(bulk, opts), cache:renew(key, opts, cb, ...), cache:purge()
--
-- opts: ttl (seconds, 0 = until the config changes), neg_ttl (for a nil result). Entries are
-- dropped when gw loads a new config generation, since the entities they were loaded from come
-- from it. Not shared between workers (Kong's L2 shm layer is not there).
local lrucache = require "resty.lrucache"

local type, tostring, pcall, select, rawget = type, tostring, pcall, select, rawget

local NIL = setmetatable({}, { __tostring = function() return "kong.cache nil" end })
local SIZE = 10000

local lru = lrucache.new(SIZE)
local generation

local function fresh()
  local g = rawget(_G, "gw")
  local c = g and g._compiled and g._compiled()
  if c ~= generation then
    generation = c
    lru:flush_all()
  end
end

local cache = {}

local function load(self, key, opts, cb, ...)
  if type(cb) ~= "function" then error("callback must be a function", 3) end
  local ok, v, err, ttl = pcall(cb, ...)
  if not ok then return nil, "callback threw an error: " .. tostring(v) end
  if err ~= nil then return nil, tostring(err) end
  if type(ttl) ~= "number" then
    if v == nil then ttl = opts and opts.neg_ttl or 0 else ttl = opts and opts.ttl or 0 end
  end
  if ttl >= 0 then lru:set(key, v == nil and NIL or v, ttl) end
  return v, nil, 3
end

function cache:get(key, opts, cb, ...)
  if type(key) ~= "string" then error("key must be a string", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("opts must be a table", 2) end
  fresh()
  local v = lru:get(key)
  if v ~= nil then
    if v == NIL then return nil, nil, 1 end
    return v, nil, 1
  end
  if cb == nil then return nil end
  return load(self, key, opts, cb, ...)
end

function cache:renew(key, opts, cb, ...)
  if type(key) ~= "string" then error("key must be a string", 2) end
  fresh()
  return load(self, key, opts, cb, ...)
end

function cache:get_bulk(bulk, opts)
  if type(bulk) ~= "table" then error("bulk must be a table", 2) end
  local res = {}
  local n = bulk.n or #bulk
  for i = 1, n, 4 do
    local v, err, level = self:get(bulk[i], bulk[i + 1] or opts, bulk[i + 2], bulk[i + 3])
    res[i], res[i + 1], res[i + 2] = v, err, level
  end
  res.n = n
  return res
end

function cache:probe(key)
  if type(key) ~= "string" then error("key must be a string", 2) end
  fresh()
  local node = lru.map[key]
  if not node then return nil end
  local ttl = 0
  if node.exp then
    local g = rawget(_G, "gw")
    ttl = node.exp - (g and g.now() or os.time())
    if ttl <= 0 then return nil end
  end
  local v = node.value
  if v == NIL then v = nil end
  return ttl, nil, v
end

function cache:safe_set(key, value)
  if type(key) ~= "string" then error("key must be a string", 2) end
  fresh()
  lru:set(key, value == nil and NIL or value)
  return true
end

function cache:invalidate_local(key)
  if type(key) ~= "string" then error("key must be a string", 2) end
  lru:delete(key)
  return true
end
cache.invalidate = cache.invalidate_local

function cache:purge() lru:flush_all() return true end

function cache:each_keys() return nil end

return setmetatable({}, { __index = cache })
