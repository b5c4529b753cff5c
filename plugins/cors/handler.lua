-- cors: Cross-Origin Resource Sharing for the routes it is enabled on. The gateway answers a
-- preflight (OPTIONS with Origin and Access-Control-Request-Method) itself with 204, unless
-- `preflight_continue`; on actual requests it adds Access-Control-Allow-Origin,
-- -Allow-Credentials and -Expose-Headers for an allowed origin, and Vary: Origin whenever the
-- answer depends on the origin. A disallowed origin gets no CORS header at all.
local Cors = {
  PRIORITY = 2000,   -- before the auth plugins: a preflight carries no credentials
  VERSION = "1.0.0",
}

local ipairs, tostring, setmetatable = ipairs, tostring, setmetatable
local lower, sub, find, concat = string.lower, string.sub, string.find, table.concat

local regex

-- the origin compared: lowercase, without the scheme's default port (https://A.com:443 is
-- https://a.com)
local function normalize(o)
  o = lower(o)
  if sub(o, -4) == ":443" and sub(o, 1, 8) == "https://" then return sub(o, 1, -5) end
  if sub(o, -3) == ":80" and sub(o, 1, 7) == "http://" then return sub(o, 1, -4) end
  return o
end

-- an origins entry compared exactly (what the schema checks as an origin), not as a pattern
local function is_plain(o)
  return find(o, "^[%w.:/%-]+$") ~= nil or find(o, "^%a[%w.-]*://%[[%x:.]*:[%x:.]*%]:?%d*$") ~= nil
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list or {}) do s[v] = true end
  return s
end

local function joined(list)
  if list and #list > 0 then return concat(list, ",") end
  return nil
end

-- What a conf needs per request, built once per conf table (the conf of a config generation is
-- the same table for every request of its routes).
local compiled = setmetatable({}, { __mode = "k" })

local function compile(conf)
  local c = { exact = {}, any = false }
  local alts = {}
  local origins = conf.origins or {}
  for _, o in ipairs(origins) do
    if o == "*" then c.any = true
    elseif is_plain(o) then c.exact[normalize(o)] = true
    else alts[#alts + 1] = "(?:" .. o .. ")" end
  end
  if #origins == 0 then c.any = true end
  -- every pattern in one regex (one entry of gw.regex's compiled-pattern cache), anchored at
  -- both ends, case-insensitive
  if not c.any and #alts > 0 then c.pattern = "(?i)^(?:" .. concat(alts, "|") .. ")\\z" end
  -- "*" without credentials: Access-Control-Allow-Origin: * on every response, whatever the
  -- origin; otherwise the answer depends on Origin
  c.star = c.any and not conf.credentials
  c.vary = not c.star
  c.methods = set_of(conf.methods)
  c.allow_methods = joined(conf.methods)
  c.allow_headers = joined(conf.headers)
  c.expose_headers = joined(conf.exposed_headers)
  c.max_age = conf.max_age and tostring(conf.max_age)
  if c.allow_headers then
    c.preflight_vary = c.vary and "Origin" or nil
  else
    c.preflight_vary = c.vary and "Origin, Access-Control-Request-Headers" or "Access-Control-Request-Headers"
  end
  compiled[conf] = c
  return c
end

local function allowed(c, origin)
  if c.any or c.exact[origin] then return true end
  local n = normalize(origin)
  if c.exact[n] then return true end
  if not c.pattern then return false end
  regex = regex or require "gw.regex"
  local ok, err = regex.match(c.pattern, n)
  if ok == nil then
    gw.log.err("origins pattern does not compile: ", err)
    return false
  end
  return ok
end

local function is_preflight()
  return gw.request.get_method() == "OPTIONS" and gw.request.get_header("Origin") ~= nil
    and gw.request.get_header("Access-Control-Request-Method") ~= nil
end

-- adds `Origin` to the response's Vary unless it is there already (or Vary is *): an upstream's
-- Vary is kept, Origin goes on a line of its own
local function vary_origin()
  local v = gw.response.get_header("Vary")
  if not v then return gw.response.set_header("Vary", "Origin") end
  v = lower(v)
  if v == "*" then return end
  for token in v:gmatch("[^,%s]+") do
    if token == "origin" or token == "*" then return end
  end
  gw.response.add_header("Vary", "Origin")
end

local OWNED = { "Access-Control-Allow-Origin", "Access-Control-Allow-Credentials",
                "Access-Control-Expose-Headers", "Access-Control-Allow-Methods",
                "Access-Control-Allow-Headers", "Access-Control-Max-Age",
                "Access-Control-Allow-Private-Network" }

function Cors:access(conf)
  if not is_preflight() then return end
  if conf.preflight_continue then return end   -- the upstream answers; header_filter adds nothing
  local c = compiled[conf] or compile(conf)
  local set = gw.response.set_header
  if c.preflight_vary then set("Vary", c.preflight_vary) end
  local origin = gw.request.get_header("Origin")
  -- a disallowed origin, or a method not allowed: 204 without any Access-Control-* header, so
  -- the browser refuses the actual request
  if allowed(c, origin) and c.methods[gw.request.get_header("Access-Control-Request-Method")] then
    set("Access-Control-Allow-Origin", c.star and "*" or origin)
    if conf.credentials then set("Access-Control-Allow-Credentials", "true") end
    set("Access-Control-Allow-Methods", c.allow_methods)
    local allow_headers = c.allow_headers or gw.request.get_header("Access-Control-Request-Headers")
    if allow_headers then set("Access-Control-Allow-Headers", allow_headers) end
    if c.max_age then set("Access-Control-Max-Age", c.max_age) end
    if conf.private_network and gw.request.get_header("Access-Control-Request-Private-Network") == "true" then
      set("Access-Control-Allow-Private-Network", "true")
    end
  end
  return gw.response.exit(204)
end

function Cors:header_filter(conf)
  if is_preflight() then return end   -- answered in access, or by the upstream (preflight_continue)
  local c = compiled[conf] or compile(conf)
  local set = gw.response.set_header
  if c.star then
    set("Access-Control-Allow-Origin", "*")
    gw.response.clear_header("Access-Control-Allow-Credentials")
    if c.expose_headers then set("Access-Control-Expose-Headers", c.expose_headers) end
    return
  end
  vary_origin()
  local origin = gw.request.get_header("Origin")
  if not origin then return end   -- not a CORS request: nothing else changes
  if allowed(c, origin) then
    set("Access-Control-Allow-Origin", origin)
    if conf.credentials then set("Access-Control-Allow-Credentials", "true")
    else gw.response.clear_header("Access-Control-Allow-Credentials") end
    if c.expose_headers then set("Access-Control-Expose-Headers", c.expose_headers) end
  else
    local clear = gw.response.clear_header
    for _, name in ipairs(OWNED) do clear(name) end
  end
end

Cors._normalize = normalize
Cors._compile = compile

return Cors
