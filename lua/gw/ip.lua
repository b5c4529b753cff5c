--- gw.ip — IP addresses and CIDR sets (IPv4 and IPv6), `local ip = require "gw.ip"`.
--
--   ip.parse(s)        -> the address as 16 bytes (IPv4 as ::ffff:a.b.c.d), or nil
--   ip.parse_cidr(s)   -> bytes, prefix bits (of the 128), or nil, message
--                         ("10.0.0.0/8", "2001:db8::/32", or a single address)
--   ip.set(list)       -> a set, or nil, "list[i]: message"
--   set:contains(s)    -> true when address string s is inside one of the set's CIDRs
--   set.empty          -> true for a set built from an empty list
--
-- A set groups its CIDRs by prefix length: a lookup masks the address once per distinct length
-- and probes a hash, so thousands of entries cost what a handful of lengths cost.
local ffi = require "ffi"
local band, lshift = bit.band, bit.lshift
local byte, char, sub, find = string.byte, string.char, string.sub, string.find
local tonumber, type, tostring = tonumber, type, tostring

pcall(ffi.cdef, "int inet_pton(int af, const char *src, void *dst);")
local AF_INET, AF_INET6 = 2, 10
local buf = ffi.new("unsigned char[16]")
local V4_PREFIX = string.rep("\0", 10) .. "\255\255"

local M = {}

function M.parse(s)
  if type(s) ~= "string" or #s > 45 then return nil end
  if find(s, ":", 1, true) then
    if ffi.C.inet_pton(AF_INET6, s, buf) ~= 1 then return nil end
    return ffi.string(buf, 16)
  end
  if ffi.C.inet_pton(AF_INET, s, buf) ~= 1 then return nil end
  return V4_PREFIX .. ffi.string(buf, 4)
end
local parse = M.parse

-- The first `bits` bits of the 16-byte string a, the rest zero.
local function mask(a, bits)
  local full = bits / 8
  full = full - full % 1
  local rest = bits - full * 8
  if rest == 0 then return sub(a, 1, full) end
  local b = band(byte(a, full + 1), band(0xff, lshift(0xff, 8 - rest)))
  return sub(a, 1, full) .. char(b)
end

function M.parse_cidr(s)
  if type(s) ~= "string" then return nil, "expected a string" end
  local addr, len = s:match("^([^/]+)/(%d+)$")
  if not addr then addr = s end
  local a = parse(addr)
  if not a then return nil, "invalid IP address or CIDR '" .. s .. "'" end
  local v4 = not find(addr, ":", 1, true)
  local bits = 128
  if len then
    local n = tonumber(len)
    if v4 then
      if n > 32 then return nil, "invalid prefix length /" .. len .. " for IPv4 in '" .. s .. "'" end
      bits = 96 + n
    else
      if n > 128 then return nil, "invalid prefix length /" .. len .. " for IPv6 in '" .. s .. "'" end
      bits = n
    end
  end
  return a, bits
end

local Set = {}
Set.__index = Set

function Set:contains(s)
  local a = parse(s)
  if not a then return false end
  local lens, by = self.lens, self.by_len
  for i = 1, #lens do
    local l = lens[i]
    if by[l][mask(a, l)] then return true end
  end
  return false
end

function M.set(list)
  if type(list) ~= "table" then return nil, "expected a list of IP addresses or CIDRs" end
  local by, lens = {}, {}
  for i, s in ipairs(list) do
    local a, bits = M.parse_cidr(s)
    if not a then return nil, "[" .. i .. "]: " .. tostring(bits) end
    if not by[bits] then by[bits] = {}; lens[#lens + 1] = bits end
    by[bits][mask(a, bits)] = true
  end
  table.sort(lens)
  return setmetatable({ by_len = by, lens = lens, empty = #lens == 0 }, Set)
end

--- A schema custom_validator for a list of CIDRs (config checks).
function M.check_list(list)
  local s, err = M.set(list)
  if not s then return nil, err end
  return true
end

return M
