--- gw.admin — the admin API, served by the master process (runtime/master.c calls handle()).
-- Every endpoint reads the running generation; POST /config and POST /reload replace it
-- atomically through the master (a new worker set, the old one drained) or leave it untouched.
local gwjson = require "gw.json"
local config = require "gw.config"
local master = require "gw.master"
local yaml = require "gw.yaml"

local M = {}

local function json(status, v)
  local body = assert(gwjson.encode(v))
  return status, body, "application/json"
end

local function wants_yaml(req)
  local a = req.headers.accept or ""
  return a:find("yaml", 1, true) ~= nil
end

local function array(t)
  return gwjson.array(t)
end

-- plugin chain entries without the handler functions
local function plugin_view(p)
  return { name = p.name, priority = p.priority, config = p.conf }
end

local function views(c)
  local services, routes, plugins = {}, {}, {}
  for i, s in ipairs(c.services or {}) do
    services[#services + 1] = {
      name = s.name, protocol = s.protocol, host = s.host, port = s.port, path = s.path,
      connect_timeout = s.connect_timeout, write_timeout = s.write_timeout, read_timeout = s.read_timeout,
      retries = s.retries, upstream = s.upstream,
    }
  end
  for _, r in ipairs(c.routes or {}) do
    local svc = r.service and c.services[r.service]
    local chain = {}
    for _, p in ipairs(r.plugins or {}) do chain[#chain + 1] = plugin_view(p) end
    routes[#routes + 1] = {
      name = r.name, service = svc and svc.name, paths = array(r.paths or {}), hosts = array(r.hosts or {}),
      methods = array(r.methods or {}), headers = r.headers, strip_path = r.strip_path,
      preserve_host = r.preserve_host, plugins = array(chain),
    }
  end
  for _, p in ipairs(c.global_plugins or {}) do plugins[#plugins + 1] = plugin_view(p) end
  return array(services), array(routes), array(plugins)
end

local function authorized(req, c)
  local token = c.gw and c.gw.admin_token
  if not token then return true end
  local h = req.headers.authorization or ""
  return h == "Bearer " .. token
end

local function apply_text(text, name)
  local compiled, errs = config.load_string(text, name)
  if not compiled then return json(400, { message = "invalid config", errors = errs }) end
  local current = master.current()
  if current and current.hash == compiled.hash then
    return json(200, { message = "unchanged", hash = compiled.hash })
  end
  local ok, err = master.apply(compiled)
  if not ok then return json(400, { message = "invalid config", errors = { err } }) end
  return json(201, { message = "applied", hash = compiled.hash, generation = master.status().generation })
end

-- DELETE /proxy-cache[/KEY]: the gw.shared dicts of the generation's proxy-cache plugins
-- (strategy memory), shared memory the master reaches too. Entries are "proxy-cache:" .. KEY.
local function purge_proxy_cache(c, key)
  local dicts, seen = {}, {}
  local function collect(chain)
    for _, p in ipairs(chain or {}) do
      local d = p.name == "proxy-cache" and p.conf and p.conf.strategy == "memory" and p.conf.dict
      if d and not seen[d] then seen[d] = true; dicts[#dicts + 1] = d end
    end
  end
  for _, r in ipairs(c.routes or {}) do collect(r.plugins) end
  collect(c.global_plugins)
  local shared = require "gw.shared"
  local found = 0
  for _, name in ipairs(dicts) do
    local dict = shared[name]
    if dict then
      if key then
        if dict:get_stale("proxy-cache:" .. key) ~= nil then found = found + 1 end
        dict:delete("proxy-cache:" .. key)
      else
        for _, k in ipairs(dict:get_keys(0)) do
          if k:sub(1, 12) == "proxy-cache:" then dict:delete(k); found = found + 1 end
        end
        dict:flush_expired(0)
      end
    end
  end
  if key and found == 0 then return json(404, { message = "no cache entry '" .. key .. "'" }) end
  return json(200, { message = "purged", entries = found, dicts = array(dicts) })
end

--- The circuit-breaker plugin's circuits, read from the gw.shared dicts its configs name
-- (the dicts live in shared memory created before the workers were forked, so the master sees
-- what the workers wrote). One entry per circuit: name, dict, state, generation, since and the
-- current generation's counts.
function M.circuit_breakers(c)
  local dicts = {}
  local function scan(list)
    for _, p in ipairs(list or {}) do
      if p.name == "circuit-breaker" then dicts[(p.conf and p.conf.dict) or "circuit_breaker"] = true end
    end
  end
  scan(c.global_plugins)
  for _, r in ipairs(c.routes or {}) do scan(r.plugins) end
  for _, s in ipairs(c.services or {}) do scan(s.plugins) end
  local ok, shared = pcall(require, "gw.shared")
  local out = {}
  if not ok then return out end
  local names = {}
  for dname in pairs(dicts) do names[#names + 1] = dname end
  table.sort(names)
  for _, dname in ipairs(names) do
    local d = shared[dname]
    local keys = d and d:get_keys(0) or {}
    table.sort(keys)
    for _, k in ipairs(keys) do
      -- a circuit's state is the string "STATE GEN SINCE" under cb:NAME (NAME may hold ':' for
      -- per-target circuits, NAME@HOST:PORT); its counters are numbers, its locks booleans
      local v = k:sub(1, 3) == "cb:" and d:get(k)
      local st, gen, since
      if type(v) == "string" then st, gen, since = v:match("^(%a[%a_]*) (%d+) (%S+)$") end
      local name = st and k:sub(4)
      if st then
        local function n(what) return d:get("cb:" .. name .. ":" .. gen .. ":" .. what) or 0 end
        out[#out + 1] = { name = name, dict = dname, state = st, generation = tonumber(gen),
                          since = tonumber(since), requests = n("req"), failures = n("fail"),
                          consecutive_failures = n("consec"), half_open_requests = n("half"),
                          half_open_successes = n("succ") }
      end
    end
  end
  return out
end

--- Handles one admin request: req = {method, path, query, headers, body}.
-- @return status, body, content type
function M.handle(req)
  local c = master.current() or {}
  if req.status_only then
    -- gw.status_listen: what a scraper or a load balancer's check needs, no token, nothing else
    local path = req.path:gsub("/+$", "")
    if req.method ~= "GET" then return json(405, { message = "method not allowed" }) end
    if path ~= "/metrics" and path ~= "/status" then return json(404, { message = "not found" }) end
  elseif not authorized(req, c) then
    return json(401, { message = "unauthorized: send Authorization: Bearer <admin_token>" })
  end
  local m, path = req.method, req.path:gsub("/+$", "")
  if path == "" then path = "/" end

  if path == "/metrics" and m == "GET" then
    return 200, master.metrics(), "text/plain; version=0.0.4; charset=utf-8"
  end

  if path == "/status" and m == "GET" then
    local st = master.status()
    st.config_hash = c.hash
    st.workers = array(st.workers or {})
    return json(200, st)
  end

  if path == "/config" then
    if m == "GET" then
      if wants_yaml(req) then return 200, yaml.dump(c.source or {}), "application/yaml" end
      return json(200, c.source or {})
    elseif m == "POST" then
      if req.body == "" then return json(400, { message = "empty body: send a YAML or JSON config" }) end
      return apply_text(req.body, "POST /config")
    end
    return json(405, { message = "method not allowed" })
  end

  if path == "/reload" then
    if m ~= "POST" then return json(405, { message = "method not allowed" }) end
    local ok, err = master.reload()
    if not ok then
      local errs = {}
      for line in tostring(err):gmatch("[^\n]+") do errs[#errs + 1] = line end
      return json(400, { message = "reload rejected, the running config stays", errors = errs })
    end
    return json(200, { message = "reloaded", generation = master.status().generation })
  end

  if path == "/proxy-cache" or path:match("^/proxy%-cache/") then
    if m ~= "DELETE" then return json(405, { message = "method not allowed" }) end
    return purge_proxy_cache(c, path:match("^/proxy%-cache/(.+)$"))
  end

  if m ~= "GET" then return json(405, { message = "method not allowed" }) end
  local services, routes, plugins = views(c)
  if path == "/services" then return json(200, { data = services }) end
  if path == "/routes" then return json(200, { data = routes }) end
  if path == "/plugins" then return json(200, { data = plugins }) end
  if path == "/consumers" then
    local out = {}
    for _, k in ipairs(c.consumers or {}) do out[#out + 1] = { username = k.username, custom_id = k.custom_id } end
    return json(200, { data = array(out) })
  end
  if path == "/plugins/available" then
    local plugins_mod = require "gw.plugins"
    local names = plugins_mod.available(plugins_mod.default_dirs(c.gw and c.gw.plugins_path))
    return json(200, { data = array(names) })
  end
  if path == "/circuit-breakers" then return json(200, { data = array(M.circuit_breakers(c)) }) end
  local uname = path:match("^/upstreams/([^/]+)/health$")
  if uname then
    local u = c.upstreams and c.upstreams[uname]
    if not u then return json(404, { message = "no upstream named '" .. uname .. "'" }) end
    -- passive health is per worker: a target is UNHEALTHY while at least one worker skips it
    local seen = master.health(uname)
    local targets = {}
    for _, t in ipairs(u.targets or {}) do
      local key = t.host .. ":" .. t.port
      local h = seen[key] or {}
      local down = (h.down_workers or 0) > 0
      targets[#targets + 1] = {
        target = key, weight = t.weight,
        health = u.passive and u.passive.failures and u.passive.failures > 0
                 and (down and "UNHEALTHY" or "HEALTHY") or "HEALTHCHECKS_OFF",
        fails = h.fails or 0, down_workers = h.down_workers or 0, workers = h.workers or 0,
        down_until = h.down_until,
      }
    end
    return json(200, { name = uname, passive = u.passive, data = array(targets) })
  end
  return json(404, { message = "not found" })
end

return M
