-- kong.tools.timestamp (gw kong-compat): UTC timestamps in milliseconds and the start of the
-- current second, minute, hour, day, month and year (rate limiting windows).
local floor = math.floor

local function now()
  local g = rawget(_G, "gw")
  if g then return g.now() end
  return os.time()
end

-- civil date (UTC) of a count of days since 1970-01-01, and back
local function civil_from_days(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local _M = {}

function _M.get_utc() return floor(now()) * 1000 end
function _M.get_utc_ms() return now() * 1000 end

local MS_CHECK = 17987443200   -- seconds of year 2540: larger values are milliseconds

function _M.get_timetable(t)
  t = t or _M.get_utc()
  if t > MS_CHECK then t = t / 1000 end
  local s = floor(t)
  local days = floor(s / 86400)
  local y, m, d = civil_from_days(days)
  local rem = s - days * 86400
  return { year = y, month = m, day = d, hour = floor(rem / 3600), min = floor(rem % 3600 / 60),
           sec = rem % 60 + (t - s) }
end

function _M.get_timestamps(t)
  t = t or _M.get_utc()
  if t > MS_CHECK then t = t / 1000 end
  local s = floor(t)
  local days = floor(s / 86400)
  local y, m = civil_from_days(days)
  return {
    second = s * 1000,
    minute = floor(s / 60) * 60000,
    hour = floor(s / 3600) * 3600000,
    day = days * 86400000,
    month = days_from_civil(y, m, 1) * 86400000,
    year = days_from_civil(y, 1, 1) * 86400000,
  }
end

_M.timestamp_table_fields = { "second", "minute", "hour", "day", "month", "year" }

return _M
