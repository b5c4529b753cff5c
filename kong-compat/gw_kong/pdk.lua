-- gw_kong.pdk — the `kong` table (Kong's Plugin Development Kit, 3.x) over gw.*.
--
-- Loadable where gw.* does not exist: plugin files capture `kong.log`, `kong.request.get_header`
-- and the like at their top level, in the master. Every function resolves `gw` when it is called,
-- and gw's own phase checks apply (they follow Kong's: kong.service.request.* in rewrite/access,
-- kong.response.get_* in header_filter/body_filter/log, ...).
--
-- docs/kong-compat.md lists every function: supported, partial (how), or not supported.
local json = require "gw.json"
local ngx = require "gw_kong.ngx"
local cjson = require "gw_kong.cjson"
local uri = require "kong.tools.uri"

local type, tostring, tonumber, pairs, ipairs, select = type, tostring, tonumber, pairs, ipairs, select
local error, rawget, setmetatable, pcall = error, rawget, setmetatable, pcall
local concat, sort = table.concat, table.sort
local floor = math.floor
local lower, find, sub, format, gsub = string.lower, string.find, string.sub, string.format, string.gsub
local co_running = coroutine.running

local state = ngx._state

local function G()
  local g = rawget(_G, "gw")
  if not g then error("the kong PDK needs a gw worker (it was called outside one)", 3) end
  return g
end

local function compiled()
  local g = rawget(_G, "gw")
  return g and g._compiled and g._compiled()
end

local function auth() return require "gw.auth" end

local kong = {
  version = "3.9.0",
  version_num = 3009000,
  pdk_major_version = 1,
  pdk_version = "1.5.0",
  default_workspace = "00000000-0000-0000-0000-000000000000",
}

---------------------------------------------------------------------------------------------
-- header values as Kong takes them: strings, numbers, booleans, or arrays of those

local function header_value(name, v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" or t == "boolean" then return tostring(v) end
  if t == "table" then
    local out = {}
    for i = 1, #v do
      local x = v[i]
      local tx = type(x)
      if tx ~= "string" and tx ~= "number" and tx ~= "boolean" then
        error(format('invalid header value in array "%s": got %s, expected string', tostring(name), tx), 3)
      end
      out[i] = tostring(x)
    end
    return out
  end
  error(format('invalid header value for "%s": got %s, expected array of string, string, number or boolean',
               tostring(name), t), 3)
end

local function header_name(name)
  if type(name) ~= "string" then
    error(format("invalid header name %q: got %s, expected string", tostring(name), type(name)), 3)
  end
  return name
end

local function headers_table(h)
  if h == nil then return nil end
  if type(h) ~= "table" then error("headers must be a nil or table", 3) end
  local out = {}
  for k, v in pairs(h) do out[header_name(k)] = header_value(k, v) end
  return out
end

---------------------------------------------------------------------------------------------
-- trusted proxies (gw.trusted_ips)

local trusted_for, trusted_set
local function is_trusted(addr)
  local c = compiled()
  local list = c and c.gw and c.gw.trusted_ips
  if not list or #list == 0 then return false end
  if trusted_for ~= c then
    trusted_set = require("gw.ip").set(list)
    trusted_for = c
  end
  return trusted_set and trusted_set:contains(addr) or false
end

kong.ip = { is_trusted = function(addr) return is_trusted(addr) end }

local function peer_trusted() return is_trusted(G().client.get_ip()) end

local function first(v)
  if type(v) == "table" then return v[1] end
  return v
end

---------------------------------------------------------------------------------------------
-- kong.request

local request = {}
kong.request = request

function request.get_scheme() return G().request.get_scheme() end
function request.get_host() return G().request.get_host() end
function request.get_port() return G().request.get_port() end
function request.get_http_version() return G().request.get_http_version() end
function request.get_method() return G().request.get_method() end
function request.get_raw_path() return G().request.get_path() end
function request.get_path() return uri.normalize(G().request.get_path(), true) end
function request.get_raw_query() return G().request.get_raw_query() end
function request.get_path_with_query() return G().request.get_path_with_query() end
function request.get_header(name) return G().request.get_header(header_name(name)) end
function request.get_headers(max) return G().request.get_headers(max) end
function request.get_query(max) return G().request.get_query(max) end
function request.get_query_arg(name)
  if type(name) ~= "string" then error("query argument name must be a string", 2) end
  return G().request.get_query_arg(name)
end
function request.get_uri_captures() return G().request.get_uri_captures() end
function request.get_start_time() return floor(G().request.get_timings().start * 1000) end

function request.get_forwarded_scheme()
  local g = G()
  if peer_trusted() then
    local v = first(g.request.get_header("X-Forwarded-Proto"))
    if v then return lower(v) end
  end
  return g.request.get_scheme()
end

function request.get_forwarded_host()
  local g = G()
  if peer_trusted() then
    local v = g.request.get_header("X-Forwarded-Host")
    if v then
      v = v:match("^%s*([^,]+)") or v
      return lower((v:gsub(":%d+%s*$", "")))
    end
  end
  return g.request.get_host()
end

function request.get_forwarded_port()
  local g = G()
  if peer_trusted() then
    local v = tonumber(g.request.get_header("X-Forwarded-Port"))
    if v and v >= 1 and v <= 65535 then return v end
    local h = g.request.get_header("X-Forwarded-Host")
    local p = h and tonumber(h:match(":(%d+)%s*$"))
    if p then return p end
  end
  return g.request.get_port()
end

function request.get_forwarded_path()
  local g = G()
  if peer_trusted() then
    local v = g.request.get_header("X-Forwarded-Path")
    if v then return v end
  end
  return g.request.get_path()
end

function request.get_forwarded_prefix()
  local g = G()
  if peer_trusted() then
    local v = g.request.get_header("X-Forwarded-Prefix")
    if v then return v end
  end
  return nil
end

function request.get_raw_body() return G().request.get_raw_body() end

--- Kong's get_body: JSON, form or multipart by the Content-Type (or `mimetype`).
function request.get_body(mimetype, max_args)
  local g = G()
  local ct = mimetype or g.request.get_header("Content-Type")
  if not ct or ct == "" then return nil, "missing content type" end
  local lct = lower(ct)
  if find(lct, "application/x-www-form-urlencoded", 1, true) then
    local body = g.request.get_raw_body()
    return ngx._decode_args(body, max_args or 100), nil, "application/x-www-form-urlencoded"
  elseif find(lct, "application/json", 1, true) or find(lct, "+json", 1, true) then
    local body = g.request.get_raw_body()
    local v = json.decode(body)
    if type(v) ~= "table" then return nil, "invalid json body", "application/json" end
    return v, nil, "application/json"
  elseif find(lct, "multipart/form-data", 1, true) then
    local body = g.request.get_raw_body()
    local parts = require("multipart")(body, ct)
    return parts:get_all(), nil, "multipart/form-data"
  end
  return nil, "unsupported content type '" .. ct .. "'", lct
end

---------------------------------------------------------------------------------------------
-- kong.response

local response = {}
kong.response = response

function response.get_status() return G().response.get_status() end
function response.get_header(name) return G().response.get_header(header_name(name)) end
function response.get_headers(max) return G().response.get_headers(max) end
function response.set_status(status)
  if type(status) ~= "number" then error("code must be a number", 2) end
  return G().response.set_status(status)
end
function response.set_header(name, value)
  return G().response.set_header(header_name(name), header_value(name, value))
end
function response.add_header(name, value)
  return G().response.add_header(header_name(name), header_value(name, value))
end
function response.clear_header(name) return G().response.clear_header(header_name(name)) end
function response.set_headers(h)
  if type(h) ~= "table" then error("headers must be a table", 2) end
  return G().response.set_headers(headers_table(h))
end
function response.get_raw_body() return G().response.get_raw_body() end
function response.set_raw_body(body)
  if type(body) ~= "string" then error("body must be a string", 2) end
  return G().response.set_raw_body(body)
end

--- "exit" when a plugin ended the request (kong.response.exit / error), "error" when gw answered
-- with an error of its own (5xx without reaching an upstream), else "service".
function response.get_source()
  local g = G()
  local st = rawget(ngx._ctx_table(), "__gw_kong_exited")
  if st then return "exit" end
  local ph = g.get_phase()
  if ph == "header_filter" or ph == "body_filter" or ph == "log" then
    local t = g.request.get_timings()
    if not t.upstream_start and g.response.get_status() >= 500 then return "error" end
  end
  return "service"
end

local function check_status(status, min)
  if type(status) ~= "number" then error("code must be a number", 3) end
  if status < min or status > 599 or status % 1 ~= 0 then
    error(format("code must be a number between %d and 599", min), 3)
  end
end

-- kong.response.exit in header_filter: status and headers now; a body is written by the
-- plugin's body_filter wrapper when the plugin has a body_filter (gw_kong.wrap)
local function exit_in_header_filter(g, status, body, headers)
  g.response.set_status(status)
  if headers then g.response.set_headers(headers) end
  if body ~= nil then
    if type(body) == "table" then
      body = cjson.encode(body)
      g.response.set_header("Content-Type", "application/json; charset=utf-8")
    end
    state().exit_body = body
  end
end

function response.exit(status, body, headers)
  check_status(status, 100)
  if body ~= nil and type(body) ~= "string" and type(body) ~= "table" then
    error("body must be a nil, string or table", 2)
  end
  headers = headers_table(headers)
  local g = G()
  ngx._ctx_table().__gw_kong_exited = true
  if g.get_phase() == "header_filter" then return exit_in_header_filter(g, status, body, headers) end
  if type(body) == "table" then
    local s, err = cjson.safe.encode(body)
    if not s then error("could not JSON encode the body: " .. tostring(err), 2) end
    headers = headers or {}
    local has_ct
    for k in pairs(headers) do if lower(k) == "content-type" then has_ct = true end end
    if not has_ct then headers["Content-Type"] = "application/json; charset=utf-8" end
    body = s
  end
  return g.response.exit(status, body, headers)
end

local ERROR_MESSAGES = {
  [400] = "Bad request", [401] = "Unauthorized", [402] = "Payment required", [403] = "Forbidden",
  [404] = "Not found", [405] = "Method not allowed", [406] = "Not acceptable",
  [407] = "Proxy authentication required", [408] = "Request timeout", [409] = "Conflict",
  [410] = "Gone", [411] = "Length required", [412] = "Precondition failed",
  [413] = "Payload too large", [414] = "URI too long", [415] = "Unsupported media type",
  [416] = "Range not satisfiable", [417] = "Expectation failed", [418] = "I'm a teapot",
  [421] = "Misdirected request", [422] = "Unprocessable entity", [423] = "Locked",
  [424] = "Failed dependency", [425] = "Too early", [426] = "Upgrade required",
  [428] = "Precondition required", [429] = "Too many requests",
  [431] = "Request header fields too large", [451] = "Unavailable for legal reasons",
  [494] = "Request header or cookie too large", [500] = "An unexpected error occurred",
  [501] = "Not implemented", [502] = "An invalid response was received from the upstream server",
  [503] = "The upstream server is currently unavailable",
  [504] = "The upstream server is timing out", [505] = "HTTP version not supported",
  [506] = "Variant also negotiates", [507] = "Insufficient storage", [508] = "Loop detected",
  [510] = "Not extended", [511] = "Network authentication required",
}
kong._ERROR_MESSAGES = ERROR_MESSAGES

local MIME = {
  ["application/json"] = "application/json; charset=utf-8",
  ["text/html"] = "text/html; charset=utf-8",
  ["application/xml"] = "application/xml; charset=utf-8",
  ["text/xml"] = "application/xml; charset=utf-8",
  ["text/plain"] = "text/plain; charset=utf-8",
  ["application/*"] = "application/json; charset=utf-8",
  ["text/*"] = "text/plain; charset=utf-8",
  ["*/*"] = "application/json; charset=utf-8",
}
local DEFAULT_MIME = MIME["application/json"]

--- The error body's content type from an Accept header (highest q wins; JSON by default).
local function response_type(accept)
  if type(accept) == "table" then accept = concat(accept, ",") end
  if not accept then return DEFAULT_MIME end
  local best, best_q = DEFAULT_MIME, 0
  for item in accept:gmatch("[^,]+") do
    local media = lower(item:match("^%s*([^;%s]+)") or "")
    local q = tonumber(item:match(";%s*[qQ]%s*=%s*([%d%.]+)")) or 1
    local m = MIME[media]
    if m and q > best_q then best, best_q = m, q end
  end
  return best
end
kong._response_type = response_type

local function xml_escape(s)
  return (gsub(s, "[<>&\"']", { ["<"] = "&lt;", [">"] = "&gt;", ["&"] = "&amp;", ['"'] = "&quot;", ["'"] = "&apos;" }))
end

local function error_body(ct, message, rid)
  if find(ct, "json", 1, true) then
    return '{"message":' .. cjson.encode(message) .. ',"request_id":' .. cjson.encode(rid) .. '}'
  elseif find(ct, "html", 1, true) then
    return "<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n    <title>Error</title>\n" ..
           "  </head>\n  <body>\n    <h1>Error</h1>\n    <p>" .. xml_escape(message) .. ".</p>\n" ..
           "    <p>request_id: " .. xml_escape(rid) .. "</p>\n  </body>\n</html>\n"
  elseif find(ct, "xml", 1, true) then
    return '<?xml version="1.0" encoding="UTF-8"?>\n<error>\n  <message>' .. xml_escape(message) ..
           "</message>\n  <requestid>" .. xml_escape(rid) .. "</requestid>\n</error>\n"
  end
  return message .. "\nrequest_id: " .. rid .. "\n"
end

--- kong.response.error(status [, message [, headers]]): an error response in the format the
-- client's Accept header asks for (JSON, HTML, XML or text), with the request id.
function response.error(status, message, headers)
  check_status(status, 400)
  if message ~= nil then
    if type(message) == "table" then
      local s, err = cjson.safe.encode(message)
      if not s then error("could not JSON encode the error message: " .. tostring(err), 2) end
      message = s
    end
    if type(message) ~= "string" then error("message must be a nil, a string or a table", 2) end
  end
  headers = headers_table(headers) or {}
  local g = G()
  local ct
  for k, v in pairs(headers) do
    if lower(k) == "content-type" then ct = first(v) end
  end
  if not ct then
    ct = response_type(g.request.get_header("Accept"))
    headers["Content-Type"] = ct
  end
  message = message or ERROR_MESSAGES[status] or ("The upstream server responded with " .. status)
  local body = error_body(ct, message, g.request.get_id() or "")
  ngx._ctx_table().__gw_kong_exited = true
  if g.get_phase() == "header_filter" then return exit_in_header_filter(g, status, body, headers) end
  return g.response.exit(status, body, headers)
end

---------------------------------------------------------------------------------------------
-- kong.service, kong.service.request, kong.service.response

local service = { request = {}, response = {} }
kong.service = service

function service.set_upstream(host) return G().service.set_upstream(host) end
function service.set_target(host, port) return G().service.set_target(host, port) end
function service.set_timeouts(c, w, r) return G().service.set_timeouts(c, w, r) end
function service.set_retries(retries)
  if type(retries) ~= "number" or retries < 0 or retries % 1 ~= 0 then
    error("retries must be an integer", 2)
  end
  state().retries = retries          -- gw takes retries from the service only
  return true
end
local function no_tls(name)
  return function() return nil, name .. " is not supported by gw" end
end
service.set_tls_cert_key = no_tls("kong.service.set_tls_cert_key")
service.set_tls_verify = no_tls("kong.service.set_tls_verify")
service.set_tls_verify_depth = no_tls("kong.service.set_tls_verify_depth")
service.set_tls_verify_store = no_tls("kong.service.set_tls_verify_store")
service.set_target_retry_callback = no_tls("kong.service.set_target_retry_callback")

local sreq = service.request

-- the upstream query as Kong plugins changed it (gw has no getter for it), for clear_query_arg
local function upstream_query()
  local q = state().up_query
  if q then return q end
  return G().request.get_raw_query()
end

local function set_raw_query(q)
  state().up_query = q
  return G().service.request.set_raw_query(q)
end

function sreq.set_scheme(scheme)
  if type(scheme) ~= "string" then error("scheme must be a string", 2) end
  if scheme ~= "http" and scheme ~= "https" then error("invalid scheme: " .. scheme, 2) end
  return nil, "kong.service.request.set_scheme is not supported by gw"
end
function sreq.set_path(path)
  if type(path) ~= "string" then error("path must be a string", 2) end
  return G().service.request.set_path(path)
end
function sreq.set_raw_query(q)
  if type(q) ~= "string" then error("query must be a string", 2) end
  return set_raw_query(q)
end
function sreq.set_method(m)
  if type(m) ~= "string" then error("method must be a string", 2) end
  return G().service.request.set_method(m)
end
function sreq.set_query(args)
  if type(args) ~= "table" then error("args must be a table", 2) end
  return set_raw_query(ngx.encode_args(args))
end
function sreq.clear_query_arg(name)
  if type(name) ~= "string" then error("query argument name must be a string", 2) end
  local q = upstream_query()
  if q == "" then return end
  return set_raw_query(auth().strip_query_arg(q, name))
end
function sreq.set_header(name, value)
  return G().service.request.set_header(header_name(name), header_value(name, value))
end
function sreq.add_header(name, value)
  return G().service.request.add_header(header_name(name), header_value(name, value))
end
function sreq.clear_header(name) return G().service.request.clear_header(header_name(name)) end
function sreq.set_headers(h)
  if type(h) ~= "table" then error("headers must be a table", 2) end
  return G().service.request.set_headers(headers_table(h))
end
function sreq.set_raw_body(body)
  if type(body) ~= "string" then error("body must be a string", 2) end
  return G().service.request.set_raw_body(body)
end

--- Encodes args as the body: JSON, form or multipart by `mimetype` (default: the request's
-- Content-Type).
function sreq.set_body(args, mimetype)
  if type(args) ~= "table" then error("args must be a table", 2) end
  local g = G()
  local ct = mimetype or g.request.get_header("Content-Type")
  if not ct or ct == "" then
    return nil, "content type was neither explicitly given as an argument or received as a header"
  end
  local lct = lower(ct)
  if find(lct, "multipart/form-data", 1, true) then
    local mp = require("multipart")("", ct)
    for k, v in pairs(args) do mp:set_simple(k, tostring(v)) end
    g.service.request.set_raw_body(mp:tostring())
    g.service.request.set_header("Content-Type", ct)
    return true
  end
  if find(lct, "application/x-www-form-urlencoded", 1, true) then
    g.service.request.set_raw_body(ngx.encode_args(args))
    g.service.request.set_header("Content-Type", ct)
    return true
  end
  if find(lct, "json", 1, true) then
    local s, err = cjson.safe.encode(args)
    if not s then return nil, err end
    g.service.request.set_raw_body(s)
    g.service.request.set_header("Content-Type", ct)
    return true
  end
  return nil, "unsupported content type '" .. ct .. "'"
end

function sreq.enable_buffering()
  -- gw gathers the whole response for every chain with a body_filter; nothing to switch on
end
sreq.disable_tls = no_tls("kong.service.request.disable_tls")
sreq.enable_tls = no_tls("kong.service.request.enable_tls")

local sresp = service.response
function sresp.get_status() return G().response.get_status() end
function sresp.get_headers(max) return G().response.get_headers(max) end
function sresp.get_header(name) return G().response.get_header(header_name(name)) end
function sresp.get_raw_body() return G().response.get_raw_body() end
function sresp.get_body(mimetype, max_args)
  local g = G()
  local ct = lower(mimetype or g.response.get_header("Content-Type") or "")
  local body = g.response.get_raw_body()
  if find(ct, "json", 1, true) then
    local v = json.decode(body)
    if type(v) ~= "table" then return nil, "invalid json body" end
    return v
  elseif find(ct, "application/x-www-form-urlencoded", 1, true) then
    return ngx._decode_args(body, max_args or 100)
  elseif find(ct, "multipart/form-data", 1, true) then
    return require("multipart")(body, ct):get_all()
  end
  return nil, "unsupported content type '" .. ct .. "'"
end

---------------------------------------------------------------------------------------------
-- kong.client

local client = {}
kong.client = client

function client.get_ip() return G().client.get_ip() end
function client.get_forwarded_ip() return G().client.get_forwarded_ip() end
function client.get_port() return G().client.get_port() end
function client.get_forwarded_port()
  local g = G()
  if peer_trusted() then
    local v = tonumber(g.request.get_header("X-Forwarded-Port"))
    if v then return v end
  end
  return g.client.get_port()
end
function client.get_credential() return G().client.get_credential() end
function client.get_consumer() return G().client.get_consumer() end
function client.get_protocol() return G().request.get_scheme() end
function client.authenticate(consumer, credential)
  if consumer ~= nil and type(consumer) ~= "table" then error("consumer must be a table or nil", 2) end
  if credential ~= nil and type(credential) ~= "table" then error("credential must be a table or nil", 2) end
  if consumer == nil and credential == nil then error("either credential or consumer must be provided", 2) end
  return G().client.authenticate(consumer, credential)
end

--- The consumer of the config by id (or, with search_by_username, by username).
function client.load_consumer(consumer_id, search_by_username)
  if type(consumer_id) ~= "string" then return nil, "consumer_id must be a string" end
  local idx = auth().index()
  local c = idx.by_id[consumer_id]
  if not c and search_by_username then c = idx.by_username[consumer_id] end
  return c
end
client.tls = {
  request_client_certificate = no_tls("kong.client.tls.request_client_certificate"),
  disable_session_reuse = no_tls("kong.client.tls.disable_session_reuse"),
  get_full_client_certificate_chain = no_tls("kong.client.tls.get_full_client_certificate_chain"),
  set_client_verify = no_tls("kong.client.tls.set_client_verify"),
}

---------------------------------------------------------------------------------------------
-- kong.ctx: shared is the request's gw.ctx.shared (also ngx.ctx); plugin is gw.ctx.plugin

kong.ctx = setmetatable({}, { __index = function(_, k)
  local g = rawget(_G, "gw")
  if k == "shared" then return ngx._ctx_table() end
  if k == "plugin" then
    local p = g and g.ctx.plugin
    if p then return p end
    local t = ngx._ctx_table()
    local own = t.__gw_kong_plugin_ctx
    if not own then own = {} t.__gw_kong_plugin_ctx = own end
    return own
  end
end })

---------------------------------------------------------------------------------------------
-- kong.log

local log = require("gw_kong.log")(kong)
kong.log = log

---------------------------------------------------------------------------------------------
-- kong.node, kong.router, kong.table, kong.nginx, kong.plugin, kong.vault, kong.configuration

local hostname
local function get_hostname()
  if hostname then return hostname end
  local f = io.open("/proc/sys/kernel/hostname", "r")
  if f then hostname = (f:read("*l") or ""):match("^%s*(.-)%s*$") f:close() end
  if not hostname or hostname == "" then
    local p = io.popen("hostname 2>/dev/null")
    if p then hostname = (p:read("*l") or "localhost") p:close() end
  end
  hostname = hostname or "localhost"
  return hostname
end

local node_id
kong.node = {
  get_id = function()
    node_id = node_id or auth().uuid_from("node:" .. get_hostname())
    return node_id
  end,
  get_hostname = get_hostname,
  get_memory_stats = function(unit, scale)
    local kb = collectgarbage("count")
    return {
      lua_shared_dicts = {},
      workers_lua_vms = { { pid = ngx.worker.pid(), http_allocated_gc = floor(kb * 1024) } },
    }
  end,
}
kong.cluster = { get_id = function() return kong.node.get_id() end }

-- Kong entities: a copy of gw's compiled route/service with an `id` (stable: derived from the
-- name) and the fields Kong plugins read, made once per compiled table
local entity_cache = setmetatable({}, { __mode = "k" })
local function entity(kind, t, fields)
  if not t then return nil end
  local e = entity_cache[t]
  if e then return e end
  e = { id = t.id or auth().uuid_from(kind .. ":" .. tostring(t.name)) }
  for _, f in ipairs(fields) do e[f] = t[f] end
  entity_cache[t] = e
  return e
end
local ROUTE_FIELDS = { "name", "paths", "hosts", "methods", "strip_path", "preserve_host", "tags",
                       "protocols", "https_redirect_status_code" }
local SERVICE_FIELDS = { "name", "protocol", "host", "port", "path", "connect_timeout", "write_timeout",
                         "read_timeout", "retries", "tags" }
kong._entity = function(kind, t)
  return entity(kind, t, kind == "route" and ROUTE_FIELDS or SERVICE_FIELDS)
end
kong.router = {
  get_route = function() return entity("route", G().router.get_route(), ROUTE_FIELDS) end,
  get_service = function() return entity("service", G().router.get_service(), SERVICE_FIELDS) end,
}

kong.table = {
  new = require "table.new",
  clear = require "table.clear",
  merge = function(t1, t2)
    local out = {}
    if t1 then for k, v in pairs(t1) do out[k] = v end end
    if t2 then for k, v in pairs(t2) do out[k] = v end end
    return out
  end,
}

kong.nginx = {
  get_subsystem = function() return "http" end,
  get_statistics = function()
    return { connections_active = 0, connections_reading = 0, connections_writing = 0,
             connections_waiting = 0, connections_accepted = 0, connections_handled = 0,
             total_requests = 0 }
  end,
  get_ctx = function(k) return ngx._ctx_table()[k] end,
  set_ctx = function(k, v) ngx._ctx_table()[k] = v end,
}

-- the running instance's conf, per coroutine (set by the plugin wrapper, gw_kong.wrap)
local current_conf = setmetatable({}, { __mode = "k" })
kong._current_conf = current_conf
local plugin_ids = setmetatable({}, { __mode = "k" })
kong.plugin = {
  get_id = function()
    local conf = current_conf[co_running() or 0]
    if not conf then return nil end
    local id = plugin_ids[conf]
    if not id then
      id = conf.__plugin_id or auth().uuid_from("plugin:" .. tostring(conf))
      plugin_ids[conf] = id
    end
    return id
  end,
}

kong.vault = {
  is_reference = function(ref) return type(ref) == "string" and sub(ref, 1, 8) == "{vault:/" end,
  parse_reference = function(ref) return nil, "vaults are not supported by gw: " .. tostring(ref) end,
  get = function(ref) return nil, "vaults are not supported by gw: " .. tostring(ref) end,
  update = function(options) return options end,
  try = function(callback, options) return callback(options) end,
  flush = function() end,
  init_worker = function() end,
  warmup = function() end,
}

-- kong.configuration: the settings plugins read, Kong's defaults for a DB-less node; trusted_ips
-- and real_ip_header come from gw's config
local CONFIG_STATIC = {
  database = "off", role = "traditional", untrusted_lua = "sandbox",
  untrusted_lua_sandbox_requires = {}, untrusted_lua_sandbox_environment = {},
  proxy_listeners = {}, admin_listeners = {}, status_listeners = {}, stream_listeners = {},
  headers = { "server_tokens", "latency_tokens", "x-kong-request-id" }, plugins = { "bundled" },
  tracing_instrumentations = { "off" }, tracing_sampling_rate = 0.01, dns_resolver = {},
  db_cache_ttl = 0, db_cache_neg_ttl = 0, host_ports = {}, lua_ssl_verify_depth = 1,
  prefix = (rawget(_G, "GW_HOME") or ".") .. "/", nginx_worker_processes = "auto",
  cluster_control_plane = nil, router_flavor = "traditional_compatible", log_level = "notice",
  real_ip_recursive = "off", error_default_type = "application/json", anonymous_reports = false,
}
local configuration_get
kong.configuration = setmetatable({}, {
  __index = function(_, k) return configuration_get(k) end,
  __newindex = function() error("kong.configuration is read-only", 2) end,
})
--- a plain copy (Kong's kong.configuration.remove_sensitive())
CONFIG_STATIC.remove_sensitive = function()
  local out = {}
  for k in pairs(CONFIG_STATIC) do
    if k ~= "remove_sensitive" then out[k] = configuration_get(k) end
  end
  for _, k in ipairs({ "trusted_ips", "real_ip_header" }) do out[k] = configuration_get(k) end
  return out
end
configuration_get = function(k)
  local c = compiled()
  local gwc = c and c.gw
  if gwc then
    if k == "trusted_ips" then return gwc.trusted_ips end
    if k == "real_ip_header" then return gwc.real_ip_header end
    if k == "log_level" and gwc.log_level then return gwc.log_level end
    if k == "nginx_worker_processes" then return gwc.workers end
  end
  return CONFIG_STATIC[k]
end

---------------------------------------------------------------------------------------------
-- kong.cache / kong.core_cache, kong.db

kong.cache = require("gw_kong.cache")
kong.core_cache = kong.cache
kong.db = require("gw_kong.db")

---------------------------------------------------------------------------------------------
-- timers, events, telemetry, tracing: what runs in gw, and inert stand-ins for the rest

kong.timer = {
  at = function(_, delay, cb, ...) return G().timer.at(delay, cb, ...) end,
  every = function(_, interval, cb, ...) return G().timer.every(interval, cb, ...) end,
  named_at = function(_, _, delay, cb, ...) return G().timer.at(delay, cb, ...) end,
  named_every = function(_, _, interval, cb, ...) return G().timer.every(interval, cb, ...) end,
  cancel = function() return nil, "timers cannot be cancelled in gw" end,
  pause = function() return nil, "timers cannot be paused in gw" end,
  resume = function() return nil, "timers cannot be resumed in gw" end,
  is_managed = function() return false end,
  stats = function() return { sys = { running = 0, pending = 0, waiting = 0, total = 0 }, timers = {} } end,
}

local function yes() return true end
local function nothing() end
kong.worker_events = { register = nothing, unregister = nothing, post = yes, post_local = yes, poll = nothing }
kong.cluster_events = { subscribe = nothing, broadcast = yes }
kong.telemetry = { log = nothing }

local NOOP_SPAN = setmetatable({}, { __index = function() return nothing end })
function NOOP_SPAN.is_recording() return false end
kong.tracing = setmetatable({
  start_span = function() return NOOP_SPAN end,
  create_span = function() return NOOP_SPAN end,
  active_span = function() return nil end,
  set_active_span = nothing,
  link_span = nothing,
  process_span = nothing,
  get_sampling_decision = function() return false end,
  set_should_sample = nothing,
}, { __index = function() return nothing end })

kong.dns = nil
kong.ngx = ngx

return kong
