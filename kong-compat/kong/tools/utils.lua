-- kong.tools.utils (gw kong-compat): the catch-all helper module of Kong (2.x and 3.x), made of
-- the kong.tools.* modules of kong-compat plus a few helpers of its own.
local uuid = require "kong.tools.uuid"
local rand = require "kong.tools.rand"
local str = require "kong.tools.string"
local tbl = require "kong.tools.table"
local http = require "kong.tools.http"
local ip = require "kong.tools.ip"
local ngx = require "gw_kong.ngx"

local _M = {}

for _, m in ipairs({ uuid, rand, str, tbl, http, ip }) do
  for k, v in pairs(m) do _M[k] = v end
end

--- loads a module: true, module | false, error (a missing module gives false, "module not found")
function _M.load_module_if_exists(name)
  local ok, res = pcall(require, name)
  if ok then return true, res end
  if type(res) == "string" and res:find("module '" .. name .. "' not found", 1, true) then return false, res end
  error(res, 2)
end

function _M.get_boolean(v)
  return v == true or v == "true" or v == "on" or v == "yes" or v == 1 or v == "1"
end

function _M.yield() end

function _M.get_hostname() return require("gw_kong.pdk").node.get_hostname() end

function _M.unescape_uri(s) return ngx.unescape_uri(s) end

function _M.check_https(trusted_ip, allow_terminated)
  local scheme = ngx.var.scheme
  if scheme == "https" then return true end
  if not allow_terminated or not trusted_ip then return false end
  local fwd = ngx.req.get_headers()["x-forwarded-proto"]
  return type(fwd) == "string" and fwd:lower() == "https"
end

return _M
