--- gw.http — a non-blocking HTTP/1.1 client (the C half is runtime/lua/http.c, "gw.http_c").
-- The calling coroutine is suspended while the request is in flight; the worker keeps serving.
-- Misuse raises; operational failures (refused, timeout, bad response) return nil, reason.
-- @module gw.http
local C = require "gw.http_c"

local type, tostring, tonumber, pairs, ipairs, error = type, tostring, tonumber, pairs, ipairs, error
local unpack = unpack or table.unpack
local concat, sort = table.concat, table.sort

local M = {}

local DEFAULT_TIMEOUT = 60000
local DEFAULT_MAX_BODY = 8 * 1024 * 1024
local USER_AGENT = "gw/0.1.0"

-- rewrite, access, log and timer: where a coroutine may be suspended (as gw.sleep)
local gw_
local function check_phase(fname)
  gw_ = gw_ or require "gw"
  gw_._check_phase(fname, gw_._YIELDABLE)
end

local function raise(fname, msg, level) error(fname .. ": " .. msg, level or 4) end

-- a query table as gw.service.request.set_query encodes it (lua/gw/init.lua)
local function encode_query(t)
  gw_ = gw_ or require "gw"
  return gw_._encode_args(t)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local floor = math.floor
local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local d1, d2, d3, d4 = floor(n / 262144) % 64, floor(n / 4096) % 64, floor(n / 64) % 64, n % 64
    out[#out + 1] = B64:sub(d1 + 1, d1 + 1) .. B64:sub(d2 + 1, d2 + 1) ..
      (b and B64:sub(d3 + 1, d3 + 1) or "=") .. (c and B64:sub(d4 + 1, d4 + 1) or "=")
  end
  return concat(out)
end

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- Parses an http(s) URL: scheme, host, port, path with query, userinfo.
-- @return table {scheme, host, port, path, user, password} or nil, err
function M.parse_url(url)
  if type(url) ~= "string" then return nil, "url must be a string" end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "url must start with http:// or https://" end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then return nil, 'unsupported scheme "' .. scheme .. '"' end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  path = path:gsub("#.*$", "")
  if path == "" then path = "/" elseif path:sub(1, 1) == "?" then path = "/" .. path end
  if path:find("[%s%z]") then return nil, "url path must not contain whitespace" end
  local user, password
  local at = authority:find("@[^@]*$")
  if at then
    local ui = authority:sub(1, at - 1)
    authority = authority:sub(at + 1)
    user, password = ui:match("^([^:]*):(.*)$")
    if not user then user, password = ui, "" end
    user, password = unescape(user), unescape(password)
  end
  local host, port
  if authority:sub(1, 1) == "[" then
    host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
  else
    host, port = authority:match("^([^:]+):?(%d*)$")
  end
  if not host or host == "" then return nil, "url has no host" end
  if host:find("[^%w%-%._:]") then return nil, "invalid host in url" end
  if port == "" then port = scheme == "https" and 443 or 80 else port = tonumber(port) end
  if not port or port < 1 or port > 65535 then return nil, "invalid port in url" end
  return { scheme = scheme, host = host, port = port, path = path, user = user, password = password,
           ipv6 = authority:sub(1, 1) == "[" }
end

local header_mt = {
  __index = function(t, k)
    if type(k) ~= "string" then return nil end
    local lk = k:lower():gsub("_", "-")
    if lk ~= k then return rawget(t, lk) end
  end,
}

local function check_header_name(fname, name)
  if type(name) ~= "string" or name == "" or name:find("[^%w!#$%%&'*+%-.^_`|~]") then
    raise(fname, "invalid header name '" .. tostring(name) .. "'")
  end
end

local function check_header_value(fname, v)
  if type(v) == "number" then v = tostring(v) end
  if type(v) ~= "string" then raise(fname, "header value must be a string, got " .. type(v)) end
  if v:find("[\r\n%z]") then raise(fname, "header value must not contain CR, LF or NUL") end
  return v
end

local SKIP = { ["content-length"] = true, ["transfer-encoding"] = true, ["connection"] = true,
  ["keep-alive"] = true, ["te"] = true, ["upgrade"] = true, ["trailer"] = true, ["proxy-connection"] = true }

local function ms(fname, name, v)
  if type(v) ~= "number" or v <= 0 or v ~= v then raise(fname, name .. " must be a number of milliseconds > 0") end
  return math.floor(v)
end

-- Validates one request table and turns it into the parameters of gw.http_c.start.
local function prepare(fname, req)
  if type(req) ~= "table" then raise(fname, "expected a table, got " .. type(req)) end
  if type(req.url) ~= "string" then raise(fname, "url must be a string") end
  local u, uerr = M.parse_url(req.url)
  if not u then raise(fname, uerr .. " (" .. req.url .. ")") end
  local method = req.method or "GET"
  if type(method) ~= "string" or not method:match("^[A-Z]+$") then
    raise(fname, "method must be an uppercase token such as \"GET\"")
  end
  local body = req.body
  if body ~= nil and type(body) ~= "string" then raise(fname, "body must be a string") end
  local path = u.path
  if req.query ~= nil then
    local q
    if type(req.query) == "table" then q = encode_query(req.query)
    elseif type(req.query) == "string" then
      if req.query:find("[%s%z#]") then raise(fname, "query must contain no whitespace or #") end
      q = req.query
    else raise(fname, "query must be a table or a string") end
    if q ~= "" then path = path .. (path:find("?", 1, true) and "&" or "?") .. q end
  end
  local hdrs = req.headers
  if hdrs ~= nil and type(hdrs) ~= "table" then raise(fname, "headers must be a table") end
  local keepalive = req.keepalive
  if keepalive == nil then keepalive = true end
  if type(keepalive) ~= "boolean" then raise(fname, "keepalive must be a boolean") end
  local lines = { method, " ", path, " HTTP/1.1\r\n" }
  local have = {}
  local names = {}
  for k in pairs(hdrs or {}) do
    check_header_name(fname, k)
    names[#names + 1] = k
  end
  sort(names)
  for _, k in ipairs(names) do
    local v = hdrs[k]
    local lk = k:lower()
    local vals = type(v) == "table" and v or { v }
    for _, x in ipairs(vals) do
      x = check_header_value(fname, x)
      if lk == "connection" then
        if x:lower():find("close", 1, true) then keepalive = false end
      elseif not SKIP[lk] then
        have[lk] = true
        lines[#lines + 1] = k .. ": " .. x .. "\r\n"
      end
    end
  end
  if not have.host then
    local h = u.ipv6 and ("[" .. u.host .. "]") or u.host
    local default = (u.scheme == "https" and u.port == 443) or (u.scheme == "http" and u.port == 80)
    lines[#lines + 1] = "Host: " .. h .. (default and "" or (":" .. u.port)) .. "\r\n"
  end
  if not have["user-agent"] then lines[#lines + 1] = "User-Agent: " .. USER_AGENT .. "\r\n" end
  if u.user and not have.authorization then
    lines[#lines + 1] = "Authorization: Basic " .. b64(u.user .. ":" .. u.password) .. "\r\n"
  end
  if body then
    lines[#lines + 1] = "Content-Length: " .. #body .. "\r\n"
  elseif method == "POST" or method == "PUT" or method == "PATCH" then
    lines[#lines + 1] = "Content-Length: 0\r\n"
  end
  if not keepalive then lines[#lines + 1] = "Connection: close\r\n" end
  lines[#lines + 1] = "\r\n"
  if body then lines[#lines + 1] = body end

  local p = { host = u.host, port = u.port, tls = u.scheme == "https", request = concat(lines),
              head = method == "HEAD", keepalive = keepalive }
  local t = req.timeout
  if t == nil then
    p.connect_ms, p.send_ms, p.read_ms = DEFAULT_TIMEOUT, DEFAULT_TIMEOUT, DEFAULT_TIMEOUT
  elseif type(t) == "number" then
    p.total_ms = ms(fname, "timeout", t)
    p.connect_ms, p.send_ms, p.read_ms = p.total_ms, p.total_ms, p.total_ms
  elseif type(t) == "table" then
    for k in pairs(t) do
      if k ~= "connect" and k ~= "send" and k ~= "read" then raise(fname, "unknown timeout '" .. tostring(k) .. "' (connect, send, read)") end
    end
    p.connect_ms = t.connect and ms(fname, "timeout.connect", t.connect) or DEFAULT_TIMEOUT
    p.send_ms = t.send and ms(fname, "timeout.send", t.send) or DEFAULT_TIMEOUT
    p.read_ms = t.read and ms(fname, "timeout.read", t.read) or DEFAULT_TIMEOUT
  else
    raise(fname, "timeout must be a number (ms) or a table {connect=, send=, read=}")
  end
  if req.ssl_verify ~= nil and type(req.ssl_verify) ~= "boolean" then raise(fname, "ssl_verify must be a boolean") end
  p.verify = req.ssl_verify ~= false
  if req.ssl_ca_file ~= nil then
    if type(req.ssl_ca_file) ~= "string" or req.ssl_ca_file == "" then raise(fname, "ssl_ca_file must be a file name") end
    p.ca_file = req.ssl_ca_file
  end
  if req.ssl_server_name ~= nil then
    if type(req.ssl_server_name) ~= "string" or not req.ssl_server_name:match("^[%w%-%._:]+$") then
      raise(fname, "ssl_server_name must be a host name")
    end
    p.server_name = req.ssl_server_name
  end
  local mb = req.max_body_size
  if mb == nil then mb = DEFAULT_MAX_BODY end
  if type(mb) ~= "number" or mb < 0 or mb % 1 ~= 0 then raise(fname, "max_body_size must be an integer >= 0 (bytes)") end
  p.max_body = mb
  if req.keepalive_timeout ~= nil then p.keepalive_timeout = ms(fname, "keepalive_timeout", req.keepalive_timeout) end
  if req.keepalive_pool ~= nil then
    if type(req.keepalive_pool) ~= "number" or req.keepalive_pool < 0 or req.keepalive_pool % 1 ~= 0 then
      raise(fname, "keepalive_pool must be an integer >= 0")
    end
    p.keepalive_pool = req.keepalive_pool
  end
  return p
end

local function result(op)
  local status, reason, flat, body = C.result(op)
  if not status then return nil, reason end
  local h = setmetatable({}, header_mt)
  for i = 1, #flat, 2 do
    local k, v = flat[i]:lower(), flat[i + 1]
    local old = rawget(h, k)
    if old == nil then h[k] = v
    elseif type(old) == "table" then old[#old + 1] = v
    else h[k] = { old, v } end
  end
  return { status = status, reason = reason, headers = h, body = body }
end

--- Sends one request and waits for its response.
-- @tparam table req `{method, url, query, headers, body, timeout, ssl_verify, ssl_ca_file,
--   ssl_server_name, max_body_size, keepalive, keepalive_timeout, keepalive_pool}`
-- @return `{status, reason, headers, body}`, or nil, reason
function M.request(req)
  check_phase("gw.http.request")
  local p = prepare("gw.http.request", req)
  local op = C.start(p)
  C.wait(op)
  return result(op)
end

--- Runs several requests at once and waits for all of them.
-- @tparam table reqs an array of request tables (as for request)
-- @return an array of responses in the same order (false for a request that failed), and an
--   array of the failure reasons (nil where the request succeeded)
function M.request_multi(reqs)
  check_phase("gw.http.request_multi")
  if type(reqs) ~= "table" then raise("gw.http.request_multi", "expected an array of requests", 3) end
  local n = #reqs
  local ps = {}
  for i = 1, n do ps[i] = prepare("gw.http.request_multi", reqs[i]) end
  local ops = {}
  for i = 1, n do ops[i] = C.start(ps[i]) end
  if n > 0 then C.wait(unpack(ops, 1, n)) end
  local out, errs = {}, {}
  for i = 1, n do
    local res, err = result(ops[i])
    out[i] = res or false
    errs[i] = err
  end
  return out, errs
end

--- Idle connections in this process's gw.http keep-alive pool (every host).
function M.pool_size() return C.pool() end

return M
