--- gw.redis: a non-blocking Redis client on the worker's event loop (C half: runtime/lua/redis.c).
--
--   local r, err = gw.redis.connect{ host = "127.0.0.1", port = 6379, password = nil, db = 0,
--                                    timeout = 1000 }
--   local v, err, kind = r:command("GET", "k")       -- also r:call(...)
--   local res, errs = r:pipeline({ {"INCR", "a"}, {"EXPIRE", "a", 60} })
--   local v, err = r:eval_script(script_or_sha, {keys...}, {args...})
--
-- One connection per (host, port, db, password) per worker, shared by every caller (Redis answers
-- in order, so calls pipeline on it). Replies: bulk and status strings as Lua strings, integers
-- as numbers, arrays as tables (a nil element is gw.redis.null), a nil reply as nil with no error.
-- Failures are nil, message, kind: kind "redis" for an error reply of the server ("ERR ...",
-- "WRONGTYPE ..."), "io" for the call itself (connection refused, timeout, closed). Misuse
-- (wrong argument types) raises.
local C = require "gw.redis_c"

local M = { null = C.null }
local Client = {}
Client.__index = Client

local function argerr(fn, msg)
  error("gw.redis." .. fn .. ": " .. msg, 3)
end

local function check_args(fn, cmd)
  if type(cmd) ~= "table" or #cmd == 0 then argerr(fn, "a command is a non-empty list of arguments") end
  local out = {}
  for i = 1, #cmd do
    local a = cmd[i]
    local t = type(a)
    if t == "number" then a = (a == math.floor(a) and a >= -2^53 and a <= 2^53) and string.format("%d", a) or tostring(a)
    elseif t ~= "string" then argerr(fn, "argument " .. i .. " must be a string or a number, got " .. t) end
    out[i] = a
  end
  return out
end

-- rewrite, access, log and timer: where a coroutine may be suspended (as gw.sleep, gw.http)
local gw_
local function check_phase(fname)
  gw_ = gw_ or require "gw"
  gw_._check_phase(fname, gw_._YIELDABLE)
end

local function run(self, cmds)
  check_phase("gw.redis")
  local op = C.start(self.host, self.port, self.password, self.db, cmds, self.timeout, self.connect_timeout)
  C.wait(op)
  return C.result(op)
end

--- connect{host, port, password, db, timeout} -> client | nil, err
function M.connect(opts)
  if type(opts) ~= "table" then argerr("connect", "expects a table of options") end
  local host = opts.host or "127.0.0.1"
  local port = opts.port or 6379
  local db = opts.db or opts.database or 0
  local timeout = opts.timeout or 1000
  if type(host) ~= "string" or host == "" then argerr("connect", "host must be a non-empty string") end
  if type(port) ~= "number" or port < 1 or port > 65535 or port % 1 ~= 0 then argerr("connect", "port must be an integer 1-65535") end
  if type(db) ~= "number" or db < 0 or db % 1 ~= 0 then argerr("connect", "db must be an integer >= 0") end
  if type(timeout) ~= "number" or timeout <= 0 then argerr("connect", "timeout must be a positive number of milliseconds") end
  local ct = opts.connect_timeout or timeout
  if type(ct) ~= "number" or ct <= 0 then argerr("connect", "connect_timeout must be a positive number of milliseconds") end
  if opts.password ~= nil and (type(opts.password) ~= "string" or opts.password == "") then
    argerr("connect", "password must be a non-empty string")
  end
  local self = setmetatable({ host = host, port = port, db = db, password = opts.password,
                              timeout = math.ceil(timeout), connect_timeout = math.ceil(ct) }, Client)
  -- sets up the connection (AUTH, SELECT) when there is none yet
  local res, err = run(self, {})
  if not res then return nil, err, "io" end
  return self
end

--- r:command(name, args...) -> reply | nil, err, kind
function Client:command(...)
  local cmd = check_args("command", { ... })
  local res, errs = run(self, { cmd })
  if not res then return nil, errs, "io" end
  if errs[1] then return nil, errs[1], "redis" end
  local v = res[1]
  if v == C.null then return nil end
  return v
end
Client.call = Client.command

--- r:pipeline({{cmd...}, ...}) -> results, errs | nil, err, "io"
-- results[i] is the i-th reply (gw.redis.null for nil or an error reply), errs[i] the error
-- reply's message or false.
function Client:pipeline(cmds)
  if type(cmds) ~= "table" or #cmds == 0 then argerr("pipeline", "expects a non-empty list of commands") end
  local list = {}
  for i = 1, #cmds do list[i] = check_args("pipeline", cmds[i]) end
  local res, errs = run(self, list)
  if not res then return nil, errs, "io" end
  return res, errs
end

local function is_sha(s)
  return #s == 40 and s:match("^%x+$") ~= nil
end

--- r:eval_script(script_or_sha, keys, args) -> reply | nil, err, kind
-- EVALSHA first; on NOSCRIPT the script itself is sent with EVAL (which also caches it).
function Client:eval_script(script, keys, args)
  if type(script) ~= "string" or script == "" then argerr("eval_script", "the script (or its SHA1) must be a non-empty string") end
  keys = keys or {}
  args = args or {}
  if type(keys) ~= "table" or type(args) ~= "table" then argerr("eval_script", "keys and args must be lists") end
  local sha = is_sha(script) and script:lower() or C.sha1(script)
  local cmd = { "EVALSHA", sha, #keys }
  for i = 1, #keys do cmd[#cmd + 1] = keys[i] end
  for i = 1, #args do cmd[#cmd + 1] = args[i] end
  local v, err, kind = self:command(unpack(cmd))
  if kind == "redis" and err:sub(1, 8) == "NOSCRIPT" and not is_sha(script) then
    cmd[1], cmd[2] = "EVAL", script
    return self:command(unpack(cmd))
  end
  return v, err, kind
end

--- gw.redis.sha1(script) -> hex SHA1 (the EVALSHA name of a script)
M.sha1 = C.sha1

--- Number of live connections of this process (for specs).
M.connections = C.conns

return M
