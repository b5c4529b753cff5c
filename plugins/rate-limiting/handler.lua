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

local function scope(conf)
  if conf.limit_by == "service" then return "" end
  local r = gw.router.get_route()
  local s = gw.router.get_service()
  return (s and (s.name or s.id) or "") .. "/" .. (r and (r.name or r.id) or "")
end

local function windows_of(conf)
  local list = {}
  for _, w in ipairs(WINDOWS) do
    if conf[w] then list[#list + 1] = { name = w, len = SECONDS[w], limit = conf[w] } end
  end
  return list
end

-- local: one incr (with init and ttl) per window; exact across workers (the dict is shared).
local function count_local(conf, key, wins)
  local dict = gw.shared[conf.dict]
  if not dict then
    return nil, "gw.shared dict '" .. conf.dict .. "' is not declared (gw.shared_dicts)"
  end
  local now = gw.now()
  local sec = math.floor(now)
  local blocked = false
  for _, w in ipairs(wins) do
    local start = sec - sec % w.len
    local n, err = dict:incr(key .. ":" .. w.len .. ":" .. start, 1, 0, w.len + 1)
    if not n then return nil, "gw.shared incr: " .. tostring(err) end
    w.count = n
    w.reset = start + w.len - sec
    if n > w.limit then blocked = true end
  end
  return blocked
end

local function count_redis(conf, key, wins)
  local r, err = gw.redis.connect{ host = conf.redis_host, port = conf.redis_port,
                                   password = conf.redis_password, db = conf.redis_database,
                                   timeout = conf.redis_timeout }
  if not r then return nil, "redis: " .. tostring(err) end
  local args = { #wins }
  for _, w in ipairs(wins) do args[#args + 1] = w.len; args[#args + 1] = w.limit end
  local res, e = r:eval_script(SCRIPT, { "gw:rl:" .. key }, args)
  if type(res) ~= "table" then return nil, "redis: " .. tostring(e or "unexpected reply") end
  for i, w in ipairs(wins) do
    w.count = tonumber(res[2 * i]) or 0
    w.reset = tonumber(res[2 * i + 1]) or w.len
  end
  return res[1] == 1, nil, true
end

function RateLimiting:access(conf)
  local wins = windows_of(conf)
  local key = scope(conf) .. "|" .. identifier(conf)
  local blocked, err, atomic
  if conf.policy == "redis" then
    blocked, err, atomic = count_redis(conf, key, wins)
  else
    blocked, err = count_local(conf, key, wins)
  end
  if blocked == nil then
    gw.log.err("rate-limiting: ", err, conf.fault_tolerant and " (fault_tolerant: request let through)" or "")
    if conf.fault_tolerant then return end
    return gw.response.exit(500, { message = "An unexpected error occurred" })
  end

  local headers = {}
  local reset, stop_reset = nil, 0     -- of the window with the least left; of the full ones
  local min_remaining, min_w
  for _, w in ipairs(wins) do
    -- local counts include this request even when it is refused; redis counts do not
    local used = w.count
    local remaining = math.max(0, w.limit - used)
    if not conf.hide_client_headers then
      headers["X-RateLimit-Limit-" .. NAMES[w.name]] = tostring(w.limit)
      headers["X-RateLimit-Remaining-" .. NAMES[w.name]] = tostring(remaining)
    end
    if not min_remaining or remaining < min_remaining then
      min_remaining, min_w, reset = remaining, w, w.reset
    end
    local full = atomic and (used >= w.limit) or (not atomic and used > w.limit)
    if blocked and full and w.reset > stop_reset then stop_reset = w.reset end
  end
  if not conf.hide_client_headers then
    headers["RateLimit-Limit"] = tostring(min_w.limit)
    headers["RateLimit-Remaining"] = tostring(min_remaining)
    headers["RateLimit-Reset"] = tostring(blocked and stop_reset or reset)
  end
  if blocked then
    headers["Retry-After"] = tostring(math.max(1, stop_reset))
    gw.metrics.counter("gateway_rate_limiting_rejections_total", "Requests refused with 429 by rate-limiting",
                       { "service", "route" }):inc(1, { gw.metrics.service_route() })
    return gw.response.exit(429, { message = "API rate limit exceeded" }, headers)
  end
  for k, v in pairs(headers) do gw.response.set_header(k, v) end
end

-- The counters' dict, declared with 1 MiB (thousands of counters) unless gw.shared_dicts sizes it.
function RateLimiting:shared_dicts(conf)
  if conf.policy ~= "local" then return {} end
  return { [conf.dict] = "1m" }
end

return RateLimiting
