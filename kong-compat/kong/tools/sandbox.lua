-- kong.tools.sandbox (gw kong-compat): untrusted Lua as Kong's `untrusted_lua = "sandbox"` runs
-- it (pre-function, post-function, request-transformer templates): compiled in an environment of
-- its own that reads the safe standard functions, `kong` and `ngx`, and cannot change globals.
--
--   sandbox.sandbox(chunk [, chunkname | { chunkname, env }]) -> compiled function (not run)
--   sandbox.validate_function(chunk, ...) -> the function the chunk returns | false, err
--   sandbox.parse(...) (asserting), sandbox.validate(...) -> true | false, err,
--   sandbox.validate_safe(chunk) (compiles only), sandbox.configuration
local _M = {}

_M.configuration = {
  enabled = true,
  sandbox_enabled = true,
  requires = {},
  environment = {},        -- names of extra globals (Kong's untrusted_lua_sandbox_environment)
}

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

local BASE
local function base()
  if BASE then return BASE end
  BASE = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
    select = select, tonumber = tonumber, tostring = tostring, type = type, unpack = unpack,
    xpcall = xpcall, print = print,
    string = copy(string), table = copy(table), math = copy(math),
    os = { clock = os.clock, date = os.date, difftime = os.difftime, time = os.time },
    kong = require "gw_kong.pdk", ngx = require "gw_kong.ngx",
  }
  BASE._G = BASE
  return BASE
end

local function env_mt()
  return { __index = base(), __newindex = function(_, k) error("cannot set global '" .. tostring(k) .. "' in the sandbox", 2) end }
end

function _M.sandbox(chunk, chunkname_or_options, _, env)
  local chunkname = "=sandbox"
  if type(chunkname_or_options) == "table" then
    chunkname = chunkname_or_options.chunkname or chunkname_or_options.chunk_name or chunkname
    env = env or chunkname_or_options.env
  elseif type(chunkname_or_options) == "string" then
    chunkname = chunkname_or_options
  end
  local fn, err = loadstring(chunk, chunkname)
  if not fn then error(err, 2) end
  local e = {}
  for k, v in pairs(env or {}) do e[k] = v end
  setfenv(fn, setmetatable(e, env_mt()))
  return fn
end
_M.sandbox_lua = _M.sandbox
_M.sandbox_schema = _M.sandbox
_M.sandbox_handler = _M.sandbox

function _M.validate_function(chunk, chunkname_or_options, mode, env)
  local ok, compiled = pcall(_M.sandbox, chunk, chunkname_or_options, mode, env)
  if not ok then return false, "Error parsing function: " .. tostring(compiled) end
  local success, fn = pcall(compiled)
  if not success then return false, fn end
  if type(fn) == "function" then return fn end
  return false, "Bad return value from function, expected function type, got " .. type(fn)
end

function _M.parse(...) return assert(_M.validate_function(...)) end

function _M.validate(...)
  local _, err = _M.validate_function(...)
  if err then return false, err end
  return true
end

function _M.validate_safe(chunk, ...)
  local ok, err = pcall(_M.sandbox, chunk, ...)
  if not ok then return false, "Error parsing function: " .. tostring(err) end
  return true
end

return _M
