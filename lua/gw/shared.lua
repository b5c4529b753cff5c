-- gw.shared — dictionaries in shared memory, visible to every worker (like ngx.shared.DICT).
-- The storage lives in runtime/shared.c; this module is the Lua face over LuaJIT FFI.
--
--   local cache = require("gw.shared").cache      -- nil when no dict "cache" was configured
--   local ok, err, forcible = cache:set("k", "v", 10)   -- exptime in seconds, 0 = never
--   local v, flags = cache:get("k")
--
-- Misuse (bad argument types) raises an error naming the method; operational failures
-- return OpenResty's values: get -> nil; set/add/replace -> false, err, forcible;
-- incr/ttl/expire -> nil, err.
local ffi = require "ffi"
local C = ffi.C

-- A repeated cdef would fail ("attempt to redefine"), and busted may load this module
-- again in a fresh package.loaded; the FFI's C namespace is per VM, so declare once.
if not pcall(ffi.typeof, "gw_shared_dict_t") then
  ffi.cdef [[
    typedef struct gw_dict gw_shared_dict_t;
    gw_shared_dict_t *gw_ffi_dict(const char *name, size_t len);
    int gw_ffi_dict_get(gw_shared_dict_t *d, const char *key, size_t klen, char **val,
                        size_t *vlen, int *type, double *num, uint32_t *flags, int stale_ok,
                        int *is_stale);
    int gw_ffi_dict_set(gw_shared_dict_t *d, int op, const char *key, size_t klen, int type,
                        const char *str, size_t slen, double num, double ttl, uint32_t flags,
                        int *forcible, char **err);
    int gw_ffi_dict_incr(gw_shared_dict_t *d, const char *key, size_t klen, double by,
                         double *out, int has_init, double init, double init_ttl,
                         int *forcible, char **err);
    int gw_ffi_dict_delete(gw_shared_dict_t *d, const char *key, size_t klen);
    int gw_ffi_dict_ttl(gw_shared_dict_t *d, const char *key, size_t klen, double *ttl);
    int gw_ffi_dict_expire(gw_shared_dict_t *d, const char *key, size_t klen, double ttl);
    int gw_ffi_dict_flush_all(gw_shared_dict_t *d);
    int gw_ffi_dict_flush_expired(gw_shared_dict_t *d, int max);
    int gw_ffi_dict_get_keys(gw_shared_dict_t *d, int max, char *buf, size_t cap, size_t *need);
    size_t gw_ffi_dict_capacity(gw_shared_dict_t *d);
    size_t gw_ffi_dict_free_space(gw_shared_dict_t *d);
  ]]
end

local type, tostring, tonumber, error, setmetatable, getmetatable, rawset =
      type, tostring, tonumber, error, setmetatable, getmetatable, rawset
local ffi_string, ffi_new, ffi_cast = ffi.string, ffi.new, ffi.cast

-- Value types and store operations, as in runtime/shared.c.
local T_NIL, T_BOOL, T_NUM, T_STR = 0, 1, 2, 3
local OP_SET, OP_ADD, OP_REPLACE, OP_SAFE_SET, OP_SAFE_ADD = 0, 1, 2, 3, 4
local KEY_MAX = 65535
local MAX_FLAGS = 4294967295

-- Out-parameters, reused by every call: a VM runs one thing at a time and nothing in
-- between a call and reading its results can yield.
local val_pp = ffi_new("char *[1]")
local len_p = ffi_new("size_t[1]")
local type_p = ffi_new("int[1]")
local num_p = ffi_new("double[1]")
local flags_p = ffi_new("uint32_t[1]")
local stale_p = ffi_new("int[1]")
local forcible_p = ffi_new("int[1]")
local err_pp = ffi_new("char *[1]")

-- One copy-out buffer per VM, grown on demand up to KEEP_MAX; anything bigger gets a
-- buffer of its own for that one call so a single huge value does not pin memory.
local KEEP_MAX = 1024 * 1024
local buf_size = 4096
local buf = ffi_new("char[?]", buf_size)

local function buffer_for(need)
  if need <= buf_size then return buf, buf_size end
  if need > KEEP_MAX then return ffi_new("char[?]", need), need end
  local size = buf_size
  while size < need do size = size * 2 end
  buf, buf_size = ffi_new("char[?]", size), size
  return buf, buf_size
end

local dict_mt = {}
local methods = {}
dict_mt.__index = methods
dict_mt.__tostring = function(self) return "gw.shared.DICT(" .. self._name .. ")" end

-- Raises at the first caller outside this file, whatever the helper depth.
local this_source = debug.getinfo(1, "S").source
local function fail(fname, msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info or info.source ~= this_source then break end
    level = level + 1
  end
  error("gw.shared.DICT:" .. fname .. ": " .. msg, level)
end

local function check_self(self, fname)
  if type(self) ~= "table" or getmetatable(self) ~= dict_mt then
    fail(fname, "expecting a dict as self (call it with ':')")
  end
  return self._d
end

-- -> key or nil, err (empty / too long are operational, like OpenResty)
local function check_key(key, fname)
  local t = type(key)
  if t ~= "string" then
    if t == "number" then
      key = tostring(key)
    else
      fail(fname, "key must be a string")
    end
  end
  local n = #key
  if n == 0 then return nil, "empty key" end
  if n > KEY_MAX then return nil, "key too long" end
  return key
end

local function check_ttl(v, fname, what)
  if v == nil then return 0 end
  if type(v) ~= "number" or not (v >= 0) then
    fail(fname, what .. " must be a non-negative number")
  end
  return v
end

local function check_flags(v, fname)
  if v == nil then return 0 end
  if type(v) ~= "number" or v < 0 or v > MAX_FLAGS or v % 1 ~= 0 then
    fail(fname, "flags must be an integer between 0 and " .. MAX_FLAGS)
  end
  return v
end

local function do_get(self, key, stale_ok, fname)
  local d = check_self(self, fname)
  local k, kerr = check_key(key, fname)
  if not k then return nil, kerr end
  local b, cap = buf, buf_size
  while true do
    val_pp[0] = b
    len_p[0] = cap
    local rc = C.gw_ffi_dict_get(d, k, #k, val_pp, len_p, type_p, num_p, flags_p,
                                 stale_ok, stale_p)
    if rc == 0 then break end
    if rc < 0 then return nil, "dict unusable" end
    -- too small: the value's length is in len_p; it may change again before the retry
    b, cap = buffer_for(tonumber(len_p[0]))
  end
  local t = type_p[0]
  local v
  if t == T_NIL then
    return nil
  elseif t == T_STR then
    v = ffi_string(b, len_p[0])
  elseif t == T_NUM then
    v = tonumber(num_p[0])
  else
    v = num_p[0] ~= 0
  end
  local flags = flags_p[0]
  flags = flags ~= 0 and tonumber(flags) or nil
  if stale_ok == 1 then return v, flags, stale_p[0] ~= 0 end
  return v, flags
end

--- dict:get(key) -> value, flags (flags only when non-zero); nil when missing or expired.
function methods.get(self, key)
  return do_get(self, key, 0, "get")
end

--- dict:get_stale(key) -> value, flags, stale: expired items too, with stale = true.
function methods.get_stale(self, key)
  return do_get(self, key, 1, "get_stale")
end

local function store(self, op, fname, key, value, exptime, flags)
  local d = check_self(self, fname)
  local k, kerr = check_key(key, fname)
  local ttl = check_ttl(exptime, fname, "exptime")
  flags = check_flags(flags, fname)
  local vt, t, str, slen, num = type(value), T_NIL, nil, 0, 0
  if vt == "string" then
    t, str, slen = T_STR, value, #value
  elseif vt == "number" then
    t, num = T_NUM, value
  elseif vt == "boolean" then
    t, num = T_BOOL, value and 1 or 0
  elseif vt ~= "nil" then
    fail(fname, "value must be a string, number, boolean or nil")
  end
  if not k then return false, kerr, false end
  local rc = C.gw_ffi_dict_set(d, op, k, #k, t, str, slen, num, ttl, flags, forcible_p, err_pp)
  local forcible = forcible_p[0] ~= 0
  if rc == 0 then return true, nil, forcible end
  return false, ffi_string(err_pp[0]), forcible
end

--- dict:set(key, value, exptime?, flags?) -> ok, err, forcible. A nil value deletes.
function methods.set(self, key, value, exptime, flags)
  return store(self, OP_SET, "set", key, value, exptime, flags)
end

--- dict:safe_set(...) -> like set, but fails with "no memory" instead of evicting.
function methods.safe_set(self, key, value, exptime, flags)
  return store(self, OP_SAFE_SET, "safe_set", key, value, exptime, flags)
end

--- dict:add(...) -> like set, but fails with "exists" when the key holds a live item.
function methods.add(self, key, value, exptime, flags)
  return store(self, OP_ADD, "add", key, value, exptime, flags)
end

function methods.safe_add(self, key, value, exptime, flags)
  return store(self, OP_SAFE_ADD, "safe_add", key, value, exptime, flags)
end

--- dict:replace(...) -> like set, but fails with "not found" unless the key holds a live item.
function methods.replace(self, key, value, exptime, flags)
  return store(self, OP_REPLACE, "replace", key, value, exptime, flags)
end

--- dict:delete(key) -> true
function methods.delete(self, key)
  local d = check_self(self, "delete")
  local k = check_key(key, "delete")
  if k then C.gw_ffi_dict_delete(d, k, #k) end
  return true
end

--- dict:incr(key, value, init?, init_ttl?) -> new value (plus nil, forcible when init is
--- given) or nil, "not found" / "not a number" / "no memory". init (and init_ttl, in
--- seconds) apply only when the key is missing or expired; an existing item keeps its ttl.
function methods.incr(self, key, value, init, init_ttl)
  local d = check_self(self, "incr")
  local k, kerr = check_key(key, "incr")
  if type(value) ~= "number" then fail("incr", "value must be a number") end
  local has_init, initv = 0, 0
  if init ~= nil then
    if type(init) ~= "number" then fail("incr", "init must be a number") end
    has_init, initv = 1, init
  end
  local ittl = check_ttl(init_ttl, "incr", "init_ttl")
  if init_ttl ~= nil and init == nil then fail("incr", "init_ttl needs init") end
  if not k then return nil, kerr end
  local rc = C.gw_ffi_dict_incr(d, k, #k, value, num_p, has_init, initv, ittl, forcible_p, err_pp)
  local forcible = forcible_p[0] ~= 0
  if rc == 0 then
    if init ~= nil then return tonumber(num_p[0]), nil, forcible end
    return tonumber(num_p[0])
  end
  return nil, ffi_string(err_pp[0])
end

--- dict:ttl(key) -> seconds left (0 = never expires), or nil, "not found".
function methods.ttl(self, key)
  local d = check_self(self, "ttl")
  local k, kerr = check_key(key, "ttl")
  if not k then return nil, kerr end
  if C.gw_ffi_dict_ttl(d, k, #k, num_p) ~= 0 then return nil, "not found" end
  return tonumber(num_p[0])
end

--- dict:expire(key, exptime) -> true, or nil, "not found". exptime 0 = never expires.
function methods.expire(self, key, exptime)
  local d = check_self(self, "expire")
  local k, kerr = check_key(key, "expire")
  if exptime == nil then fail("expire", "exptime must be a non-negative number") end
  local ttl = check_ttl(exptime, "expire", "exptime")
  if not k then return nil, kerr end
  if C.gw_ffi_dict_expire(d, k, #k, ttl) ~= 0 then return nil, "not found" end
  return true
end

--- dict:flush_all(): marks every item expired (get_stale still sees them until reused).
function methods.flush_all(self)
  C.gw_ffi_dict_flush_all(check_self(self, "flush_all"))
end

--- dict:flush_expired(max?) -> number of expired items freed (max 0/nil = all).
function methods.flush_expired(self, max)
  local d = check_self(self, "flush_expired")
  if max ~= nil and (type(max) ~= "number" or max < 0) then
    fail("flush_expired", "max must be a non-negative number")
  end
  local n = C.gw_ffi_dict_flush_expired(d, max or 0)
  return n < 0 and 0 or n
end

--- dict:get_keys(max?) -> array of live keys, most recently used first. max defaults to
--- 1024; 0 means all (which holds the dict's lock for the whole walk).
function methods.get_keys(self, max)
  local d = check_self(self, "get_keys")
  if max == nil then
    max = 1024
  elseif type(max) ~= "number" or max < 0 then
    fail("get_keys", "max must be a non-negative number")
  end
  if max > 2147483647 then max = 0 end
  local b, cap = buf, buf_size
  local n
  while true do
    n = C.gw_ffi_dict_get_keys(d, max, b, cap, len_p)
    local need = tonumber(len_p[0])
    if n < 0 then return {} end
    if need <= cap then break end
    b, cap = buffer_for(need)
  end
  local keys, pos = {}, 0
  local p = ffi_cast("const uint8_t *", b)
  for i = 1, n do
    local len = p[pos] + p[pos + 1] * 256
    keys[i] = ffi_string(p + pos + 2, len)
    pos = pos + 2 + len
  end
  return keys
end

--- dict:capacity() -> bytes of shared memory the dict occupies.
function methods.capacity(self)
  return tonumber(C.gw_ffi_dict_capacity(check_self(self, "capacity")))
end

--- dict:free_space() -> bytes currently free in the dict's heap.
function methods.free_space(self)
  return tonumber(C.gw_ffi_dict_free_space(check_self(self, "free_space")))
end

-- The module: gw.shared.NAME / gw.shared[NAME] -> the dict object, or nil when no such
-- dict exists. Found dicts are cached; misses are not (a dict may be created later).
local M = {}
return setmetatable(M, {
  __index = function(t, name)
    if type(name) ~= "string" then return nil end
    local d = C.gw_ffi_dict(name, #name)
    if d == nil then return nil end
    local dict = setmetatable({ _d = d, _name = name }, dict_mt)
    rawset(t, name, dict)
    return dict
  end,
})
