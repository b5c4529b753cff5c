-- resty.redis (gw kong-compat): lua-resty-redis's API over gw.redis (non-blocking, pooled per
-- worker by host, port, db and password).
--
--   local red = redis:new(); red:set_timeout(ms); red:connect(host, port [, opts])
--   red:auth([user,] password), red:select(db)   (the pooled connection is set up with them)
--   red:get(k), red:set(k, v), red:eval(script, nkeys, ...), any command as a method
--   red:init_pipeline(), ..., red:commit_pipeline() -> results, red:cancel_pipeline()
--   red:set_keepalive(), red:close(), red:get_reused_times() (always 0: the pool is gw.redis's)
-- A nil reply is ngx.null (cjson.null). Errors: nil, "ERR ..." or nil, "connection refused"...
-- Not supported: TLS (opts.ssl), unix sockets, subscribe.
local json = require "gw.json"

local type, tostring, select, unpack = type, tostring, select, unpack
local upper = string.upper

local NULL = json.null

local _M = { _VERSION = "0.31" }
local mt = {}

local function gwredis()
  local g = rawget(_G, "gw")
  if not g then error("resty.redis needs a gw worker", 3) end
  return g.redis
end

function _M.new(_)
  return setmetatable({ timeout = 1000 }, mt)
end

local methods = {}

function methods:set_timeout(ms) self.timeout = ms or 1000 end
function methods:set_timeouts(connect, send, read)
  self.connect_timeout = connect
  self.timeout = math.max(send or 1000, read or 1000)
end

local function open(self)
  local client, err = gwredis().connect{
    host = self.host, port = self.port, password = self.password, db = self.db or 0,
    timeout = self.timeout or 1000, connect_timeout = self.connect_timeout,
  }
  if not client then return nil, err end
  self.client = client
  return true
end

function methods:connect(host, port, opts)
  if type(host) ~= "string" then return nil, "host must be a string" end
  if host:sub(1, 5) == "unix:" then return nil, "unix domain sockets are not supported by gw" end
  if type(opts) == "table" and opts.ssl then return nil, "redis over TLS is not supported by gw" end
  self.host, self.port = host, tonumber(port) or 6379
  self.password, self.db = nil, 0
  return open(self)
end

function methods:get_reused_times() return 0 end
function methods:set_keepalive() self.client = nil return 1 end
function methods:close() self.client = nil return 1 end

function methods:auth(user, password)
  if password == nil then password = user end
  self.password = password
  local ok, err = open(self)
  if not ok then return nil, err end
  return "OK"
end

function methods:select(db)
  self.db = tonumber(db) or 0
  local ok, err = open(self)
  if not ok then return nil, err end
  return "OK"
end

local function fix(v)
  if v == nil then return NULL end
  if type(v) == "table" then
    for i = 1, #v do if v[i] == gwredis().null then v[i] = NULL end end
  end
  return v
end

local function flatten(cmd, ...)
  local args = { cmd }
  local n = select("#", ...)
  for i = 1, n do
    local a = select(i, ...)
    if type(a) == "table" then          -- hmset(key, { field = value })
      for k, v in pairs(a) do args[#args + 1] = k args[#args + 1] = v end
    else
      args[#args + 1] = a
    end
  end
  return args
end

local function command(self, cmd, ...)
  local args = flatten(upper(cmd), ...)
  if self.pipeline then
    self.pipeline[#self.pipeline + 1] = args
    return "OK"
  end
  if not self.client then return nil, "not initialized" end
  local v, err = self.client:command(unpack(args))
  if err then return nil, err end
  return fix(v)
end

function methods:init_pipeline() self.pipeline = {} end
function methods:cancel_pipeline() self.pipeline = nil end
function methods:commit_pipeline()
  local cmds = self.pipeline
  self.pipeline = nil
  if not cmds or #cmds == 0 then return nil, "no pipeline" end
  if not self.client then return nil, "not initialized" end
  local res, errs = self.client:pipeline(cmds)
  if not res then return nil, errs end
  local out = {}
  for i = 1, #cmds do
    if errs and errs[i] then out[i] = { false, errs[i] }
    else out[i] = fix(res[i] ~= gwredis().null and res[i] or nil) end
  end
  return out
end

function methods:array_to_hash(t)
  local h = {}
  for i = 1, #t, 2 do h[t[i]] = t[i + 1] end
  return h
end

mt.__index = function(_, name)
  local m = methods[name]
  if m then return m end
  return function(self, ...) return command(self, name, ...) end
end

return _M
