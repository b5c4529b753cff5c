-- gw_kong — running Kong plugins on gw. lua/gw/plugins.lua calls this for a plugin found in a
-- `gw.kong_plugins_path` directory (laid out as DIR/kong/plugins/NAME/{handler,schema}.lua).
--
--   gw_kong.kong, gw_kong.ngx        the `kong` (PDK) and `ngx` tables Kong plugins see
--   gw_kong.plugin_dir(dir)          -> name, root when dir is ROOT/kong/plugins/NAME
--   gw_kong.begin(name, root)        before loading a plugin: its root joins the module search,
--                                    its kong.plugins.NAME.* modules are read anew
--   gw_kong.env()                    a fresh environment for a Kong plugin file: globals fall
--                                    through to { kong, ngx, require = gw_kong.require } then _G
--   gw_kong.require(name)            `require` inside Kong plugin files (below)
--   gw_kong.wrap(handler, name)      the gw handler running a Kong handler
--   gw_kong.schema(s)                a Kong plugin schema in gw's schema format (gw_kong.schema)
--
-- The `kong` and `ngx` globals exist only in Kong plugins' environments: gw plugins and the rest
-- of the process do not see them.
local ngx = require "gw_kong.ngx"
local kong = require "gw_kong.pdk"

local type, tostring, ipairs, pairs, rawget, setmetatable = type, tostring, ipairs, pairs, rawget, setmetatable
local sub, find = string.sub, string.find
local co_running = coroutine.running

local M = { kong = kong, ngx = ngx }

---------------------------------------------------------------------------------------------
-- module search: kong.plugins.* from the plugin roots, with the Kong environment

local roots, root_set = {}, {}
local loaded = {}          -- module name -> value, for modules loaded from the roots

-- modules Kong plugins require that must not be the system's (they need OpenResty) or that
-- need an OpenResty flavour
local REDIRECT = {
  cjson = function() return require("gw_kong.cjson") end,
  ["cjson.safe"] = function() return require("gw_kong.cjson").safe end,
  ["resty.core"] = function() return {} end,
  ["resty.core.base"] = function() return { get_request = function() return rawget(_G, "gw") and true end } end,
}

-- database drivers older Kong plugins require at load time for their "cluster" policies: gw has
-- no database, so a missing driver is a table whose functions fail when called
local DB_DRIVERS = { cassandra = true, pgmoon = true, ["resty.mysql"] = true }
local function missing_driver(name)
  return setmetatable({}, { __index = function()
    return function() return nil, name .. " is not available in gw (no database)" end
  end })
end

function M.plugin_dir(dir)
  dir = tostring(dir)
  local root, name = dir:match("^(.*)/kong/plugins/([^/]+)/?$")
  if not name then
    name = dir:match("^kong/plugins/([^/]+)/?$")
    root = "."
  end
  if not name then return nil end
  if root == "" then root = "/" end
  return name, root
end

function M.begin(name, root)
  if root and not root_set[root] then
    root_set[root] = true
    roots[#roots + 1] = root
  end
  local prefix = "kong.plugins." .. name .. "."
  for k in pairs(loaded) do
    if sub(k, 1, #prefix) == prefix then loaded[k] = nil end
  end
end

local function exists(path)
  local f = io.open(path, "r")
  if not f then return false end
  f:close()
  return true
end

local function search(name)
  local rel = name:gsub("%.", "/")
  for _, root in ipairs(roots) do
    local p = root .. "/" .. rel .. ".lua"
    if exists(p) then return p end
    p = root .. "/" .. rel .. "/init.lua"
    if exists(p) then return p end
  end
end

local ENV_BASE
local LOADING = {}

--- `require` as Kong plugin files see it: kong.plugins.* first from the plugin roots (with the
-- Kong environment), then everything through the process's require (kong-compat/ comes first on
-- package.path, so kong.tools.*, resty.* and the rest are gw's versions). Other modules a plugin
-- ships under its root are found there when the process has no module of that name (never a
-- kong.* module: a Kong checkout's own kong/tools/*.lua need the real Kong).
function M.require(name)
  local r = REDIRECT[name]
  if r then return r() end
  local v = loaded[name]
  if v == LOADING then error("loop or previous error loading module '" .. name .. "'", 2) end
  if v ~= nil then return v end
  local path = sub(name, 1, 13) == "kong.plugins." and search(name)
  if not path then
    local ok, res = pcall(require, name)
    if ok then return res end
    if not find(tostring(res), "module '" .. name .. "' not found", 1, true) then error(res, 2) end
    -- a library the plugin ships at its root; never Kong's own kong.* modules of a checkout
    path = sub(name, 1, 5) ~= "kong." and search(name)
    if not path then
      if DB_DRIVERS[name] then return missing_driver(name) end
      error(res, 2)
    end
  end
  local chunk, err = loadfile(path)
  if not chunk then error(err, 2) end
  setfenv(chunk, M.env())
  loaded[name] = LOADING
  local ok, res = pcall(chunk, name, path)
  if not ok then
    loaded[name] = nil
    error(res, 2)
  end
  if res == nil then res = true end
  loaded[name] = res
  return res
end

-- _KONG: the global Kong's globalpatches defines (older plugins read _KONG._NAME)
local meta = require "kong.meta"
ENV_BASE = setmetatable({ kong = kong, ngx = ngx, require = M.require,
                          _KONG = { _NAME = meta._NAME, _VERSION = meta._VERSION } }, { __index = _G })

function M.env()
  return setmetatable({}, { __index = ENV_BASE })
end

---------------------------------------------------------------------------------------------
-- the handler wrapper

local PHASES = { "init_worker", "rewrite", "access", "balancer", "header_filter", "body_filter", "log" }

-- Kong 2.x plugins extend kong.plugins.base_plugin, whose methods only log: they do not count as
-- phases the plugin implements (a body_filter that is not the plugin's own would make gw gather
-- every response body)
local function is_base_default(fn)
  local info = debug.getinfo(fn, "S")
  return info ~= nil and find(info.source, "kong/plugins/base_plugin%.lua$") ~= nil
end

local function method(h, name)
  local fn = h[name]
  if type(fn) ~= "function" or is_base_default(fn) then return nil end
  return fn
end

local function is_class(h)
  local mt = getmetatable(h)
  return type(h.extend) == "function" and type(h.new) == "function" and mt ~= nil and mt.__call ~= nil
end

local current_conf = kong._current_conf

local function runner(h, fn, ph)
  local pre = ph == "rewrite" or ph == "access"
  local bf = ph == "body_filter"
  return function(_, conf)
    local co = co_running()
    if co then current_conf[co] = conf end
    if bf then
      -- kong.response.exit in header_filter left a body to write
      local st = ngx._peek_state()
      if st and st.exit_body then
        local b = st.exit_body
        st.exit_body = nil
        return rawget(_G, "gw").response.set_raw_body(b)
      end
    end
    -- no pcall here: ngx.exit(ngx.OK) raises gw._END_HANDLER, which ends this handler and lets
    -- the phase go on (and a pcall frame would keep LuaJIT from compiling the handler's traces)
    fn(h, conf)
    if pre then
      -- ngx.say / ngx.print without ngx.exit: what was printed is the response
      local st = ngx._peek_state()
      if st and st.out then return ngx.exit(ngx.HTTP_OK) end
    end
  end
end

-- every conf of this plugin in the running generation (Kong's handler:configure(configs))
local function confs_of(name)
  local g = rawget(_G, "gw")
  local c = g and g._compiled and g._compiled()
  if not c then return nil end
  local out, seen = {}, {}
  local function visit(chain)
    for _, p in ipairs(chain or {}) do
      if p.name == name and not seen[p.conf] then
        seen[p.conf] = true
        out[#out + 1] = p.conf
      end
    end
  end
  visit(c.global_plugins)
  for _, r in ipairs(c.routes or {}) do visit(r.plugins) end
  if #out == 0 then return nil end
  return out
end

-- the gw.shared dicts Kong's own nginx template declares and plugins use by name
local DEFAULT_DICTS = { kong = "1m", kong_locks = "1m", kong_rate_limiting_counters = "4m" }

function M.wrap(h, name)
  if type(h) ~= "table" then return h end
  if is_class(h) then h = h() end
  local w = { PRIORITY = h.PRIORITY, VERSION = h.VERSION, kong_handler = h, TRACE_PHASES = h.TRACE_PHASES }
  for _, ph in ipairs(PHASES) do
    local fn = method(h, ph)
    if ph == "body_filter" and not fn then fn = method(h, "response") end
    if fn then w[ph] = runner(h, fn, ph) end
  end
  local init, configure = method(h, "init_worker"), method(h, "configure")
  if init or configure then
    w.init_worker = function()
      if init then init(h) end
      if configure then configure(h, confs_of(name)) end
    end
  end
  w.shared_dicts = function(_, conf)
    local own = type(h.shared_dicts) == "function" and h:shared_dicts(conf)
    if type(own) == "table" then
      for k, v in pairs(DEFAULT_DICTS) do if own[k] == nil then own[k] = v end end
      return own
    end
    return DEFAULT_DICTS
  end
  if type(h.phases_for) == "function" then
    w.phases_for = function(_, conf) return h:phases_for(conf) end
  end
  return w
end

function M.schema(s) return require("gw_kong.schema").translate(s) end

return M
