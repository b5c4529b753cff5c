-- kong.pdk.private.rate_limiting (gw kong-compat): rate-limit response headers stored in ngx.ctx
-- by a plugin, then set on the response at once.
local type, pairs, error, format = type, pairs, error, string.format

local _M = {}

local KEY = "__rate_limiting_context__"

local function check(key, value, fname)
  if type(key) ~= "string" then
    error(format("arg #2 `key` for function `%s` must be a string, got %s", fname, type(key)), 3)
  end
  if value ~= nil and type(value) ~= "number" and type(value) ~= "string" then
    error(format("arg #3 `value` for function `%s` must be a string or a number, got %s", fname, type(value)), 3)
  end
end

function _M.store_response_header(ngx_ctx, key, value)
  check(key, value, "store_response_header")
  local rl = ngx_ctx[KEY]
  if not rl then rl = {} ngx_ctx[KEY] = rl end
  rl[key] = value
end

function _M.get_stored_response_header(ngx_ctx, key)
  check(key, nil, "get_stored_response_header")
  local rl = ngx_ctx[KEY]
  return rl and rl[key]
end

function _M.apply_response_headers(ngx_ctx)
  local rl = ngx_ctx[KEY]
  if not rl then return end
  local set_header = require("gw_kong.pdk").response.set_header
  for k, v in pairs(rl) do set_header(k, v) end
end

return _M
