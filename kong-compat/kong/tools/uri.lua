-- kong.tools.uri (gw kong-compat): path normalization as Kong's kong.request.get_path applies it.
--
--   uri.normalize(path [, merge_slashes]) -> path: %XX of unreserved characters decoded, other
--     %xx escapes upper-cased, "." and ".." segments removed, and with merge_slashes "//" merged.
--   uri.escape(s), uri.unescape(s)
local char, format, tonumber = string.char, string.format, tonumber
local concat = table.concat

local _M = {}

local UNRESERVED = "^[%w%-%._~]$"

function _M.unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

function _M.escape(s)
  return (s:gsub("[^%w%-%._~/]", function(c) return format("%%%02X", c:byte()) end))
end

local function decode_unreserved(path)
  return (path:gsub("%%(%x%x)", function(h)
    local c = char(tonumber(h, 16))
    if c:find(UNRESERVED) then return c end
    return "%" .. h:upper()
  end))
end

-- RFC 3986 5.2.4
local function remove_dot_segments(path)
  local out = {}
  local absolute = path:sub(1, 1) == "/"
  local trailing = false
  for seg in (path .. "/"):gmatch("([^/]*)/") do
    trailing = false
    if seg == ".." then
      if #out > 0 then out[#out] = nil end
      trailing = true
    elseif seg == "." then
      trailing = true
    else
      out[#out + 1] = seg
    end
  end
  if absolute and out[1] == "" then table.remove(out, 1) end
  local s = concat(out, "/")
  if absolute then s = "/" .. s end
  if trailing and s:sub(-1) ~= "/" then s = s .. "/" end
  return s
end

function _M.normalize(path, merge_slashes)
  path = decode_unreserved(path)
  if merge_slashes then path = path:gsub("//+", "/") end
  if path:find("/%.%.?/") or path:find("/%.%.?$") then
    path = remove_dot_segments(path)
  end
  return path
end

return _M
