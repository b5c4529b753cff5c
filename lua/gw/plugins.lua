-- gw.plugins — finding and loading plugins: DIR/NAME/handler.lua and DIR/NAME/schema.lua.
--
--   plugins.load(name [, dirs]) -> { name, handler, schema, priority, phases = {access = true, ...},
--                                    version, dir } | nil, "FILE:LINE: message"
--   plugins.available([dirs])   -> sorted list of plugin names found in dirs
--   plugins.default_dirs([extra [, kong_extra]]) -> { K .. "/kong/plugins" for K in kong_extra...,
--                                    GW_HOME .. "/plugins", extra... }
--
-- A Kong-style schema (fields = { {protocols = ...}, {config = {type = "record", ...}} }) is
-- unwrapped to the config record's fields (the original stays in schema.kong_schema).
--
-- A plugin in a Kong plugin root (ROOT/kong/plugins/NAME, from gw.kong_plugins_path) is a Kong
-- plugin: kong-compat/gw_kong gives its files `kong` and `ngx`, wraps its handler and translates
-- its schema (docs/kong-compat.md).
--
-- Files are run with loadfile in a fresh environment (globals read through to _G, so `require`
-- works as usual) and never through package.loaded: a reload always sees the edited code.
local schema = require("gw.schema")

local M = {}

M.PHASES = { "init_worker", "rewrite", "access", "balancer", "header_filter", "body_filter", "log" }

function M.default_dirs(extra, kong_extra)
  local home = rawget(_G, "GW_HOME") or os.getenv("GW_HOME") or "."
  local dirs = {}
  -- Kong plugin roots (gw.kong_plugins_path) come first: a Kong plugin named like a bundled gw
  -- plugin is the one the operator asked for
  for _, d in ipairs(kong_extra or {}) do dirs[#dirs + 1] = d .. "/kong/plugins" end
  dirs[#dirs + 1] = home .. "/plugins"
  for _, d in ipairs(extra or {}) do dirs[#dirs + 1] = d end
  return dirs
end

-- A plugin directory ROOT/kong/plugins/NAME holds a Kong plugin: it is run by kong-compat/gw_kong
-- (the `kong` and `ngx` globals in its files' environment, a wrapper handler, Kong's schema DSL).
local function kong_compat(dir)
  if not (dir:find("/kong/plugins/[^/]+$") or dir:find("^kong/plugins/[^/]+$")) then return nil end
  local compat = require("gw_kong")
  local name, root = compat.plugin_dir(dir)
  compat.begin(name, root)
  return compat
end

local function exists(path)
  local f = io.open(path, "r")
  if not f then return false end
  f:close()
  return true
end

local function read_lines(path)
  local f = io.open(path, "r")
  if not f then return {} end
  local lines = {}
  for line in f:lines() do lines[#lines + 1] = line end
  f:close()
  return lines
end

-- The line a structural complaint is best attached to: where `word = ...` is written, else the
-- file's last `return`, else 1.
local function line_of(path, word)
  local lines = read_lines(path)
  if word then
    local pat = "%f[%w_]" .. word:gsub("%W", "%%%0") .. "%f[^%w_]%s*="
    for i, l in ipairs(lines) do
      if l:find(pat) then return i end
    end
  end
  for i = #lines, 1, -1 do
    if lines[i]:find("^%s*return%f[^%w_]") then return i end
  end
  return 1
end

-- Gives a runtime error raised while running a plugin file the position inside that file.
local function locate(err, path)
  local msg = tostring(err)
  if msg:sub(1, #path + 1) == path .. ":" then return msg end
  local first
  for level = 2, 64 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if info.source == "@" .. path and (info.currentline or 0) > 0 then
      return path .. ":" .. info.currentline .. ": " .. msg
    end
    if not first and info.what ~= "C" and (info.currentline or 0) > 0 then
      first = info.short_src .. ":" .. info.currentline
    end
  end
  return (first or (path .. ":1")) .. ": " .. msg
end

local function run_file(path, env)
  local chunk, err = loadfile(path)
  if not chunk then return nil, err end
  env = env or setmetatable({}, { __index = _G })
  setfenv(chunk, env)
  local ok, res = xpcall(chunk, function(e) return locate(e, path) end)
  if not ok then return nil, res end
  return res
end

local function valid_name(name)
  return type(name) == "string" and name:find("^[%w][%w_%-]*$") ~= nil
end

local function find_dir(name, dirs)
  for _, d in ipairs(dirs) do
    local dir = d .. "/" .. name
    if exists(dir .. "/handler.lua") then return dir end
  end
end

-- The first (deepest) plugin field name mentioned in a schema error path: the word to look for.
local SCHEMA_WORDS = { fields = true, elements = true, keys = true, values = true, type = true,
                       default = true, between = true, one_of = true, match = true }
local function path_word(path)
  local parts = {}
  for part in tostring(path):gmatch("[^%.%[%]]+") do
    if not part:find("^%d+$") then parts[#parts + 1] = part end
  end
  for i = #parts, 1, -1 do
    if not SCHEMA_WORDS[parts[i]] then return parts[i] end
  end
  return parts[#parts]
end

-- A Kong schema wraps the plugin's fields in a `config` record next to entity fields
-- (protocols, consumer, ...): unwrap it so gw validates entries' `config` against it. Entity
-- fields that are typedefs missing outside Kong leave empty items: those are skipped too.
local KONG_ENTITY_FIELDS = { protocols = true, consumer = true, service = true, route = true,
                             consumer_group = true }
local function unwrap_kong(s)
  if type(s.fields) ~= "table" then return s end
  local config
  for _, item in ipairs(s.fields) do
    if type(item) ~= "table" then return s end
    local fname, f = next(item)
    if fname == "config" and type(f) == "table" and f.type == "record" then
      config = f
    elseif fname ~= nil and not KONG_ENTITY_FIELDS[fname] then
      return s
    end
  end
  if not config then return s end
  return { name = s.name, fields = config.fields, custom_validator = config.custom_validator,
           kong_schema = s }
end

local function load_schema(name, dir, compat)
  local file = dir .. "/schema.lua"
  if not exists(file) then return { name = name, fields = {} } end
  local s, err = run_file(file, compat and compat.env())
  if err then return nil, err end
  if type(s) ~= "table" then
    return nil, file .. ":" .. line_of(file) .. ": schema.lua must return a table"
  end
  if compat then s = compat.schema(s) end
  s = unwrap_kong(s)
  local ok, errs = schema.check_schema(s)
  if not ok then
    local e = errs[1]
    local more = #errs > 1 and (" (and " .. (#errs - 1) .. " more)") or ""
    return nil, file .. ":" .. line_of(file, path_word(e.path)) .. ": invalid schema: " ..
                (e.path ~= "" and (e.path .. ": ") or "") .. e.msg .. more
  end
  return s
end

function M.load(name, dirs)
  if not valid_name(name) then
    return nil, "invalid plugin name " .. (type(name) == "string" and ('"' .. name .. '"') or tostring(name))
  end
  dirs = dirs or M.default_dirs()
  local dir = find_dir(name, dirs)
  if not dir then
    return nil, 'plugin "' .. name .. '" not found (searched ' .. table.concat(dirs, ", ") .. ")"
  end
  local file = dir .. "/handler.lua"
  local compat = kong_compat(dir)
  local handler, err = run_file(file, compat and compat.env())
  if err then return nil, err end
  if type(handler) ~= "table" then
    return nil, file .. ":" .. line_of(file) .. ": handler.lua must return a table"
  end
  if compat then handler = compat.wrap(handler, name) end
  local priority = handler.PRIORITY
  if priority == nil then
    priority = 0
  elseif type(priority) ~= "number" then
    return nil, file .. ":" .. line_of(file, "PRIORITY") .. ": PRIORITY must be a number"
  end
  local phases, any = {}, false
  for _, ph in ipairs(M.PHASES) do
    local fn = handler[ph]
    if fn ~= nil then
      if type(fn) ~= "function" then
        return nil, file .. ":" .. line_of(file, ph) .. ": " .. ph .. " must be a function"
      end
      phases[ph] = true
      any = true
    end
  end
  if not any then
    return nil, file .. ":" .. line_of(file) .. ": the handler implements no phase (" ..
                table.concat(M.PHASES, ", ") .. ")"
  end
  local s, serr = load_schema(name, dir, compat)
  if not s then return nil, serr end
  return {
    name = name,
    handler = handler,
    schema = s,
    priority = priority,
    phases = phases,
    version = handler.VERSION,
    dir = dir,
  }
end

local function list_dir(dir)
  local names = {}
  local ok, lfs = pcall(require, "lfs")
  if ok and lfs.attributes(dir, "mode") == "directory" then
    for entry in lfs.dir(dir) do
      if entry ~= "." and entry ~= ".." then names[#names + 1] = entry end
    end
  elseif not ok then
    local p = io.popen('ls -1 "' .. dir:gsub('"', '\\"') .. '" 2>/dev/null')
    if p then
      for entry in p:lines() do names[#names + 1] = entry end
      p:close()
    end
  end
  return names
end

function M.available(dirs)
  dirs = dirs or M.default_dirs()
  local seen, out = {}, {}
  for _, d in ipairs(dirs) do
    for _, name in ipairs(list_dir(d)) do
      if not seen[name] and valid_name(name) and exists(d .. "/" .. name .. "/handler.lua") then
        seen[name] = true
        out[#out + 1] = name
      end
    end
  end
  table.sort(out)
  return out
end

return M
