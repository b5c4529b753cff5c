-- rate-limiting: fixed-window counters per second/minute/hour/day/month, kept in a gw.shared
-- dict (policy local: exact across the workers of one node) or in Redis (policy redis: one
-- atomic script per request checks and counts every window at once, so several gw nodes share
-- one limit exactly).


local RateLimiting = {
  PRIORITY = 910,
  VERSION = "1.0.0",
}

local SECONDS = { second = 1, minute = 60, hour = 3600, day = 86400, month = 2592000 }
local NAMES = { second = "Second", minute = "Minute", hour = "Hour", day = "Day", month = "Month" }
local WINDOWS = { "second", "minute", "hour", "day", "month" }
local floor, max, ipairs, tostring, tonumber, type = math.floor, math.max, ipairs, tostring, tonumber, type

-- Checks every window, counts the request in each only when none is full (all or nothing, in
-- one step on the server: no read-then-write race between nodes). Each window slides: the count
-- is the current fixed window's plus the previous one's weighted by how much of it still lies
-- inside the sliding window (the "sliding window counter"), so a client cannot get twice the
-- limit across a window boundary. Windows are aligned on the server's clock (TIME), so every
-- node agrees on them.
-- KEYS[1]: key prefix. ARGV: n, then per window its length in seconds and its limit.
-- Returns {blocked (0/1), count_1, reset_1, ..., count_n, reset_n} (the sliding count after this
-- request, or the current one when blocked, rounded up; reset: seconds until the fixed window
-- ends).
local SCRIPT = [[
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[1])
local keys, lens, counts, resets = {}, {}, {}, {}
local blocked = 0
for i = 1, n do
  local len = tonumber(ARGV[2 * i])
  local limit = tonumber(ARGV[2 * i + 1])
  local start = math.floor(now / len) * len
  lens[i] = len
  keys[i] = KEYS[1] .. ':' .. len .. ':' .. start
  resets[i] = math.ceil(start + len - now)
  local prev = tonumber(redis.call('GET', KEYS[1] .. ':' .. len .. ':' .. (start - len)) or '0')
  local cur = tonumber(redis.call('GET', keys[i]) or '0')
  counts[i] = prev * ((len - (now - start)) / len) + cur
  if counts[i] + 1 > limit then blocked = 1 end
end
if blocked == 0 then
  for i = 1, n do
    redis.call('INCR', keys[i])
    redis.call('EXPIRE', keys[i], 2 * lens[i] + 1)
    counts[i] = counts[i] + 1
  end
end
local out = { blocked }
for i = 1, n do out[#out + 1] = math.ceil(counts[i]); out[#out + 1] = resets[i] end
return out
]]

local function identifier(conf)
  local by = conf.limit_by
  local id
  if by == "consumer" then
    local c = gw.client.get_consumer()
    id = c and (c.id or c.username)
    if id then id = "c:" .. tostring(id) end
  elseif by == "credential" then
    local c = gw.client.get_credential()
    id = c and (c.id or c.key)
    if id then id = "k:" .. tostring(id) end
  elseif by == "header" then
    local v = gw.request.get_header(conf.header_name)
    if type(v) == "table" then v = v[1] end
    if v then id = "h:" .. v end
  elseif by == "path" then
    local p = gw.request.get_path()
    if p == conf.path then id = "p:" .. p end
  elseif by == "service" then
    local s = gw.router.get_service()
    id = "s:" .. (s and (s.name or s.id) or "")
  end
  return id or ("ip:" .. (gw.client.get_forwarded_ip() or ""))
end

-- The route's part of the counter key: "service/route", made once per (service, route) name pair
-- and kept (a worker serves one config generation, so the set is bounded by its routes).
local scopes = {}
local function scope(conf)
  if conf.limit_by == "service" then return "" end
  local r = gw.router.get_route()
  local s = gw.router.get_service()
  local sname = s and (s.name or s.id) or ""
  local rname = r and (r.name or r.id) or ""
  local by_route = scopes[sname]
  if not by_route then by_route = {}; scopes[sname] = by_route end
  local sc = by_route[rname]
  if not sc then sc = sname .. "/" .. rname; by_route[rname] = sc end
  return sc
end

-- Per conf (the same table for every request of a config generation), made once: the configured
-- windows in order, with their lengths, limits, key suffixes and header names; `start` and `tail`
-- (the key's end for the current window, ":60:<start>") change once per window.
local plans = setmetatable({}, { __mode = "k" })
local function plan_of(conf)
  local plan = plans[conf]
  if plan then return plan end
  plan = {}
  for _, w in ipairs(WINDOWS) do
    local limit = conf[w]
    if limit then
      plan[#plan + 1] = { name = w, len = SECONDS[w], limit = limit, suffix = ":" .. SECONDS[w] .. ":",
                          h_limit = "X-RateLimit-Limit-" .. NAMES[w], limit_s = tostring(limit),
                          h_remaining = "X-RateLimit-Remaining-" .. NAMES[w] }
    end
  end
  plans[conf] = plan
  return plan
end

-- This request's count and reset per window (index as in the plan). Filled and read within one
-- access call with no yield in between (redis fills them after its reply), so one pair of arrays
-- serves every request.
local counts, resets = {}, {}

-- local: one incr (with init and ttl) per window; exact across workers (the dict is shared).
local function count_local(conf, key, plan)
  local dict = gw.shared[conf.dict]
  if not dict then
    return nil, "gw.shared dict '" .. conf.dict .. "' is not declared (gw.shared_dicts)"
  end
  local sec = floor(gw.now())
  local blocked = false
  for i = 1, #plan do
    local w = plan[i]
    local len = w.len
    local start = sec - sec % len
    if start ~= w.start then w.start, w.tail = start, w.suffix .. start end  -- once per window
    local n, err = dict:incr(key .. w.tail, 1, 0, len + 1)
    if not n then return nil, "gw.shared incr: " .. tostring(err) end
    counts[i], resets[i] = n, start + len - sec
    if n > w.limit then blocked = true end
  end
  return blocked
end

local function count_redis(conf, key, plan)
  local r, err = gw.redis.connect{ host = conf.redis_host, port = conf.redis_port,
                                   password = conf.redis_password, db = conf.redis_database,
                                   timeout = conf.redis_timeout }
  if not r then return nil, "redis: " .. tostring(err) end
  local args = { #plan }
  for _, w in ipairs(plan) do args[#args + 1] = w.len; args[#args + 1] = w.limit end
  local res, e = r:eval_script(SCRIPT, { "gw:rl:" .. key }, args)
  if type(res) ~= "table" then return nil, "redis: " .. tostring(e or "unexpected reply") end
  for i, w in ipairs(plan) do
    counts[i] = tonumber(res[2 * i]) or 0
    resets[i] = tonumber(res[2 * i + 1]) or w.len
  end
  return res[1] == 1, nil, true
end

-- A refused request: 429 with every header at once.
local function refuse(conf, plan, atomic)
  local headers = {}
  local reset, stop_reset = nil, 0     -- of the window with the least left; of the full ones
  local min_remaining, min_w
  for i, w in ipairs(plan) do
    local used = counts[i]
    local remaining = max(0, w.limit - used)
    if not conf.hide_client_headers then
      headers[w.h_limit] = w.limit_s
      headers[w.h_remaining] = tostring(remaining)
    end
    if not min_remaining or remaining < min_remaining then
      min_remaining, min_w, reset = remaining, w, resets[i]
    end
    local full = atomic and (used >= w.limit) or (not atomic and used > w.limit)
    if full and resets[i] > stop_reset then stop_reset = resets[i] end
  end
  if not conf.hide_client_headers then
    headers["RateLimit-Limit"] = min_w.limit_s
    headers["RateLimit-Remaining"] = tostring(min_remaining)
    headers["RateLimit-Reset"] = tostring(stop_reset)
  end
  headers["Retry-After"] = tostring(max(1, stop_reset))
  gw.metrics.counter("gateway_rate_limiting_rejections_total", "Requests refused with 429 by rate-limiting",
                     { "service", "route" }):inc(1, { gw.metrics.service_route() })
  return gw.response.exit(429, { message = "API rate limit exceeded" }, headers)
end

function RateLimiting:access(conf)
  local plan = plan_of(conf)
  local blocked, err, atomic
  if conf.policy == "redis" then
    blocked, err, atomic = count_redis(conf, scope(conf) .. "|" .. identifier(conf), plan)
  else
    blocked, err = count_local(conf, scope(conf) .. "|" .. identifier(conf), plan)
  end
  if blocked == nil then
    gw.log.err("rate-limiting: ", err, conf.fault_tolerant and " (fault_tolerant: request let through)" or "")
    if conf.fault_tolerant then return end
    return gw.response.exit(500, { message = "An unexpected error occurred" })
  end
  if blocked then return refuse(conf, plan, atomic) end
  if conf.hide_client_headers then return end
  -- the headers of the window with the least left (the first of equals)
  local set_header = gw.response.set_header
  local min_remaining, min_i
  for i = 1, #plan do
    local w = plan[i]
    local remaining = max(0, w.limit - counts[i])
    set_header(w.h_limit, w.limit_s)
    set_header(w.h_remaining, remaining)   -- numbers: written by C, no string made
    if not min_remaining or remaining < min_remaining then min_remaining, min_i = remaining, i end
  end
  set_header("RateLimit-Limit", plan[min_i].limit_s)
  set_header("RateLimit-Remaining", min_remaining)
  set_header("RateLimit-Reset", resets[min_i])
end

-- The counters' dict, declared with 1 MiB (thousands of counters) unless gw.shared_dicts sizes it.
function RateLimiting:shared_dicts(conf)
  if conf.policy ~= "local" then return {} end
  return { [conf.dict] = "1m" }
end

return RateLimiting
