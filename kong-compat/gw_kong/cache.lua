-- gw_kong.cache — kong.cache (and kong.core_cache): Kong's mlcache API over a per-worker LRU.
--
--   cache:get(key, opts, cb, ...) -> value, err, hit_level   (1: cached, 3: loaded by cb now)
--   cache:probe(key) -> ttl, err, value        cache:invalidate(key), :invalidate_local(key)
--   cache:get_bulk(bulk, opts), cache:renew(key, opts, cb, ...), cache:purge()
--
-- opts: ttl (seconds, 0 = until the config changes), neg_ttl (for a nil result). Entries are
-- dropped when gw loads a new config generation, since the entities they were loaded from come
-- from it. Not shared between workers (Kong's L2 shm layer is not there).
-- `.mlcache.new(name, shm, opts)` makes other caches of the same kind (resty.mlcache).
local lrucache = require "resty.lrucache"

local type, tostring, pcall, rawget, setmetatable = type, tostring, pcall, rawget, setmetatable

local NIL = setmetatable({}, { __tostring = function() return "kong.cache nil" end })
local SIZE = 10000

local cache = {}
cache.__index = cache

-- the instance's LRU, emptied when gw runs a new config generation
local function fresh(self)
  local g = rawget(_G, "gw")
  local c = g and g._compiled and g._compiled()
  if c ~= self.generation then
    self.generation = c
    self.lru:flush_all()
  end
  return self.lru
end

local function load(self, key, opts, cb, ...)
  if type(cb) ~= "function" then error("callback must be a function", 3) end
  local ok, v, err, ttl = pcall(cb, ...)
  if not ok then return nil, "callback threw an error: " .. tostring(v) end
  if err ~= nil then return nil, tostring(err) end
  if type(ttl) ~= "number" then
    if v == nil then ttl = opts and opts.neg_ttl or 0 else ttl = opts and opts.ttl or 0 end
  end
  if ttl >= 0 then self.lru:set(key, v == nil and NIL or v, ttl) end
  return v, nil, 3
end

function cache:get(key, opts, cb, ...)
  if type(key) ~= "string" then error("key must be a string", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("opts must be a table", 2) end
  local v = fresh(self):get(key)
  if v ~= nil then
    if v == NIL then return nil, nil, 1 end
    return v, nil, 1
  end
  if cb == nil then return nil end
  return load(self, key, opts, cb, ...)
end

function cache:renew(key, opts, cb, ...)
  if type(key) ~= "string" then error("key must be a string", 2) end
  fresh(self)
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
  local node = fresh(self).map[key]
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
  fresh(self):set(key, value == nil and NIL or value)
  return true
end

function cache:invalidate_local(key)
  if type(key) ~= "string" then error("key must be a string", 2) end
  self.lru:delete(key)
  return true
end
cache.invalidate = cache.invalidate_local
cache.delete = cache.invalidate_local

function cache:purge() self.lru:flush_all() return true end

-- mlcache's set and peek
function cache:set(key, opts, value)
  if type(key) ~= "string" then error("key must be a string", 2) end
  local ttl = opts and (value == nil and opts.neg_ttl or opts.ttl) or nil
  fresh(self):set(key, value == nil and NIL or value, ttl)
  return true
end
function cache:peek(key) return self:probe(key) end

local function new(size)
  return setmetatable({ lru = lrucache.new(size or SIZE) }, cache)
end

local M = new(SIZE)

--- resty.mlcache / kong.resty.mlcache: new(name, shm, opts) -> a cache of its own (opts.lru_size)
M.mlcache = {
  new = function(_, _, opts) return new(opts and opts.lru_size or SIZE) end,
}

return M
