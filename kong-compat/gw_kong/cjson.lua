-- gw_kong.cjson — what Kong plugins get for `require "cjson"` / `require "cjson.safe"`: the
-- OpenResty flavour of lua-cjson (array_mt, empty_array, decode_array_with_array_mt, new()) over
-- gw.json, so `[]` stays `[]` through a decode/encode. A table gw.json refuses to encode (mixed
-- or non-string keys, which lua-cjson writes as an object with stringified keys) goes through the
-- system lua-cjson instead.
--
--   require("gw_kong.cjson")      raising on errors, like cjson
--   require("gw_kong.cjson").safe  returning nil, err, like cjson.safe
local json = require "gw.json"

local ok_c, cjson_c = pcall(require, "cjson.safe")
if not ok_c then cjson_c = nil end

local type, error = type, error

local empty_array = setmetatable({}, json.array_mt)

local function noop() end

local function new(safe)
  local M = {
    _NAME = "cjson", _VERSION = "2.1.0.14",
    null = json.null,
    array_mt = json.array_mt,
    empty_array_mt = json.array_mt,
    empty_array = empty_array,
  }

  function M.encode(v)
    local s, err = json.encode(v)
    if s == nil and cjson_c then
      local s2 = cjson_c.encode(v)
      if s2 then s = s2 end
    end
    if s == nil then
      if safe then return nil, err end
      error(err, 2)
    end
    return s
  end

  function M.decode(s)
    if type(s) ~= "string" then
      if safe then return nil, "expected a string" end
      error("bad argument #1 to 'decode' (string expected, got " .. type(s) .. ")", 2)
    end
    local v, err = json.decode(s)
    if v == nil and err then
      if safe then return nil, err end
      error(err, 2)
    end
    return v
  end

  function M.new() return new(safe) end

  -- settings: accepted; gw.json's behaviour is fixed (empty tables as objects unless they carry
  -- array_mt, "/" not escaped, exact numbers)
  M.encode_empty_table_as_object = noop
  M.decode_array_with_array_mt = noop
  M.encode_escape_forward_slash = noop
  M.encode_number_precision = noop
  M.encode_max_depth = noop
  M.decode_max_depth = noop
  M.encode_sparse_array = noop
  M.encode_keep_buffer = noop
  M.encode_invalid_numbers = noop
  M.decode_invalid_numbers = noop
  M.encode_skip_unsupported_value_types = noop
  return M
end

local cjson = new(false)
cjson.safe = new(true)
return cjson
