-- ab-routing: chooses the upstream (or service) of a request. Rules first, in order: a request
-- header's or a cookie's value, compared exactly or with a PCRE2 regex (the seed's
-- X-API-Version: 2.0 -> v2). A request no rule matched goes through the weighted `split`, if
-- any: sticky by a hash of a header, a cookie, the consumer or the client IP (`hash_on`), so one
-- user always lands on the same side; random per request when there is no hash key.
local bit = require "bit"

local ABRouting = {
  PRIORITY = 900,
  VERSION = "2.0.0",
}

local ipairs, type, random = ipairs, type, math.random
local bxor, rshift = bit.bxor, bit.rshift

local regex
local function rx_match(p, s)
  regex = regex or require "gw.regex"
  local ok, err = regex.match(p, s)
  if ok == nil then gw.log.err("bad regex ", p, ": ", err) return false end
  return ok
end

-- the value of cookie `name` in the request's Cookie header(s), or nil
local function cookie(name)
  local h = gw.request.get_header("Cookie")
  if not h then return nil end
  if type(h) == "table" then h = table.concat(h, "; ") end
  for pair in h:gmatch("[^;]+") do
    local k, v = pair:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
    if k == name then
      if v:sub(1, 1) == '"' and v:sub(-1) == '"' and #v >= 2 then v = v:sub(2, -2) end
      return v
    end
  end
  return nil
end
ABRouting._cookie = cookie

local function header(name)
  local v = gw.request.get_header(name)
  if type(v) == "table" then v = v[1] end
  return v
end

-- a * m mod 2^32 for a, m in [0, 2^32), exact in doubles (each partial product < 2^53)
local function mul32(a, m)
  local lo, hi = a % 65536, (a - a % 65536) / 65536
  return (lo * m + (hi * m % 65536) * 65536) % 4294967296
end

local function u32(x) return x % 4294967296 end   -- bit ops give signed 32-bit results

-- FNV-1a over the bytes, then murmur3's finalizer so nearby keys spread evenly; 0 .. 2^32-1
local function hash(s)
  local h = 2166136261
  for i = 1, #s do h = mul32(u32(bxor(h, s:byte(i))), 16777619) end
  h = mul32(u32(bxor(h, rshift(h, 16))), 0x85ebca6b)
  h = mul32(u32(bxor(h, rshift(h, 13))), 0xc2b2ae35)
  return u32(bxor(h, rshift(h, 16)))
end
ABRouting._hash = hash

local function hash_key(conf)
  local on = conf.hash_on
  if on == "header" then return header(conf.hash_on_header)
  elseif on == "cookie" then return cookie(conf.hash_on_cookie)
  elseif on == "consumer" then
    local c = gw.client.get_consumer()
    return c and (c.id or c.username or c.custom_id)
  elseif on == "ip" then return gw.client.get_ip()
  end
  return nil
end

-- the split entry for this request: a point in [0, total) from the hash key (or at random)
local function pick(conf)
  local split = conf.split
  local total = 0
  for _, s in ipairs(split) do total = total + s.weight end
  if total <= 0 then return nil end
  local key = hash_key(conf)
  local point
  if key and key ~= "" then point = hash(key) % total else point = random(0, total - 1) end
  for _, s in ipairs(split) do
    if point < s.weight then return s.upstream end
    point = point - s.weight
  end
  return split[#split].upstream
end

local function route(name)
  local ok, err = gw.service.set_upstream(name)
  if not ok then
    gw.log.err("cannot route to ", name, ": ", err)
    return gw.response.exit(503, { message = "upstream unavailable" })
  end
  gw.service.request.set_header("X-Upstream-Selected", name)
end

ABRouting._pick = pick

function ABRouting:access(conf)
  for _, rule in ipairs(conf.rules or {}) do
    local v
    if rule.cookie then v = cookie(rule.cookie) else v = header(rule.header or conf.header) end
    if v then
      local hit
      if rule.value ~= nil then hit = (v == rule.value) else hit = rx_match(rule.regex, v) end
      if hit then return route(rule.upstream) end
    end
  end
  if conf.split and #conf.split > 0 then
    local name = pick(conf)
    if name then return route(name) end
  end
end

return ABRouting
