-- kong.tools.string (gw kong-compat): string helpers Kong plugins import.
local find, sub, gsub, lower, byte = string.find, string.sub, string.gsub, string.lower, string.byte

local _M = {}

--- Splits on a plain delimiter: "a,b" -> { "a", "b" }; at most `max` pieces.
function _M.split(str, delim, max)
  local out, n, pos = {}, 0, 1
  delim = delim or ","
  while true do
    if max and n == max - 1 then break end
    local i, j = find(str, delim, pos, true)
    if not i then break end
    n = n + 1
    out[n] = sub(str, pos, i - 1)
    pos = j + 1
  end
  out[n + 1] = sub(str, pos)
  return out, n + 1
end

_M.splitn = _M.split

--- An iterator over the pieces of a plain-delimited string.
function _M.isplitn(str, delim, max)
  local pos, n, done = 1, 0, false
  return function()
    if done then return nil end
    n = n + 1
    if max and n == max then done = true return sub(str, pos) end
    local i, j = find(str, delim, pos, true)
    if not i then done = true return sub(str, pos) end
    local piece = sub(str, pos, i - 1)
    pos = j + 1
    return piece
  end
end

function _M.strip(str)
  if str == nil then return "" end
  return (tostring(str):match("^%s*(.-)%s*$"))
end

function _M.replace_dashes(str) return (gsub(str, "-", "_")) end
function _M.replace_dashes_lower(str) return (gsub(lower(str), "-", "_")) end

--- "1.5 MiB"-style rendering of a byte count.
function _M.bytes_to_str(bytes, unit, scale)
  if not unit or unit == "" or lower(unit) == "b" then return string.format("%d", bytes) end
  scale = scale or 2
  local u = lower(unit)
  local div = ({ k = 1024, m = 1024 ^ 2, g = 1024 ^ 3 })[u]
  if not div then error("invalid unit '" .. unit .. "' (expected 'k/K', 'm/M', or 'g/G')", 2) end
  return string.format("%." .. scale .. "f %siB", bytes / div, unit:upper())
end

--- true, or false and the byte position of the first invalid UTF-8 sequence.
function _M.validate_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c = byte(s, i)
    local len = c < 0x80 and 1 or c >= 0xF0 and c < 0xF5 and 4 or c >= 0xE0 and 3 or c >= 0xC2 and c < 0xE0 and 2 or nil
    if not len or i + len - 1 > n then return false, i end
    for k = i + 1, i + len - 1 do
      local cc = byte(s, k)
      if cc < 0x80 or cc > 0xBF then return false, i end
    end
    i = i + len
  end
  return true
end

return _M
