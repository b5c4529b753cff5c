-- gw_kong.log — kong.log: levels onto gw.log, kong.log.inspect, kong.log.serialize and
-- kong.log.set_serialize_value. Returns a constructor taking the `kong` table.
local ngx = require "gw_kong.ngx"

local type, tostring, tonumber, pairs, ipairs, select, rawget = type, tostring, tonumber, pairs, ipairs, select, rawget
local concat, sort = table.concat, table.sort
local floor = math.floor
local format, rep = string.format, string.rep

local LEVEL = { debug = ngx.DEBUG, info = ngx.INFO, notice = ngx.NOTICE, warn = ngx.WARN, err = ngx.ERR,
                crit = ngx.CRIT, alert = ngx.ALERT, emerg = ngx.EMERG }

-- a readable rendering of a value (kong.log.inspect)
local function render(v, indent, seen)
  local t = type(v)
  if t == "string" then return format("%q", v) end
  if t ~= "table" then return tostring(v) end
  if seen[v] then return "<cycle>" end
  seen[v] = true
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  if #keys == 0 then seen[v] = nil return "{}" end
  local pad = rep("  ", indent + 1)
  local out = {}
  for _, k in ipairs(keys) do
    local key = type(k) == "string" and k:find("^[%a_][%w_]*$") and k or ("[" .. render(k, indent + 1, seen) .. "]")
    out[#out + 1] = pad .. key .. " = " .. render(v[k], indent + 1, seen)
  end
  seen[v] = nil
  return "{\n" .. concat(out, ",\n") .. "\n" .. rep("  ", indent) .. "}"
end

return function(kong)
  local log = {}

  for name, level in pairs(LEVEL) do
    log[name] = function(...) return ngx._log_line(level, ...) end
  end
  log.deprecation = function(...) return ngx._log_line(ngx.WARN, ...) end
  log.set_format = function() end

  local inspect_on = true
  local inspect = setmetatable({
    on = function() inspect_on = true end,
    off = function() inspect_on = false end,
  }, { __call = function(_, ...)
    if not inspect_on then return end
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = render((select(i, ...)), 0, {}) end
    return ngx._log_line(ngx.NOTICE, concat(parts, " "))
  end })
  log.inspect = inspect

  -- set_serialize_value: a list of { key, value, mode } kept with the request, applied in order
  -- by serialize()
  local MODES = { set = true, add = true, replace = true }
  function log.set_serialize_value(key, value, options)
    if type(key) ~= "string" then error("key must be a string", 2) end
    local vt = type(value)
    if vt ~= "nil" and vt ~= "string" and vt ~= "number" and vt ~= "boolean" and vt ~= "table" then
      error("value must be nil, a number, string, boolean or a non-self-referencial table containing numbers, string and boolean", 2)
    end
    local mode = options and options.mode or "set"
    if not MODES[mode] then error("mode must be 'set', 'add' or 'replace'", 2) end
    local st = ngx._state()
    local list = st.serialize_values
    if not list then list = {} st.serialize_values = list end
    list[#list + 1] = { key, value, mode }
  end

  local function apply(root, key, value, mode)
    local node = root
    local parts = {}
    for p in key:gmatch("[^%.]+") do parts[#parts + 1] = p end
    for i = 1, #parts - 1 do
      local nxt = node[parts[i]]
      if type(nxt) ~= "table" then
        if mode == "replace" then return end
        nxt = {}
        node[parts[i]] = nxt
      end
      node = nxt
    end
    local last = parts[#parts]
    if mode == "set" or (mode == "add" and node[last] == nil) or (mode == "replace" and node[last] ~= nil) then
      node[last] = value
    end
  end

  local REDACT = { authorization = true, ["proxy-authorization"] = true }

  --- Kong's basic log serializer: the request, the response (in header_filter, body_filter and
  -- log), route, service, consumer, latencies, client ip, and what set_serialize_value added.
  function log.serialize(options)
    local g = rawget(_G, "gw")
    if not g then error("kong.log.serialize needs a gw worker", 2) end
    local ph = g.get_phase()
    local headers = g.request.get_headers()
    local req_headers = {}
    for k, v in pairs(headers) do req_headers[k] = REDACT[k] and "REDACTED" or v end
    local timings = g.request.get_timings()
    local now = g.now()
    local started = timings.start
    local scheme, host, port = g.request.get_scheme(), g.request.get_host(), g.request.get_port()
    local path_q = g.request.get_path_with_query()
    local out = {
      request = {
        uri = path_q,
        url = scheme .. "://" .. host .. ":" .. port .. path_q,
        querystring = g.request.get_query(),
        method = g.request.get_method(),
        headers = req_headers,
        size = tonumber(headers["content-length"]) or 0,
        id = g.request.get_id(),
      },
      upstream_uri = path_q,
      client_ip = g.client.get_forwarded_ip(),
      started_at = floor(started * 1000),
      route = kong.router.get_route(),
      service = kong.router.get_service(),
      consumer = g.client.get_consumer(),
      tries = {},
      workspace = kong.default_workspace,
      source = nil,
    }
    local cred = g.client.get_credential()
    if cred then
      out.authenticated_entity = { id = cred.id, consumer_id = cred.consumer and cred.consumer.id }
    end
    local upstream_ms = (timings.upstream_start and timings.upstream_end)
      and floor((timings.upstream_end - timings.upstream_start) * 1000) or -1
    local total = floor((now - started) * 1000)
    out.latencies = {
      request = total,
      proxy = upstream_ms,
      kong = upstream_ms >= 0 and (total - upstream_ms) or total,
      receive = 0,
    }
    if ph == "header_filter" or ph == "body_filter" or ph == "log" then
      local rh = g.response.get_headers()
      out.response = { status = g.response.get_status(), headers = rh, size = tonumber(rh["content-length"]) or 0 }
      out.source = kong.response.get_source()
    end
    local list = ngx._state().serialize_values
    if list then
      for _, e in ipairs(list) do apply(out, e[1], e[2], e[3]) end
    end
    return out
  end

  return setmetatable(log, { __call = function(_, ...) return ngx._log_line(ngx.NOTICE, ...) end })
end
