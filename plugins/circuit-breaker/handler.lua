-- circuit-breaker: gobreaker's state machine (closed -> open -> half-open) per service (or per
-- target of the service's upstream with per_target), the
-- state in a gw.shared dict so every worker sees one circuit. While open the upstream is never
-- touched: the fallback answers (static, or the last good response cached for that path).
--
-- Layout in the dict, for circuit NAME:
--   cb:NAME              "STATE GEN SINCE"   (closed|open|half_open, generation, time entered)
--   cb:NAME:GEN:req|fail|consec|succ|half   counters of that generation (a new generation
--                        starts from zero, which is how counts are reset)
--   cb:NAME:t:GEN        taken by the one worker that moves the circuit out of generation GEN
--   cbc:NAME:METHOD PATH the cached good response (JSON), for fallback_cache
local cjson = require "cjson.safe"

local CircuitBreaker = {
  PRIORITY = 880,
  VERSION = "1.0.0",
}

local tonumber, tostring, pairs, ipairs = tonumber, tostring, pairs, ipairs
local COUNTER_TTL = 86400

local function circuit_name(conf)
  if conf.name then return conf.name end
  local svc = gw.router.get_service()
  return svc and svc.name or "default"
end

local function dict_of(conf)
  local d = gw.shared[conf.dict]
  if not d then gw.log.err("gw.shared dict '", conf.dict, "' is not declared: circuit off") end
  return d
end

local function read(d, name)
  local v = d:get("cb:" .. name)
  if not v then return { state = "closed", gen = 0, since = 0 } end
  local s, g, t = v:match("^(%S+) (%d+) (%S+)$")
  return { state = s, gen = tonumber(g), since = tonumber(t) }
end

-- moves the circuit out of generation cur.gen into state `to`; one worker wins, the others
-- re-read what it wrote. Returns the state now in force.
local function transition(d, name, cur, to)
  local ok = d:add("cb:" .. name .. ":t:" .. cur.gen, true, 3600)
  if not ok then return read(d, name) end
  local nxt = { state = to, gen = cur.gen + 1, since = gw.now() }
  d:set("cb:" .. name, nxt.state .. " " .. nxt.gen .. " " .. string.format("%.3f", nxt.since))
  if cur.state ~= to then
    gw.log.warn("circuit ", name, ": ", cur.state, " -> ", to)
    local g = gw.metrics.gauge("gateway_circuit_breaker_state",
                               "1 for the state each circuit is in, 0 for the others", { "name", "state" })
    for _, s in ipairs({ "closed", "open", "half_open" }) do g:set(s == to and 1 or 0, { name, s }) end
  end
  return nxt
end

-- the state, after the time-driven moves: open -> half_open after timeout; closed counts
-- reset every interval
local function current(d, name, conf)
  local st = read(d, name)
  local now = gw.now()
  if st.state == "open" and now >= st.since + conf.timeout then
    st = transition(d, name, st, "half_open")
  elseif st.state == "closed" and conf.interval > 0 and st.since > 0 and now >= st.since + conf.interval then
    st = transition(d, name, st, "closed")
  elseif st.since == 0 then
    -- first use: the circuit shows in the admin API, and the interval clock starts
    d:add("cb:" .. name, "closed 0 " .. string.format("%.3f", now))
    st = read(d, name)
  end
  return st
end
CircuitBreaker._current = current

local function counter(d, name, gen, what)
  return "cb:" .. name .. ":" .. gen .. ":" .. what
end

local function is_failure(conf, status)
  if status == 504 and conf.count_timeouts then return true end
  if status == 502 and conf.count_connect_errors then return true end
  if conf.failure_statuses then
    for _, s in ipairs(conf.failure_statuses) do if s == status then return true end end
    return false
  end
  return status >= 500 and status <= 599
end

local function record(d, name, conf, gen, failed)
  local st = read(d, name)
  if st.gen ~= gen then return end                 -- a result from an earlier generation
  local function incr(what, by) return d:incr(counter(d, name, gen, what), by or 1, 0, COUNTER_TTL) or 0 end
  if st.state == "closed" then
    local req = incr("req")
    if failed then
      local fail, consec = incr("fail"), incr("consec")
      if (conf.consecutive_failures > 0 and consec >= conf.consecutive_failures)
         or (req >= conf.min_requests and fail / req >= conf.failure_ratio) then
        transition(d, name, st, "open")
      end
    else
      d:set(counter(d, name, gen, "consec"), 0, COUNTER_TTL)
    end
  elseif st.state == "half_open" then
    if failed then
      transition(d, name, st, "open")
    elseif incr("succ") >= conf.max_requests then
      transition(d, name, st, "closed")
    end
  end
end
CircuitBreaker._record = record

-- HEAD is answered from the GET entry (only GET responses are stored)
local function cache_key(name)
  local m = gw.request.get_method()
  if m == "HEAD" then m = "GET" end
  return "cbc:" .. name .. ":" .. m .. " " .. gw.request.get_path_with_query()
end

local function fallback(d, name, conf)
  local m = gw.request.get_method()
  if conf.fallback_cache and (m == "GET" or m == "HEAD") then
    local v = d:get(cache_key(name))
    local doc = v and cjson.decode(v)
    if doc then
      local h = doc.headers or {}
      h["X-Circuit-Breaker"] = "open"
      return gw.response.exit(doc.status, doc.body, h)
    end
  end
  local h = {}
  for k, v in pairs(conf.fallback_headers or {}) do h[k] = v end
  h["X-Circuit-Breaker"] = "open"
  return gw.response.exit(conf.fallback_status, conf.fallback_body, h)
end

-- per_target: one circuit per target of the service's upstream, NAME@HOST:PORT. A half-open
-- target that still admits a probe is chosen first; else a weighted random closed target. The
-- request is sent there with gw.service.set_target. nil when every target's circuit is open.
local function pick_target(d, name, conf, targets)
  local closed, total = {}, 0
  for _, t in ipairs(targets) do
    if (t.weight or 100) > 0 then
      local tname = name .. "@" .. t.host .. ":" .. t.port
      local st = current(d, tname, conf)
      if st.state == "half_open" then
        local n = d:incr(counter(d, tname, st.gen, "half"), 1, 0, COUNTER_TTL)
        if n and n <= conf.max_requests then return t, tname, st end
      elseif st.state == "closed" then
        closed[#closed + 1] = { t, tname, st }
        total = total + (t.weight or 100)
      end
    end
  end
  if total == 0 then return nil end
  local point = math.random() * total
  for _, c in ipairs(closed) do
    point = point - (c[1].weight or 100)
    if point < 0 then return c[1], c[2], c[3] end
  end
  local c = closed[#closed]
  return c[1], c[2], c[3]
end

local function upstream_targets()
  local svc = gw.router.get_service()
  local compiled = gw._compiled and gw._compiled()
  local up = svc and svc.upstream and compiled and compiled.upstreams and compiled.upstreams[svc.upstream]
  return up and up.targets
end

function CircuitBreaker:access(conf)
  local d = dict_of(conf)
  if not d then return end
  local name = circuit_name(conf)
  local p = gw.ctx.plugin
  p.base = name
  if conf.per_target then
    local targets = upstream_targets()
    if targets and #targets > 0 then
      local t, tname, st = pick_target(d, name, conf, targets)
      if not t then return fallback(d, name, conf) end
      local ok, err = gw.service.set_target(t.host, t.port)
      if not ok then gw.log.err("cannot send to ", t.host, ":", t.port, ": ", err) end
      p.name, p.gen = tname, st.gen
      return
    end
  end
  local st = current(d, name, conf)
  if st.state == "open" then return fallback(d, name, conf) end
  if st.state == "half_open" then
    local n = d:incr(counter(d, name, st.gen, "half"), 1, 0, COUNTER_TTL)
    if not n or n > conf.max_requests then return fallback(d, name, conf) end
  end
  p.name, p.gen = name, st.gen
end

-- hop-by-hop and framing headers are not cached (gw writes framing itself)
local SKIP = { ["content-length"] = true, ["transfer-encoding"] = true, connection = true,
               ["keep-alive"] = true, date = true }

function CircuitBreaker:header_filter(conf)
  local p = gw.ctx.plugin
  if not p.name or not conf.fallback_cache then return end
  local status = gw.response.get_status()
  local m = gw.request.get_method()
  if m ~= "GET" or status < 200 or status > 299 or is_failure(conf, status) then return end
  local h = {}
  for k, v in pairs(gw.response.get_headers()) do
    if not SKIP[k:lower()] then h[k] = v end
  end
  p.cache = { status = status, headers = h }
end

function CircuitBreaker:body_filter(conf)
  local p = gw.ctx.plugin
  if not p.cache then return end
  local body = gw.response.get_raw_body()
  if #body > conf.cache_max_body then return end
  p.cache.body = body
  local d = dict_of(conf)
  if d then d:set(cache_key(p.base), cjson.encode(p.cache), conf.cache_ttl) end
end

function CircuitBreaker:log(conf)
  local p = gw.ctx.plugin
  if not p.name then return end                  -- answered by the fallback, or no dict
  local d = dict_of(conf)
  if d then record(d, p.name, conf, p.gen, is_failure(conf, gw.response.get_status())) end
end

-- The circuits' dict, declared with 1 MiB (16 MiB with fallback_cache, whose bodies live there too)
-- unless gw.shared_dicts sizes it.
function CircuitBreaker:shared_dicts(conf)
  return { [conf.dict] = conf.fallback_cache and "16m" or "1m" }
end

return CircuitBreaker
