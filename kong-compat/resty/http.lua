-- resty.http (gw kong-compat): lua-resty-http's client API over gw.http (non-blocking, pooled).
--
--   local httpc = http.new(); httpc:set_timeout(ms) | set_timeouts(connect, send, read)
--   httpc:request_uri(uri, { method, body, headers, query, ssl_verify, keepalive }) -> res | nil, err
--   httpc:connect(host, port) / connect{ scheme, host, port, ssl_verify, ssl_server_name }, then
--   httpc:request{ path, method, headers, body, query } -> res with res:read_body(), res.has_body
--   httpc:set_keepalive(), httpc:close(), http:parse_uri(uri)
-- res: status, reason, headers, body (request_uri). The whole body is read at once: no streaming
-- body_reader, no proxy options, no unix sockets.
local type, tostring, tonumber = type, tostring, tonumber

local _M = { _VERSION = "0.17.1" }
local mt = { __index = _M }

local function gwhttp()
  local g = rawget(_G, "gw")
  if not g then error("resty.http needs a gw worker", 3) end
  return g.http
end

function _M.new() return setmetatable({}, mt) end

function _M:set_timeout(ms) self.timeout = ms end
function _M:set_timeouts(connect, send, read)
  self.timeout = { connect = connect or 60000, send = send or 60000, read = read or 60000 }
end
function _M:set_keepalive() return 1 end
function _M:close() return 1 end
function _M:get_reused_times() return 0 end

--- scheme, host, port, path, query of a URI, or nil, err
function _M:parse_uri(uri, query_in_path)
  local scheme, host, port, path, query = tostring(uri):match("^(https?)://([^/:?#]+):?(%d*)([^?#]*)%??([^#]*)")
  if not scheme then
    scheme, host, port, path, query = tostring(uri):match("^(https?)://(%[[^%]]+%]):?(%d*)([^?#]*)%??([^#]*)")
  end
  if not scheme then return nil, "bad uri: " .. tostring(uri) end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if path == "" then path = "/" end
  if query_in_path ~= false and query ~= "" then return { scheme, host, port, path .. "?" .. query, "" } end
  return { scheme, host, port, path, query }
end

local function response(res)
  local body = res.body
  res.has_body = body ~= nil and body ~= ""
  res.read_body = function() return body end
  res.body_reader = function()
    local b = body
    body = nil
    return b
  end
  return res
end

function _M:request_uri(uri, params)
  params = params or {}
  local req = {
    url = uri, method = params.method or "GET", headers = params.headers, body = params.body,
    query = params.query, timeout = self.timeout, ssl_verify = params.ssl_verify,
    ssl_server_name = params.ssl_server_name,
    keepalive = params.keepalive ~= false,
  }
  local res, err = gwhttp().request(req)
  if not res then return nil, err end
  return response(res)
end

function _M:connect(host, port, opts)
  if type(host) == "table" then
    local o = host
    self.scheme, self.host, self.port = o.scheme or "http", o.host, o.port
    self.ssl_verify, self.ssl_server_name = o.ssl_verify, o.ssl_server_name
  else
    self.scheme, self.host, self.port = "http", host, port
  end
  if type(self.host) ~= "string" or self.host:sub(1, 5) == "unix:" then
    return nil, "resty.http: only host and port are supported by gw"
  end
  self.port = tonumber(self.port) or (self.scheme == "https" and 443 or 80)
  return 1
end

function _M:ssl_handshake(_, server_name, ssl_verify)
  self.scheme = "https"
  self.ssl_server_name, self.ssl_verify = server_name, ssl_verify
  return true
end

function _M:request(params)
  if not self.host then return nil, "not connected" end
  local host = self.host
  if host:find(":", 1, true) and host:sub(1, 1) ~= "[" then host = "[" .. host .. "]" end
  local url = self.scheme .. "://" .. host .. ":" .. self.port .. (params.path or "/")
  local res, err = gwhttp().request{
    url = url, method = params.method or "GET", headers = params.headers, body = params.body,
    query = params.query, timeout = self.timeout, ssl_verify = self.ssl_verify,
    ssl_server_name = self.ssl_server_name,
  }
  if not res then return nil, err end
  return response(res)
end

return _M
