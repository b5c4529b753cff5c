-- gw.config — the declarative config: YAML text -> validated, normalized "compiled" table that
-- the C core consumes (layout in the contract). Every error is reported, each as
-- "FILE:LINE:COL: PATH: message", sorted by position.
--
--   config.load_file(path)            -> compiled | nil, errors
--   config.load_string(text [, name]) -> compiled | nil, errors
--   config.compile(value, marks, name [, opts]) -> compiled | nil, errors
--       opts.plugin_dirs: plugin directories to use instead of GW_HOME/plugins + gw.plugins_path
--   config.regex_check(re) -> true | nil, "reason"   (hook: the lead wires PCRE2 in here)
--   config.canonical_json(value), config.sha256(text)
local schema = require("gw.schema")
local plugins = require("gw.plugins")

local M = {}

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local concat, sort = table.concat, table.sort
local floor = math.floor
local join, index, is_null = schema.join, schema.index, schema.is_null

-- Highest index of a list that may have holes (items that failed validation), 0 for non-lists.
local function maxn(t) return type(t) == "table" and table.maxn(t) or 0 end

---------------------------------------------------------------------------------------------
-- Small parsers shared by several sections

local SIZE_MULT = { [""] = 1, k = 1024, m = 1024 * 1024, g = 1024 * 1024 * 1024 }

--- "512k" / "10m" / "1g" / 4096 -> bytes, or nil.
function M.parse_size(v)
  if type(v) == "number" then
    if v >= 0 and floor(v) == v then return v end
    return nil
  end
  if type(v) ~= "string" then return nil end
  local n, unit = v:lower():match("^%s*(%d+)%s*([kmg]?)b?%s*$")
  if not n then return nil end
  return tonumber(n) * SIZE_MULT[unit]
end

local SIZE_MSG = "expected a size (bytes, or a number with a k, m or g suffix)"

local function valid_port(p)
  p = tonumber(p)
  return p and floor(p) == p and p >= 1 and p <= 65535 and p or nil
end

local function valid_label(l)
  return #l <= 63 and (l:find("^[%w_]$") ~= nil or l:find("^[%w_][%w_%-]*[%w_]$") ~= nil)
end

--- A host name or IP address (no wildcard, no port).
local function valid_host(h)
  if type(h) ~= "string" or h == "" or #h > 253 then return false end
  if h:find("^%[[%x:%.]+%]$") then return true end        -- [IPv6]
  if h:find("^[%x:]+$") and h:find(":") then return true end -- bare IPv6 (listen addresses)
  for label in (h .. "."):gmatch("([^.]*)%.") do
    if not valid_label(label) then return false end
  end
  return h:sub(-1) ~= "."
end
M.valid_host = valid_host

--- "host:port", "[::1]:port", ":port", "port", "*:port" -> host, port | nil, err
local function parse_address(s, default_port)
  if type(s) ~= "string" then return nil, "expected a string" end
  local host, port
  if s:find("^%[") then
    host, port = s:match("^(%[[^%]]+%]):?(%d*)$")
  elseif s:find("^%d+$") then
    host, port = "0.0.0.0", s
  else
    host, port = s:match("^([^:]*):(%d+)$")
    if not host then host, port = s, "" end
  end
  if not host then return nil, 'invalid address "' .. s .. '" (expected "host:port")' end
  if host == "" or host == "*" then host = "0.0.0.0" end
  if port == "" then
    if not default_port then return nil, 'invalid address "' .. s .. '": missing port' end
    port = default_port
  end
  local p = valid_port(port)
  if not p then return nil, 'invalid address "' .. s .. '": port must be between 1 and 65535' end
  if not valid_host(host) then return nil, 'invalid address "' .. s .. '": bad host' end
  return host, p
end
M.parse_address = parse_address

local DEFAULT_PORTS = { http = 80, https = 443 }

--- "scheme://host[:port][/path]" -> { protocol, host, port, path } | nil, err
function M.parse_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, 'invalid url "' .. url .. '": expected scheme://host[:port][/path]' end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" and scheme ~= "echo" then
    return nil, 'unsupported url scheme "' .. scheme .. '" (expected http, https or echo)'
  end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  if path:find("^[?#]") then path = "/" .. path end
  if path == "" then path = nil end
  if authority:find("@") then return nil, 'invalid url "' .. url .. '": credentials are not supported' end
  local out = { protocol = scheme, path = path }
  if scheme == "echo" then
    return out
  end
  local host, port
  if authority:find("^%[") then
    host, port = authority:match("^(%[[^%]]+%]):?(%d*)$")
  else
    host, port = authority:match("^([^:]*):?(%d*)$")
  end
  if not host or host == "" then return nil, 'invalid url "' .. url .. '": missing host' end
  if authority:find(":$") then return nil, 'invalid url "' .. url .. '": missing port after ":"' end
  if not valid_host(host) then return nil, 'invalid url "' .. url .. '": bad host "' .. host .. '"' end
  if port ~= "" then
    out.port = valid_port(port)
    if not out.port then return nil, 'invalid url "' .. url .. '": port must be between 1 and 65535' end
  else
    out.port = DEFAULT_PORTS[scheme]
  end
  out.host = host:lower()
  return out
end

--- The default regex check (until PCRE2 is wired in): balanced groups and classes.
function M.default_regex_check(re)
  if re == "" then return nil, "empty regex" end
  local depth, in_class, i, n = 0, false, 1, #re
  while i <= n do
    local c = re:sub(i, i)
    if c == "\\" then
      if i == n then return nil, "trailing backslash" end
      i = i + 1
    elseif in_class then
      if c == "]" then in_class = false end
    elseif c == "[" then
      in_class = true
      if re:sub(i + 1, i + 1) == "^" then i = i + 1 end
      if re:sub(i + 1, i + 1) == "]" then i = i + 1 end   -- a leading "]" is literal
    elseif c == "(" then
      depth = depth + 1
    elseif c == ")" then
      depth = depth - 1
      if depth < 0 then return nil, 'unmatched ")"' end
    end
    i = i + 1
  end
  if in_class then return nil, 'missing "]"' end
  if depth > 0 then return nil, 'missing ")"' end
  return true
end

do
  -- PCRE2, the router's own compiler, when running inside gw; the bracket check elsewhere
  local ok, regex = pcall(require, "gw.regex")
  M.regex_check = ok and function(re)
    if re == "" then return nil, "empty regex" end
    return regex.check(re)
  end or M.default_regex_check
end

local ncpu_cache
function M.ncpu()
  if ncpu_cache then return ncpu_cache end
  local n
  local p = io.popen("nproc 2>/dev/null")
  if p then
    n = tonumber(p:read("*l") or "")
    p:close()
  end
  if not n or n < 1 then
    local f = io.open("/proc/cpuinfo", "r")
    if f then
      n = 0
      for line in f:lines() do
        if line:find("^processor%s*:") then n = n + 1 end
      end
      f:close()
    end
  end
  if not n or n < 1 then n = 1 end
  ncpu_cache = n
  return n
end

---------------------------------------------------------------------------------------------
-- The structure of the config (types, defaults, unknown keys); semantics are checked below.

local function name_check(v)
  if v:find("^[%w%.%-_~]+$") then return true end
  return nil, "invalid name: use letters, digits, '.', '-', '_' or '~'"
end

local function size_check(v)
  if M.parse_size(v) then return true end
  return nil, SIZE_MSG
end

local NAME = { type = "string", custom_validator = name_check }
local STRINGS = { type = "array", elements = { type = "string" } }
local TAGS = STRINGS
local MAXINT = 2147483646

local function int(default, min, max)
  return { type = "integer", default = default, between = { min or 0, max or MAXINT } }
end
local function size(default)
  return { type = "any", default = default, custom_validator = size_check }
end

local function plugin_entry(top)
  local f = {
    { name = { type = "string", required = true } },
    { config = { type = "any" } },
    { enabled = { type = "boolean", default = true } },
    { protocols = STRINGS },
    { tags = TAGS },
    { id = { type = "string" } },
  }
  if top then
    f[#f + 1] = { service = { type = "any" } }
    f[#f + 1] = { route = { type = "any" } }
    f[#f + 1] = { consumer = { type = "any" } }
  end
  return { type = "record", fields = f }
end

local function route(top)
  local f = {
    { name = NAME },
    { paths = STRINGS },
    { hosts = STRINGS },
    { methods = STRINGS },
    { headers = { type = "map", keys = { type = "string" }, values = { type = "any" } } },
    { strip_path = { type = "boolean", default = true } },
    { preserve_host = { type = "boolean", default = false } },
    { regex_priority = { type = "integer", default = 0 } },
    { protocols = { type = "array", elements = { type = "string", one_of = { "http", "https" } } } },
    { https_redirect_status_code = { type = "integer", default = 426, one_of = { 426, 301, 302, 307, 308 } } },
    { require_client_cert = { type = "boolean", default = false } },
    { plugins = { type = "array", elements = plugin_entry(false) } },
    { tags = TAGS },
    { id = { type = "string" } },
  }
  if top then table.insert(f, 2, { service = { type = "any", required = true } }) end
  return { type = "record", fields = f }
end

local SERVICE = { type = "record", fields = {
  { name = { type = "string", required = true, custom_validator = name_check } },
  { url = { type = "string" } },
  { protocol = { type = "string", one_of = { "http", "https", "echo" } } },
  { host = { type = "string" } },
  { port = { type = "integer", between = { 1, 65535 } } },
  { path = { type = "string" } },
  { connect_timeout = int(60000, 1) },
  { write_timeout = int(60000, 1) },
  { read_timeout = int(60000, 1) },
  { retries = int(5, 0, 32767) },
  { tls_verify = { type = "boolean" } },
  { tls_verify_depth = { type = "integer", between = { 0, 100 } } },
  { ca_certificates = STRINGS },
  { client_certificate = { type = "any" } },
  { routes = { type = "array", elements = route(false) } },
  { plugins = { type = "array", elements = plugin_entry(false) } },
  { tags = TAGS },
  { id = { type = "string" } },
} }

local TARGET_FIELDS = {
  { target = { type = "string", required = true } },
  { weight = int(100, 0, 65535) },
  { tags = TAGS },
  { id = { type = "string" } },
}
local TOP_TARGET_FIELDS = { { upstream = { type = "any", required = true } } }
for _, f in ipairs(TARGET_FIELDS) do TOP_TARGET_FIELDS[#TOP_TARGET_FIELDS + 1] = f end
local UPSTREAM = { type = "record", fields = {
  { name = { type = "string", required = true, custom_validator = name_check } },
  { targets = { type = "array", default = {}, elements = { type = "record", fields = TARGET_FIELDS } } },
  { healthchecks = { type = "record", fields = {
    { passive = { type = "record", fields = {
      { failures = int(3, 0, 1000) },
      { cooldown = { type = "number", default = 10, between = { 0, 86400 } } },
    } } },
  } } },
  { tags = TAGS },
  { id = { type = "string" } },
} }

local function cidr_check(v)
  local a, err = require("gw.ip").parse_cidr(v)
  if not a then return nil, err end
  return true
end
local function nonempty_string(v)
  if v == "" then return nil, "must not be empty" end
  return true
end

-- TLS 1.2 ciphers: forward secrecy and AEAD only (Mozilla's "intermediate" list, without DHE).
M.DEFAULT_SSL_CIPHERS = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" ..
  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:" ..
  "ECDHE-RSA-CHACHA20-POLY1305"
M.DEFAULT_SSL_CIPHERSUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

-- One JSON object per request (runtime/accesslog.c lists the variables).
M.DEFAULT_ACCESS_LOG_FORMAT = '{"time":"$time_iso8601","request_id":"$request_id","client":"$remote_addr",' ..
  '"method":"$request_method","uri":"$request_uri","status":$status,"bytes_sent":$bytes_sent,' ..
  '"request_length":$request_length,"route":"$route","service":"$service","consumer":"$consumer",' ..
  '"latency_ms":$latency_ms,"upstream_latency_ms":$upstream_latency_ms,' ..
  '"gateway_latency_ms":$gateway_latency_ms,"upstream":"$upstream_addr","user_agent":"$http_user_agent"}'

local GW = { type = "record", fields = {
  { listen = { type = "any", default = { "0.0.0.0:8000" } } },
  { admin_listen = { type = "any", default = "127.0.0.1:8001" } },
  { status_listen = { type = "any", default = "off" } },
  { metrics = { type = "boolean", default = true } },
  { admin_token = { type = "string" } },
  { workers = { type = "any", default = "auto" } },
  { worker_watchdog = int(10, 0, 86400) },
  { error_log = { type = "string", default = "stderr" } },
  { log_level = { type = "string", default = "notice",
                  one_of = { "debug", "info", "notice", "warn", "error" } } },
  { access_log = { type = "any", default = "off" } },
  { access_log_format = { type = "string", default = M.DEFAULT_ACCESS_LOG_FORMAT } },
  { limits = { type = "record", fields = {
    { max_request_line = size(8192) },
    { max_header_size = size(32768) },
    { max_headers = int(100, 1, 100000) },
    { max_body_size = size("100m") },
  } } },
  { timeouts = { type = "record", fields = {
    { client_header = int(60000, 1) },
    { client_body = int(60000, 1) },
    { client_body_min_rate = int(1024) },
    { keepalive = int(75000, 1) },
    { send = int(60000, 1) },
  } } },
  { max_connections = int(1024, 1, 1000000) },
  { upstream_keepalive = { type = "record", fields = {
    { max_idle = int(64) },
    { idle_timeout = int(60000) },
    { max_requests = int(10000) },
  } } },
  { shared_dicts = { type = "map", default = {}, keys = { type = "string", custom_validator = name_check },
                     values = { type = "any", custom_validator = size_check } } },
  { plugins_path = { type = "array", default = {}, elements = { type = "string" } } },
  { kong_plugins_path = { type = "array", default = {}, elements = { type = "string" } } },
  { trusted_ips = { type = "array", default = {}, elements = { type = "string", custom_validator = cidr_check } } },
  { real_ip_header = { type = "string", default = "X-Forwarded-For", custom_validator = nonempty_string } },
  { underscores_in_headers = { type = "boolean", default = false } },
  -- TLS (compile_tls below)
  { ssl_cert = { type = "string" } },
  { ssl_cert_key = { type = "string" } },
  { ssl_protocols = { type = "any", default = "TLSv1.2 TLSv1.3" } },
  { ssl_ciphers = { type = "string", default = M.DEFAULT_SSL_CIPHERS } },
  { ssl_ciphersuites = { type = "string", default = M.DEFAULT_SSL_CIPHERSUITES } },
  { ssl_session_tickets = { type = "boolean", default = true } },
  { ssl_ticket_rotation = int(3600000, 1000) },
} }

-- Consumers and their credentials, in Kong's declarative format. Semantics (uniqueness across
-- consumers, password hashing, ids) are in compile_consumers below.
local function nonempty(v)
  if v ~= "" then return true end
  return nil, "must not be empty"
end
local NONEMPTY = { type = "string", custom_validator = nonempty }
-- A list of credentials: nested in a consumer, or (top) at the top level of a Kong declarative
-- file, naming its consumer by username or id in `consumer`.
local function credential(fields, top)
  local f = {
    { id = { type = "string" } },
    { tags = TAGS },
    { created_at = { type = "any" } },
  }
  if top then table.insert(f, { consumer = { type = "any", required = true } }) end
  for _, x in ipairs(fields) do table.insert(f, x) end
  return { type = "array", elements = { type = "record", fields = f } }
end
M.JWT_ALGORITHMS = { "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
                     "PS256", "PS384", "PS512", "EdDSA" }
local JWT_ALG = {}
for _, a in ipairs(M.JWT_ALGORITHMS) do JWT_ALG[a] = true end
local CREDENTIAL_FIELDS = {
  keyauth_credentials = {
    { key = { type = "string", required = true, custom_validator = nonempty } },
  },
  basicauth_credentials = {
    { username = { type = "string", required = true, custom_validator = nonempty } },
    { password = NONEMPTY },
    { password_hash = { type = "string" } },
  },
  acls = {
    { group = { type = "string", required = true, custom_validator = nonempty } },
  },
  jwt_secrets = {
    { key = NONEMPTY },
    { algorithm = { type = "string", default = "HS256", one_of = M.JWT_ALGORITHMS } },
    { secret = { type = "string" } },
    { rsa_public_key = { type = "string" } },
  },
}
local CONSUMER = { type = "record", fields = {
  { id = NONEMPTY },
  { username = NONEMPTY },
  { custom_id = NONEMPTY },
  { tags = TAGS },
  { created_at = { type = "any" } },
  { updated_at = { type = "any" } },
  { keyauth_credentials = credential(CREDENTIAL_FIELDS.keyauth_credentials) },
  { basicauth_credentials = credential(CREDENTIAL_FIELDS.basicauth_credentials) },
  { acls = credential(CREDENTIAL_FIELDS.acls) },
  { jwt_secrets = credential(CREDENTIAL_FIELDS.jwt_secrets) },
  -- other Kong credential kinds: accepted, unused
  { hmacauth_credentials = { type = "array", elements = { type = "any" } } },
  { oauth2_credentials = { type = "array", elements = { type = "any" } } },
  { mtls_auth_credentials = { type = "array", elements = { type = "any" } } },
  { plugins = { type = "any" } },
} }

-- TLS entities, in Kong's declarative format, with gw's client verification fields.
local CERTIFICATE = { type = "record", fields = {
  { id = NONEMPTY },
  { cert = { type = "string", required = true } },
  { key = { type = "string", required = true } },
  { cert_alt = { type = "string" } },
  { key_alt = { type = "string" } },
  { snis = { type = "array", elements = { type = "any" } } },
  { default = { type = "boolean", default = false } },
  { client_ca = { type = "string" } },
  { verify = { type = "string", one_of = { "required", "optional", "off" } } },
  { verify_depth = int(3, 0, 100) },
  { tags = TAGS },
  { created_at = { type = "any" } },
  { updated_at = { type = "any" } },
} }
local SNI = { type = "record", fields = {
  { name = { type = "string", required = true } },
  { certificate = { type = "any", required = true } },
  { id = { type = "string" } },
  { tags = TAGS },
  { created_at = { type = "any" } },
  { updated_at = { type = "any" } },
} }
local CA_CERTIFICATE = { type = "record", fields = {
  { id = { type = "string", required = true, custom_validator = nonempty } },
  { cert = { type = "string", required = true } },
  { cert_digest = { type = "string" } },
  { tags = TAGS },
  { created_at = { type = "any" } },
  { updated_at = { type = "any" } },
} }

local CONFIG = { type = "record", fields = {
  { _format_version = { type = "any", required = true } },
  { _transform = { type = "boolean" } },
  { _comment = { type = "any" } },
  { gw = GW },
  { services = { type = "array", default = {}, elements = SERVICE } },
  { routes = { type = "array", default = {}, elements = route(true) } },
  { upstreams = { type = "array", default = {}, elements = UPSTREAM } },
  { consumers = { type = "array", default = {}, elements = CONSUMER } },
  { plugins = { type = "array", default = {}, elements = plugin_entry(true) } },
  { certificates = { type = "array", default = {}, elements = CERTIFICATE } },
  { snis = { type = "array", default = {}, elements = SNI } },
  { ca_certificates = { type = "array", default = {}, elements = CA_CERTIFICATE } },
  -- Kong's top-level entities with a foreign key: merged into their consumer / upstream
  { keyauth_credentials = credential(CREDENTIAL_FIELDS.keyauth_credentials, true) },
  { basicauth_credentials = credential(CREDENTIAL_FIELDS.basicauth_credentials, true) },
  { acls = credential(CREDENTIAL_FIELDS.acls, true) },
  { jwt_secrets = credential(CREDENTIAL_FIELDS.jwt_secrets, true) },
  { targets = { type = "array", elements = { type = "record", fields = TOP_TARGET_FIELDS } } },
} }
M.SCHEMA = CONFIG

local FORMAT_VERSIONS = { "1.0", "1.1", "2.1", "3.0" }

---------------------------------------------------------------------------------------------
-- Error collection: PATH -> position through the marks (nearest existing parent for paths
-- that are not in the file, e.g. a missing required key -> its enclosing mapping).

local function parent_path(p)
  if p == "" then return nil end
  if p:sub(-1) == "]" then
    local q = p:match("^(.*)%[%d+%]$")
    if q then return q end
  end
  local q = p:match("^(.*)%.[^%.]*$")
  return q or ""
end

local function find_mark(marks, path)
  if type(marks) ~= "table" then return nil end
  local p = path
  while p do
    local m = marks[p]
    if m then return m end
    p = parent_path(p)
  end
end

local function new_errors(marks, name)
  local list, seen = {}, {}
  local E = {}
  function E.add(path, msg)
    local key = path .. "\0" .. msg
    if seen[key] then return end
    seen[key] = true
    local m = find_mark(marks, path)
    list[#list + 1] = { path = path, msg = msg, line = m and m.line or 0, col = m and m.col or 0,
                        has = m ~= nil, n = #list }
  end
  function E.count() return #list end
  function E.result()
    sort(list, function(a, b)
      if a.line ~= b.line then return a.line < b.line end
      if a.col ~= b.col then return a.col < b.col end
      return a.n < b.n
    end)
    local out = {}
    for i, e in ipairs(list) do
      local where = e.has and (name .. ":" .. e.line .. ":" .. e.col) or name
      out[i] = where .. ": " .. (e.path ~= "" and (e.path .. ": ") or "") .. e.msg
    end
    return out
  end
  return E
end

---------------------------------------------------------------------------------------------
-- Sections

local function dirname(path)
  local d = path:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  if d == "" then return "/" end
  return d
end

--- "host:port [ssl]" -> { host, port, ssl } | nil, err
local function parse_listen(s)
  if type(s) ~= "string" then return nil, "expected a string" end
  local addr, flags = s:match("^%s*(%S+)%s*(.-)%s*$")
  local h, p = parse_address(addr or s)
  if not h then return nil, p end
  local out = { host = h, port = p }
  for flag in flags:gmatch("%S+") do
    if flag == "ssl" then out.ssl = true
    else return nil, 'unsupported listen flag "' .. flag .. '" (supported: ssl)' end
  end
  return out
end

local function compile_gw(g, E, base_dir)
  local out = {}
  -- listen: a string or a list of strings, each "host:port" with an optional "ssl" flag
  out.listen = {}
  local listen = g.listen
  if type(listen) == "string" then
    local l, err = parse_listen(listen)
    if l then out.listen[1] = l else E.add("gw.listen", err) end
  elseif type(listen) == "table" and schema.is_array(listen) then
    if #listen == 0 then E.add("gw.listen", "at least one address is required") end
    for i, s in ipairs(listen) do
      local l, err = parse_listen(s)
      if l then out.listen[#out.listen + 1] = l
      else E.add(index("gw.listen", i), err) end
    end
  elseif listen ~= nil then
    E.add("gw.listen", "expected a string or an array of strings")
  end

  -- admin_listen, status_listen: "host:port" or "off"
  for _, key in ipairs({ "admin_listen", "status_listen" }) do
    local v = g[key]
    if v == false or v == "off" then
      out[key] = nil
    elseif type(v) == "string" then
      local h, p = parse_address(v)
      if h then out[key] = { host = h, port = p } else E.add("gw." .. key, p) end
    elseif v ~= nil then
      E.add("gw." .. key, 'expected "host:port" or "off"')
    end
  end

  local w = g.workers
  if w == "auto" then
    out.workers = M.ncpu()
  elseif type(w) == "number" and floor(w) == w and w >= 1 and w <= 1024 then
    out.workers = w
  elseif w ~= nil then
    E.add("gw.workers", 'expected "auto" or an integer between 1 and 1024')
  end

  out.worker_watchdog = g.worker_watchdog
  out.error_log = g.error_log
  out.log_level = g.log_level
  local al = g.access_log
  if al == false then al = "off" end
  if al ~= nil and type(al) ~= "string" then
    E.add("gw.access_log", 'expected "off", "stdout" or a file path')
    al = nil
  end
  if al and al ~= "off" and al ~= "stdout" and al:sub(1, 1) ~= "/" and base_dir ~= "." then
    al = base_dir .. "/" .. al
  end
  out.access_log = al
  local fmt = g.access_log_format or M.DEFAULT_ACCESS_LOG_FORMAT
  local okf, ferr = require("gw.accesslog").check(fmt)
  if not okf then E.add("gw.access_log_format", ferr) end
  out.access_log_format = fmt
  out.admin_token = g.admin_token
  if out.admin_listen and not out.admin_token then
    local h = out.admin_listen.host
    if not (h == "localhost" or h == "::1" or h == "[::1]" or h:match("^127%.")) then
      E.add("gw.admin_listen", "a non-loopback admin_listen requires gw.admin_token")
    end
  end

  out.limits = {}
  for k, v in pairs(g.limits or {}) do
    out.limits[k] = k == "max_headers" and v or M.parse_size(v)
  end
  out.timeouts = g.timeouts or {}
  out.max_connections = g.max_connections
  out.upstream_keepalive = g.upstream_keepalive or {}
  out.shared_dicts = {}
  for k, v in pairs(g.shared_dicts or {}) do out.shared_dicts[k] = M.parse_size(v) end

  out.metrics = g.metrics ~= false
  out.trusted_ips = g.trusted_ips or {}
  out.real_ip_header = g.real_ip_header or "X-Forwarded-For"
  out.underscores_in_headers = g.underscores_in_headers == true
  -- plugins_path: gw plugin directories; kong_plugins_path: Kong plugin roots (ROOT/kong/plugins/NAME)
  for _, key in ipairs({ "plugins_path", "kong_plugins_path" }) do
    local list = {}
    out[key] = list
    for i, p in ipairs(g[key] or {}) do
      if p == "" then
        E.add(index("gw." .. key, i), "empty path")
      elseif p:sub(1, 1) == "/" or base_dir == "." then
        list[#list + 1] = p
      else
        list[#list + 1] = base_dir .. "/" .. p
      end
    end
  end
  return out
end

local function compile_service(s, p, E)
  local svc = {
    name = s.name,
    connect_timeout = s.connect_timeout,
    write_timeout = s.write_timeout,
    read_timeout = s.read_timeout,
    retries = s.retries,
  }
  if s.url ~= nil then
    if s.protocol ~= nil or s.host ~= nil or s.port ~= nil or s.path ~= nil then
      E.add(join(p, "url"), "url cannot be combined with protocol, host, port or path")
    end
    local u, err = M.parse_url(s.url)
    if not u then
      E.add(join(p, "url"), err)
    else
      svc.protocol, svc.host, svc.port, svc.path = u.protocol, u.host, u.port, u.path
    end
  else
    svc.protocol = s.protocol or "http"
    if svc.protocol ~= "echo" then
      if s.host == nil then
        E.add(p, 'a service needs "url" or "host"')
      elseif not valid_host(s.host) then
        E.add(join(p, "host"), 'invalid host "' .. s.host .. '"')
      else
        svc.host = s.host:lower()
      end
      svc.port = s.port or DEFAULT_PORTS[svc.protocol]
    else
      svc.host, svc.port = s.host, s.port
    end
    if s.path ~= nil then
      if s.path:sub(1, 1) ~= "/" then E.add(join(p, "path"), 'must start with "/"') end
      svc.path = s.path
    end
  end
  return svc
end

local HEADER_NAME = "^[%w!#$%%&'*+%-%.%^_`|~]+$"

local function compile_host(h, p, E)
  local host, port = h:lower():match("^(.-):(%d+)$")
  if not host then host = h:lower() end
  if port and not valid_port(port) then
    E.add(p, 'invalid host "' .. h .. '": port must be between 1 and 65535')
    return nil
  end
  if host:find("^%[[%x:%.]+%]$") then return h:lower() end
  local labels = {}
  for label in (host .. "."):gmatch("([^.]*)%.") do labels[#labels + 1] = label end
  local wild = 0
  for i, l in ipairs(labels) do
    if l == "*" then
      wild = wild + 1
      if i ~= 1 and i ~= #labels then
        E.add(p, 'invalid host "' .. h .. '": a wildcard is only allowed as the leftmost or rightmost label')
        return nil
      end
    elseif not valid_label(l) then
      E.add(p, 'invalid host "' .. h .. '"')
      return nil
    end
  end
  if wild > 1 or (wild == 1 and #labels < 2) then
    E.add(p, 'invalid host "' .. h .. '": only one wildcard label, next to a domain, is allowed')
    return nil
  end
  return h:lower()
end

local function compile_route(r, p, E)
  local out = {
    name = r.name,
    hosts = {}, paths = {}, methods = {}, headers = {},
    strip_path = r.strip_path, preserve_host = r.preserve_host,
    priority = r.regex_priority or 0,
  }
  local matchers = 0
  for i = 1, maxn(r.paths) do
    local path = r.paths[i]
    local pp = index(join(p, "paths"), i)
    if type(path) == "string" then
      matchers = matchers + 1
      local c = path:sub(1, 1)
      if c == "~" then
        local ok, err = M.regex_check(path:sub(2))
        if not ok then E.add(pp, "invalid regex: " .. tostring(err)) end
      elseif c ~= "/" then
        E.add(pp, 'must start with "/" or "~"')
      elseif path:find("[%s%c?#]") then
        E.add(pp, 'invalid path "' .. path .. '": no spaces, "?" or "#"')
      end
      out.paths[#out.paths + 1] = path
    end
  end
  for i = 1, maxn(r.hosts) do
    local h = r.hosts[i]
    if type(h) == "string" then
      matchers = matchers + 1
      local n = compile_host(h, index(join(p, "hosts"), i), E)
      if n then out.hosts[#out.hosts + 1] = n end
    end
  end
  local seen = {}
  for i = 1, maxn(r.methods) do
    local m = r.methods[i]
    if type(m) == "string" then
      matchers = matchers + 1
      local u = m:upper()
      if not u:find("^[%w%-_]+$") then
        E.add(index(join(p, "methods"), i), 'invalid method "' .. m .. '"')
      elseif not seen[u] then
        seen[u] = true
        out.methods[#out.methods + 1] = u
      end
    end
  end
  if r.headers then
    local names = {}
    for k in pairs(r.headers) do names[#names + 1] = k end
    sort(names)
    for _, name in ipairs(names) do
      local v = r.headers[name]
      local hp = join(join(p, "headers"), name)
      local lname = name:lower()
      matchers = matchers + 1
      if not name:find(HEADER_NAME) then
        E.add(hp, 'invalid header name "' .. name .. '"')
      elseif lname == "host" then
        E.add(hp, 'use "hosts" to match the Host header')
      elseif out.headers[lname] then
        E.add(hp, 'duplicate header "' .. lname .. '"')
      else
        local values
        if type(v) == "string" then
          values = { v }
        elseif type(v) == "table" and schema.is_array(v) and #v > 0 then
          values = {}
          for i, x in ipairs(v) do
            if type(x) ~= "string" then E.add(index(hp, i), "expected a string")
            else values[#values + 1] = x end
          end
        else
          E.add(hp, "expected a string or a non-empty array of strings")
        end
        out.headers[lname] = values
      end
    end
  end
  if matchers == 0 then
    E.add(p, "a route needs at least one of: paths, hosts, methods, headers")
  end
  return out
end

local function compile_upstream(u, p, E)
  local out = { name = u.name, targets = {} }
  local seen = {}
  for i = 1, maxn(u.targets) do
    local t = u.targets[i]
    local tp = index(join(p, "targets"), i)
    if type(t) == "table" and type(t.target) == "string" then
      local host, port = parse_address(t.target, 80)
      if not host then
        E.add(join(tp, "target"), (port:gsub("^invalid address", "invalid target")))
      elseif seen[host .. ":" .. port] then
        E.add(join(tp, "target"), 'duplicate target "' .. t.target .. '"')
      else
        seen[host .. ":" .. port] = true
        out.targets[#out.targets + 1] = { host = host:lower(), port = port, weight = t.weight }
      end
    end
  end
  local passive = u.healthchecks and u.healthchecks.passive or {}
  out.passive = { failures = passive.failures or 3, cooldown = passive.cooldown or 10 }
  return out
end

local function ref_name(v)
  if type(v) == "string" then return v end
  if type(v) == "table" and type(v.name) == "string" then return v.name end
end

---------------------------------------------------------------------------------------------
-- Plugins: load each plugin once, validate each entry's config, build chains.

local function chain_of(layers)
  local by_name = {}
  for _, layer in ipairs(layers) do
    for _, inst in ipairs(layer) do by_name[inst.name] = inst end
  end
  local chain = {}
  for _, inst in pairs(by_name) do chain[#chain + 1] = inst end
  sort(chain, function(a, b)
    if a.priority ~= b.priority then return a.priority > b.priority end
    return a.name < b.name
  end)
  for _, inst in ipairs(chain) do
    if inst.handler.TRACE_PHASES then chain.trace_phases = true end
  end
  return chain
end
M.chain_of = chain_of

-- The phases one instance runs: those its handler implements, narrowed by the handler's optional
-- `phases_for(conf)` (a list of phase names), so that e.g. a body_filter a config does not need
-- is not entered and the response is not buffered for it. nil (with an error) when it fails.
local function instance_phases(plugin, conf, path, E)
  local fn = plugin.handler.phases_for
  if fn == nil then return plugin.phases end
  local ok, list = pcall(fn, plugin.handler, conf)
  if not ok then
    E.add(path, "phases_for failed: " .. tostring(list))
    return nil
  end
  if type(list) ~= "table" then
    E.add(path, "phases_for must return a list of phase names, got " .. type(list))
    return nil
  end
  local set = {}
  for _, ph in ipairs(list) do
    if plugin.phases[ph] then set[ph] = true end
  end
  return set
end

-- Compiles the entries of one scope (a list of { entry, path }) into instances.
local function compile_scope(items, E, load, check_conf)
  local out, seen = {}, {}
  for _, it in ipairs(items) do
    local e, p = it.entry, it.path
    if e.enabled ~= false and type(e.name) == "string" then
      if seen[e.name] then
        E.add(join(p, "name"), 'duplicate plugin "' .. e.name .. '" (also at ' .. seen[e.name] .. ")")
      else
        seen[e.name] = p
        local plugin, err = load(e.name)
        if not plugin then
          if err:find('^plugin "') or err:find("^invalid plugin name") then
            E.add(join(p, "name"), err)
          else
            E.add(join(p, "name"), 'cannot load plugin "' .. e.name .. '": ' .. err)
          end
        else
          local conf, errs = schema.validate(plugin.schema, e.config)
          if conf and check_conf then check_conf(conf, join(p, "config"), plugin) end
          local phases = conf and instance_phases(plugin, conf, join(p, "config"), E)
          if phases then
            out[#out + 1] = { name = e.name, handler = plugin.handler, conf = conf,
                              priority = plugin.priority, phases = phases }
          elseif errs then
            local cp = join(p, "config")
            for _, ce in ipairs(errs) do
              E.add(ce.path == "" and cp or (cp .. "." .. ce.path), ce.msg)
            end
          end
        end
      end
    end
  end
  return out
end

---------------------------------------------------------------------------------------------
-- Consumers: unique usernames, custom_ids and ids; credentials unique across consumers (a key,
-- a basic-auth username, a jwt key); basic-auth passwords hashed here, once, with a random salt
-- per credential (the plain password is not kept in the compiled config); stable ids derived
-- from the names when the file gives none.

local function compile_consumers(list, raw, E)
  local auth = require("gw.auth")
  local out = {}
  local seen = { id = {}, username = {}, custom_id = {}, key = {}, basic = {}, jwt = {} }
  -- records who (a path) first used a value; false (with an error at path) for a duplicate
  local function unique(kind, value, path, who, what, show)
    local first = seen[kind][value]
    if first then
      E.add(path, "duplicate " .. what .. (show and (' "' .. value .. '"') or "") .. " (also used by " .. first .. ")")
      return false
    end
    seen[kind][value] = who
    return true
  end
  for i = 1, maxn(list) do
    local c = list[i]
    local p = index("consumers", i)
    if type(c) == "table" then
      if c.plugins ~= nil then E.add(join(p, "plugins"), "consumer-scoped plugins are not supported") end
      local r = type(raw) == "table" and type(raw[i]) == "table" and raw[i] or c
      if is_null(r.username) and is_null(r.custom_id) then   -- (a wrong type is reported already)
        E.add(p, 'a consumer needs a "username" or a "custom_id"')
      end
      if c.username then unique("username", c.username, join(p, "username"), p, "username", true) end
      if c.custom_id then unique("custom_id", c.custom_id, join(p, "custom_id"), p, "custom_id", true) end
      local id = c.id
      if id then
        unique("id", id, join(p, "id"), p, "id", true)
      else
        id = auth.uuid_from("consumer\0" .. (c.username and ("username\0" .. c.username)
                                                         or ("custom_id\0" .. tostring(c.custom_id))))
      end
      local cc = { id = id, username = c.username, custom_id = c.custom_id, tags = c.tags,
                   keyauth_credentials = {}, basicauth_credentials = {}, acls = {}, jwt_secrets = {},
                   hmacauth_credentials = c.hmacauth_credentials, oauth2_credentials = c.oauth2_credentials,
                   mtls_auth_credentials = c.mtls_auth_credentials }
      local function cred_id(given, kind, j)
        return given or auth.uuid_from(id .. "\0" .. kind .. "\0" .. j)
      end

      local kp0 = join(p, "keyauth_credentials")
      for j = 1, maxn(c.keyauth_credentials) do
        local k = c.keyauth_credentials[j]
        if type(k) == "table" and type(k.key) == "string" and k.key ~= "" then
          -- the key is a secret: not repeated in the message
          if unique("key", k.key, join(index(kp0, j), "key"), index(kp0, j), "key-auth key", false) then
            cc.keyauth_credentials[#cc.keyauth_credentials + 1] =
              { id = cred_id(k.id, "keyauth", j), key = k.key, tags = k.tags }
          end
        end
      end

      local bp0 = join(p, "basicauth_credentials")
      for j = 1, maxn(c.basicauth_credentials) do
        local b = c.basicauth_credentials[j]
        local bp = index(bp0, j)
        if type(b) == "table" and type(b.username) == "string" and b.username ~= "" then
          local hash
          if b.password ~= nil and b.password_hash ~= nil then
            E.add(join(bp, "password_hash"), 'give "password" or "password_hash", not both')
          elseif b.password_hash ~= nil then
            local ok, err = auth.parse_password_hash(b.password_hash)
            if ok then hash = b.password_hash else E.add(join(bp, "password_hash"), err) end
          elseif type(b.password) == "string" and b.password ~= "" then
            hash = auth.hash_password(b.password)
          else
            local rb = type(r.basicauth_credentials) == "table" and r.basicauth_credentials[j]
            if type(rb) ~= "table" or (is_null(rb.password) and is_null(rb.password_hash)) then
              E.add(bp, 'a basic-auth credential needs "password" or "password_hash"')
            end
          end
          if unique("basic", b.username, join(bp, "username"), bp, "basic-auth username", true) and hash then
            cc.basicauth_credentials[#cc.basicauth_credentials + 1] =
              { id = cred_id(b.id, "basicauth", j), username = b.username, password = hash, tags = b.tags }
          end
        end
      end

      local groups = {}
      local ap0 = join(p, "acls")
      for j = 1, maxn(c.acls) do
        local a = c.acls[j]
        local ap = index(ap0, j)
        if type(a) == "table" and type(a.group) == "string" and a.group ~= "" then
          if groups[a.group] then
            E.add(join(ap, "group"), 'duplicate group "' .. a.group .. '" (also at ' .. groups[a.group] .. ")")
          else
            groups[a.group] = join(ap, "group")
            cc.acls[#cc.acls + 1] = { id = cred_id(a.id, "acl", j), group = a.group, tags = a.tags }
          end
        end
      end

      local jp0 = join(p, "jwt_secrets")
      for j = 1, maxn(c.jwt_secrets) do
        local s = c.jwt_secrets[j]
        local jp = index(jp0, j)
        if type(s) == "table" then
          local ok = true
          if type(s.key) == "string" then
            ok = unique("jwt", s.key, join(jp, "key"), jp, "jwt key", true)
          end
          local alg = s.algorithm or "HS256"
          if JWT_ALG[alg] and not alg:find("^HS") and s.rsa_public_key == nil then
            E.add(jp, 'algorithm ' .. alg .. ' needs "rsa_public_key"')
          end
          if ok then
            cc.jwt_secrets[#cc.jwt_secrets + 1] = { id = cred_id(s.id, "jwt", j), key = s.key, algorithm = alg,
                                                    secret = s.secret, rsa_public_key = s.rsa_public_key,
                                                    tags = s.tags }
          end
        end
      end
      out[#out + 1] = cc
    end
  end
  return out
end


---------------------------------------------------------------------------------------------
-- TLS: certificates and their server names, client verification, the listeners' protocols,
-- ciphers and tickets, the https services' client side, routes that need https or a client
-- certificate. PEM is written inline or as a file path (relative to the config file's
-- directory); files are read here, so a reload reads them again. Certificates, keys and CA
-- bundles are checked with OpenSSL (runtime/tls.c, over FFI) when running inside gw.

local tls_ffi     -- false outside gw: only the PEM markers are checked then
local function tls_c()
  if tls_ffi == nil then
    tls_ffi = false
    local ok, ffi = pcall(require, "ffi")
    if ok then
      pcall(ffi.cdef, [[
int gw_tls_check_cert(const char *cert, size_t cl, const char *key, size_t kl, char *msg, size_t ml,
                      double *times, char *subject, size_t sl);
int gw_tls_check_ca(const char *pem, size_t n, char *msg, size_t ml);
int gw_tls_check_ciphers(const char *list, int tls13, char *msg, size_t ml);
]])
      if pcall(function() return ffi.C.gw_tls_check_cert end) then
        tls_ffi = { C = ffi.C, str = ffi.string, msg = ffi.new("char[512]"), subject = ffi.new("char[512]"),
                    times = ffi.new("double[2]") }
      end
    end
  end
  return tls_ffi or nil
end

local TLS_VERSIONS = { ["TLSv1"] = 0x0301, ["TLSv1.1"] = 0x0302, ["TLSv1.2"] = 0x0303, ["TLSv1.3"] = 0x0304 }

--- "TLSv1.2 TLSv1.3" (or a list) -> min, max | nil, err
local function parse_protocols(v)
  local list = {}
  if type(v) == "string" then
    for w in v:gmatch("[^%s,]+") do list[#list + 1] = w end
  elseif type(v) == "table" and schema.is_array(v) then
    for _, w in ipairs(v) do list[#list + 1] = w end
  else
    return nil, 'expected a string such as "TLSv1.2 TLSv1.3" or a list'
  end
  local set, minv, maxv = {}, nil, nil
  for _, w in ipairs(list) do
    local n = type(w) == "string" and TLS_VERSIONS[w]
    if not n then return nil, 'unknown protocol "' .. tostring(w) .. '" (expected TLSv1, TLSv1.1, TLSv1.2, TLSv1.3)' end
    set[n] = true
    minv, maxv = math.min(minv or n, n), math.max(maxv or n, n)
  end
  if not minv then return nil, "at least one protocol is required" end
  for n = minv, maxv do
    if not set[n] then return nil, "the protocols must be a contiguous range (OpenSSL takes a minimum and a maximum)" end
  end
  return minv, maxv
end

-- PEM text (inline, or read from a file) -> pem, file | nil, err
local function read_pem(v, base_dir)
  if v:find("-----BEGIN", 1, true) then return v end
  if v == "" then return nil, "expected PEM text or a file path" end
  local path = v
  if path:sub(1, 1) ~= "/" and base_dir ~= "." then path = base_dir .. "/" .. path end
  local f, err = io.open(path, "rb")
  if not f then return nil, "cannot read " .. tostring(err) end
  local text = f:read("*a") or ""
  f:close()
  return text, path
end

local function cert_name(subject, file)
  local parts = {}
  if subject and subject ~= "" then parts[1] = subject end
  if file then parts[#parts + 1] = "file " .. file end
  return #parts > 0 and (" (" .. concat(parts, ", ") .. ")") or ""
end

local function utc(t) return os.date("!%Y-%m-%d %H:%M:%S UTC", math.floor(t)) end

local function sni_error(n)
  if n:find("^[%d%.]+$") or n:find("[:%[]") then return "an IP address is never sent as a server name" end
  local host = n:match("^%*%.(.+)$") or n
  if host:find("%*") or not valid_host(host) then
    return 'expected a host name, or "*." and a domain (one label, leftmost)'
  end
end

local function ref_id(v)
  if type(v) == "string" and v ~= "" then return v end
  if type(v) == "table" and type(v.id) == "string" then return v.id end
end

local function compile_tls(src, compiled, route_src, E, W, base_dir)
  local g = src.gw or {}
  local C = tls_c()
  local out = { certificates = {}, snis = {}, upstream = {} }

  local minv, maxv = parse_protocols(g.ssl_protocols or "TLSv1.2 TLSv1.3")
  if minv then out.min_version, out.max_version = minv, maxv else E.add("gw.ssl_protocols", maxv) end
  out.ciphers = g.ssl_ciphers or M.DEFAULT_SSL_CIPHERS
  out.ciphersuites = g.ssl_ciphersuites or M.DEFAULT_SSL_CIPHERSUITES
  if C then
    if C.C.gw_tls_check_ciphers(out.ciphers, 0, C.msg, 512) ~= 0 then E.add("gw.ssl_ciphers", C.str(C.msg)) end
    if C.C.gw_tls_check_ciphers(out.ciphersuites, 1, C.msg, 512) ~= 0 then E.add("gw.ssl_ciphersuites", C.str(C.msg)) end
  end
  out.session_tickets = g.ssl_session_tickets ~= false
  out.ticket_rotation = g.ssl_ticket_rotation or 3600000

  local function load(v, p)
    local pem, from = read_pem(v, base_dir)
    if not pem then E.add(p, from) end
    return pem, from
  end

  -- A certificate chain and its key: the key's type (> 0), or nil after an error.
  local function check_pair(cert, key, pc, pk, cfile, kfile)
    if not C then
      if not cert:find("-----BEGIN CERTIFICATE-----", 1, true) then
        E.add(pc, "not a PEM certificate" .. cert_name(nil, cfile)) return nil
      end
      if not key:find("-----BEGIN [%u ]*PRIVATE KEY-----") then
        E.add(pk, "not a PEM private key" .. cert_name(nil, kfile)) return nil
      end
      return 1
    end
    local rc = C.C.gw_tls_check_cert(cert, #cert, key, #key, C.msg, 512, C.times, C.subject, 512)
    local msg, name = C.str(C.msg), cert_name(C.str(C.subject), cfile)
    if rc == -1 then E.add(pc, msg .. name) return nil end
    if rc == -2 then E.add(pk, msg .. cert_name(nil, kfile)) return nil end
    if rc == -3 then E.add(pk, msg .. name) return nil end
    local now = os.time()
    if C.times[1] < now then
      W.add(pc, "the certificate" .. name .. " expired on " .. utc(C.times[1]))
    elseif C.times[0] > now then
      W.add(pc, "the certificate" .. name .. " is not valid before " .. utc(C.times[0]))
    end
    return rc
  end

  local function check_ca(pem, p, file)
    if C then
      if C.C.gw_tls_check_ca(pem, #pem, C.msg, 512) < 0 then E.add(p, C.str(C.msg) .. cert_name(nil, file)) return false end
    elseif not pem:find("-----BEGIN CERTIFICATE-----", 1, true) then
      E.add(p, "not a PEM certificate bundle" .. cert_name(nil, file)) return false
    end
    return true
  end

  -- cert + key (and the optional alt pair) of a certificate entry or a client certificate
  local function pair(c, p, entry)
    local cert, cfile = load(c.cert, join(p, "cert"))
    local key, kfile = load(c.key, join(p, "key"))
    local t1 = cert and key and check_pair(cert, key, join(p, "cert"), join(p, "key"), cfile, kfile)
    entry.cert, entry.key = cert, key
    if c.cert_alt ~= nil or c.key_alt ~= nil then
      if c.cert_alt == nil then E.add(join(p, "cert_alt"), "required with key_alt") return end
      if c.key_alt == nil then E.add(join(p, "key_alt"), "required with cert_alt") return end
      local acert, acfile = load(c.cert_alt, join(p, "cert_alt"))
      local akey, akfile = load(c.key_alt, join(p, "key_alt"))
      local t2 = acert and akey and check_pair(acert, akey, join(p, "cert_alt"), join(p, "key_alt"), acfile, akfile)
      if t1 and t2 and t1 == t2 and C then
        E.add(join(p, "cert_alt"), "cert_alt needs another key type than cert (an ECDSA certificate beside an RSA one)")
      end
      entry.cert_alt, entry.key_alt = acert, akey
    end
  end

  local sni_at = {}
  local function add_sni(name, p, idx)
    if type(name) ~= "string" then E.add(p, "expected a server name") return end
    local n = name:lower():gsub("%.$", "")
    local err = sni_error(n)
    if err then E.add(p, 'invalid server name "' .. name .. '": ' .. err) return end
    if sni_at[n] then E.add(p, 'duplicate server name "' .. n .. '" (also at ' .. sni_at[n] .. ")") return end
    sni_at[n] = p
    out.snis[#out.snis + 1] = { name = n, certificate = idx }
  end

  -- gw.ssl_cert / gw.ssl_cert_key: the default certificate
  local default_at
  if g.ssl_cert ~= nil or g.ssl_cert_key ~= nil then
    if g.ssl_cert == nil then
      E.add("gw.ssl_cert_key", "gw.ssl_cert_key needs gw.ssl_cert")
    elseif g.ssl_cert_key == nil then
      E.add("gw.ssl_cert", "gw.ssl_cert needs gw.ssl_cert_key")
    else
      local entry = { label = "gw.ssl_cert", verify = "off" }
      local cert, cfile = load(g.ssl_cert, "gw.ssl_cert")
      local key, kfile = load(g.ssl_cert_key, "gw.ssl_cert_key")
      if cert and key then check_pair(cert, key, "gw.ssl_cert", "gw.ssl_cert_key", cfile, kfile) end
      entry.cert, entry.key = cert, key
      out.certificates[#out.certificates + 1] = entry
      out.default = #out.certificates
      default_at = "gw.ssl_cert"
    end
  end

  local by_id, any_client_ca = {}, false
  for i = 1, maxn(src.certificates) do
    local c = src.certificates[i]
    local p = index("certificates", i)
    local entry = { label = p }
    out.certificates[#out.certificates + 1] = entry
    local idx = #out.certificates
    if type(c) == "table" and type(c.cert) == "string" and type(c.key) == "string" then
      pair(c, p, entry)
      local verify = c.verify or (c.client_ca ~= nil and "required" or "off")
      if c.client_ca ~= nil then
        local ca, file = load(c.client_ca, join(p, "client_ca"))
        if ca and check_ca(ca, join(p, "client_ca"), file) then entry.client_ca = ca end
      elseif verify ~= "off" then
        E.add(join(p, "verify"), 'verify "' .. verify .. '" needs client_ca (the CAs that sign client certificates)')
      end
      if verify ~= "off" then any_client_ca = true end
      entry.verify, entry.verify_depth = verify, c.verify_depth or 3
      if c.id ~= nil then
        if by_id[c.id] then
          E.add(join(p, "id"), 'duplicate id "' .. c.id .. '" (also used by ' .. by_id[c.id].path .. ")")
        else
          by_id[c.id] = { idx = idx, path = p, entry = entry }
        end
      end
      for j = 1, maxn(c.snis) do
        local sn = c.snis[j]
        add_sni(type(sn) == "table" and sn.name or sn, index(join(p, "snis"), j), idx)
      end
      if c.default then
        if default_at then
          E.add(join(p, "default"), "only one default certificate (already " .. default_at .. ")")
        else
          default_at, out.default = p, idx
        end
      end
    end
  end

  -- Kong's top-level snis: { name, certificate = { id } }
  for i = 1, maxn(src.snis) do
    local sn = src.snis[i]
    local p = index("snis", i)
    if type(sn) == "table" and sn.name ~= nil then
      local id = ref_id(sn.certificate)
      local c = id and by_id[id]
      if not id then E.add(join(p, "certificate"), "expected a certificate id")
      elseif not c then E.add(join(p, "certificate"), 'no certificate with id "' .. id .. '"')
      else add_sni(sn.name, join(p, "name"), c.idx) end
    end
  end

  -- listeners: an ssl one needs a certificate; its port goes into https redirects
  for i, l in ipairs(compiled.gw.listen or {}) do
    if l.ssl then
      out.https_port = out.https_port or l.port
      if #out.certificates == 0 then
        E.add(type(g.listen) == "table" and index("gw.listen", i) or "gw.listen",
          "an ssl listener needs a certificate: set gw.ssl_cert and gw.ssl_cert_key, or add certificates")
      end
    end
  end

  -- ca_certificates (Kong's entity): CA bundles that services name by id
  local ca_by_id = {}
  for i = 1, maxn(src.ca_certificates) do
    local c = src.ca_certificates[i]
    local p = index("ca_certificates", i)
    if type(c) == "table" and type(c.id) == "string" and type(c.cert) == "string" then
      if ca_by_id[c.id] then
        E.add(join(p, "id"), 'duplicate id "' .. c.id .. '" (also used by ' .. ca_by_id[c.id].path .. ")")
      else
        local pem, file = load(c.cert, join(p, "cert"))
        if pem and check_ca(pem, join(p, "cert"), file) then ca_by_id[c.id] = { pem = pem, path = p } end
      end
    end
  end

  -- https services: tls_verify, tls_verify_depth, ca_certificates, client_certificate; one client
  -- context per distinct set of settings
  local ctx_of = {}
  for i = 1, maxn(src.services) do
    local s, svc = src.services[i], compiled.services[i]
    local p = index("services", i)
    if type(s) == "table" and svc then
      if svc.protocol ~= "https" then
        for _, f in ipairs({ "tls_verify", "tls_verify_depth", "ca_certificates", "client_certificate" }) do
          if s[f] ~= nil then E.add(join(p, f), "only for https services") end
        end
      else
        local verify = s.tls_verify ~= false
        local cas = {}
        for j = 1, maxn(s.ca_certificates) do
          local v, cp = s.ca_certificates[j], index(join(p, "ca_certificates"), j)
          if type(v) == "string" then
            if ca_by_id[v] then
              cas[#cas + 1] = ca_by_id[v].pem
            else
              local pem, file = load(v, cp)
              if pem and check_ca(pem, cp, file) then cas[#cas + 1] = pem end
            end
          end
        end
        local cc = {}
        local v = s.client_certificate
        if v ~= nil then
          local cp = join(p, "client_certificate")
          local id = ref_id(v)
          if type(v) == "table" and (v.cert ~= nil or v.key ~= nil) then
            if type(v.cert) ~= "string" then E.add(join(cp, "cert"), "required field missing")
            elseif type(v.key) ~= "string" then E.add(join(cp, "key"), "required field missing")
            else pair(v, cp, cc) end
          elseif id and by_id[id] then
            cc.cert, cc.key = by_id[id].entry.cert, by_id[id].entry.key
          elseif id then
            E.add(cp, 'no certificate with id "' .. id .. '"')
          else
            E.add(cp, "expected a certificate id, or { cert, key }")
          end
        end
        local u = { verify = verify, depth = s.tls_verify_depth, ca = #cas > 0 and concat(cas, "\n") or nil,
                    cert = cc.cert, key = cc.key }
        local key = concat({ verify and "1" or "0", tostring(u.depth), u.ca or "", u.cert or "", u.key or "" }, "\0")
        if not ctx_of[key] then
          out.upstream[#out.upstream + 1] = u
          ctx_of[key] = #out.upstream
        end
        svc.tls_ctx, svc.tls_verify = ctx_of[key], verify
      end
    end
  end

  -- routes: protocols [https] only -> a plain request is redirected; require_client_cert
  for ri, rs in ipairs(route_src) do
    local r, cr = rs.route, compiled.routes[ri]
    local has = {}
    for _, proto in ipairs(r.protocols or {}) do has[proto] = true end
    if has.https and not has.http then
      cr.https_only = true
      cr.https_redirect = r.https_redirect_status_code or 426
    end
    if r.require_client_cert then
      cr.require_client_cert = true
      if not any_client_ca then
        E.add(join(rs.path, "require_client_cert"),
          "no certificate asks for client certificates: give one client_ca (verify: optional or required)")
      end
    end
  end

  if W.count() > 0 then out.warnings = W.result() end
  return out
end

---------------------------------------------------------------------------------------------

-- Kong's declarative files may list targets and credentials at the top level, each naming its
-- upstream or consumer (by name/username or id, or as { id = } / { name = } / { username = }):
-- they join that entity's own list; an unknown name is an error at the entry.
local FOREIGN = {
  { list = "targets", key = "upstream", parents = "upstreams", into = "targets", names = { "name", "id" } },
  { list = "keyauth_credentials", key = "consumer", parents = "consumers", into = "keyauth_credentials", names = { "username", "id", "custom_id" } },
  { list = "basicauth_credentials", key = "consumer", parents = "consumers", into = "basicauth_credentials", names = { "username", "id", "custom_id" } },
  { list = "acls", key = "consumer", parents = "consumers", into = "acls", names = { "username", "id", "custom_id" } },
  { list = "jwt_secrets", key = "consumer", parents = "consumers", into = "jwt_secrets", names = { "username", "id", "custom_id" } },
}
local function hoist_foreign(src, E)
  for _, f in ipairs(FOREIGN) do
    local list = src[f.list]
    for i = 1, maxn(list) do
      local entry = list[i]
      if type(entry) == "table" then
        local ref = entry[f.key]
        local parent
        for _, cand in ipairs(src[f.parents] or {}) do
          for _, field in ipairs(f.names) do
            local want = type(ref) == "table" and ref[field] or (type(ref) ~= "table" and ref) or nil
            if want ~= nil and cand[field] == want then parent = cand break end
          end
          if parent then break end
        end
        if not parent then
          E.add(join(index(f.list, i), f.key), "no " .. f.parents:sub(1, -2) .. " " ..
                (type(ref) == "table" and "matching " .. tostring(ref.id or ref.name or ref.username) or ('"' .. tostring(ref) .. '"')))
        else
          local copy = {}
          for k, v in pairs(entry) do if k ~= f.key then copy[k] = v end end
          parent[f.into] = parent[f.into] or {}
          table.insert(parent[f.into], copy)
        end
      end
    end
    src[f.list] = nil
  end
end

function M.compile(value, marks, name, opts)
  name = name or "config"
  opts = opts or {}
  local E = new_errors(marks, name)
  local W = new_errors(marks, name)     -- warnings: the config is accepted, the master logs them
  local src, errs = schema.validate_partial(CONFIG, value)
  for _, e in ipairs(errs) do E.add(e.path, e.msg) end
  if type(src) ~= "table" then return nil, E.result() end

  local fv = src._format_version
  if fv ~= nil then
    if type(fv) == "number" then fv = string.format("%.1f", fv) end
    local ok = false
    for _, v in ipairs(FORMAT_VERSIONS) do
      if v == fv then ok = true end
    end
    if not ok then E.add("_format_version", "expected one of: " .. concat(FORMAT_VERSIONS, ", ")) end
  end

  local compiled = { services = {}, routes = {}, upstreams = {}, consumers = {}, source = value }
  compiled.gw = compile_gw(src.gw or {}, E, dirname(name))
  hoist_foreign(src, E)

  -- upstreams first: services refer to them by host
  local upstream_at = {}
  for i = 1, maxn(src.upstreams) do
    local u = src.upstreams[i]
    local p = index("upstreams", i)
    if u then
      if u.name and upstream_at[u.name] then
        E.add(join(p, "name"), 'duplicate name "' .. u.name .. '" (also used by ' .. upstream_at[u.name] .. ")")
      elseif u.name then
        upstream_at[u.name] = p
        compiled.upstreams[u.name] = compile_upstream(u, p, E)
      end
    end
  end

  local service_at, service_index = {}, {}
  local route_at = {}
  local route_src = {}          -- compiled route index -> { path, plugins, service }
  local function add_route(r, p, si)
    if r.name then
      if route_at[r.name] then
        E.add(join(p, "name"), 'duplicate name "' .. r.name .. '" (also used by ' .. route_at[r.name] .. ")")
      else
        route_at[r.name] = p
      end
    end
    local cr = compile_route(r, p, E)
    cr.service = si
    compiled.routes[#compiled.routes + 1] = cr
    route_src[#compiled.routes] = { path = p, route = r, service = si }
  end

  for i = 1, maxn(src.services) do
    local s = src.services[i]
    local p = index("services", i)
    if s then
      if s.name and service_at[s.name] then
        E.add(join(p, "name"), 'duplicate name "' .. s.name .. '" (also used by ' .. service_at[s.name] .. ")")
      elseif s.name then
        service_at[s.name] = p
        service_index[s.name] = i
      end
      local svc = compile_service(s, p, E)
      if svc.host and svc.protocol ~= "echo" and compiled.upstreams[svc.host] then
        svc.upstream = svc.host
      end
      compiled.services[i] = svc
      for j = 1, maxn(s.routes) do
        local r = s.routes[j]
        if r then add_route(r, index(join(p, "routes"), j), i) end
      end
    end
  end

  for k = 1, maxn(src.routes) do
    local r = src.routes[k]
    local p = index("routes", k)
    if r then
      local sname = ref_name(r.service)
      local si
      if r.service ~= nil and not sname then
        E.add(join(p, "service"), "expected a service name")
      elseif sname then
        si = service_index[sname]
        if not si then E.add(join(p, "service"), 'unknown service "' .. sname .. '"') end
      end
      add_route(r, p, si)
    end
  end

  compiled.tls = compile_tls(src, compiled, route_src, E, W, dirname(name))

  compiled.consumers = compile_consumers(src.consumers, type(value) == "table" and value.consumers, E)
  local consumer_refs = {}
  for _, c in ipairs(compiled.consumers) do
    consumer_refs[c.id] = true
    if c.username then consumer_refs[c.username] = true end
  end
  -- an auth plugin's `anonymous` must name a consumer (id or username); the gw.shared dicts an
  -- instance asks for (handler:shared_dicts(conf) -> { name = default size }) are declared with
  -- that size unless gw.shared_dicts already has them
  local declared = compiled.gw.shared_dicts or {}
  compiled.gw.shared_dicts = declared
  local function check_conf(conf, cp, plugin)
    local a = type(conf) == "table" and conf.anonymous
    if type(a) == "string" and not consumer_refs[a] then
      E.add(join(cp, "anonymous"), 'no consumer with id or username "' .. a .. '"')
    end
    local fn = plugin and plugin.handler.shared_dicts
    if fn then
      local ok, want = pcall(fn, plugin.handler, conf)
      if not ok or type(want) ~= "table" then
        E.add(cp, "shared_dicts failed: " .. (ok and ("expected a table, got " .. type(want)) or tostring(want)))
        return
      end
      for name, size in pairs(want) do
        if declared[name] == nil then
          local bytes = type(name) == "string" and #name <= 63 and name_check(name) and M.parse_size(size)
          if not bytes then
            E.add(cp, "shared_dicts: bad dict " .. tostring(name) .. " = " .. tostring(size))
          else
            declared[name] = bytes
          end
        end
      end
    end
  end

  -- plugins: scopes global / per service / per route
  local dirs = opts.plugin_dirs or plugins.default_dirs(compiled.gw.plugins_path, compiled.gw.kong_plugins_path)
  local cache = {}
  local function load(pname)
    local c = cache[pname]
    if not c then
      local plugin, err = plugins.load(pname, dirs)
      c = { plugin, err }
      cache[pname] = c
    end
    return c[1], c[2]
  end

  local global_items, service_items, route_items = {}, {}, {}
  local route_by_name = {}
  for ri, rs in ipairs(route_src) do
    if rs.route.name then route_by_name[rs.route.name] = ri end
  end
  for i = 1, maxn(src.plugins) do
    local e = src.plugins[i]
    local p = index("plugins", i)
    if e then
      local item = { entry = e, path = p }
      if e.consumer ~= nil then
        E.add(join(p, "consumer"), "consumer-scoped plugins are not supported")
      elseif e.service ~= nil and e.route ~= nil then
        E.add(p, "a plugin can be scoped to a service or to a route, not both")
      elseif e.service ~= nil then
        local sname = ref_name(e.service)
        local si = sname and service_index[sname]
        if not sname then E.add(join(p, "service"), "expected a service name")
        elseif not si then E.add(join(p, "service"), 'unknown service "' .. sname .. '"')
        else
          service_items[si] = service_items[si] or {}
          table.insert(service_items[si], item)
        end
      elseif e.route ~= nil then
        local rname = ref_name(e.route)
        local ri = rname and route_by_name[rname]
        if not rname then E.add(join(p, "route"), "expected a route name")
        elseif not ri then E.add(join(p, "route"), 'unknown route "' .. rname .. '"')
        else
          route_items[ri] = route_items[ri] or {}
          table.insert(route_items[ri], item)
        end
      else
        global_items[#global_items + 1] = item
      end
    end
  end
  for i = 1, maxn(src.services) do
    local s = src.services[i]
    if s and s.plugins then
      service_items[i] = service_items[i] or {}
      for j = 1, maxn(s.plugins) do
        if s.plugins[j] then
          table.insert(service_items[i], { entry = s.plugins[j], path = index(join(index("services", i), "plugins"), j) })
        end
      end
    end
  end
  for ri, rs in ipairs(route_src) do
    local r = rs.route
    if r.plugins then
      route_items[ri] = route_items[ri] or {}
      for j = 1, maxn(r.plugins) do
        if r.plugins[j] then
          table.insert(route_items[ri], { entry = r.plugins[j], path = index(join(rs.path, "plugins"), j) })
        end
      end
    end
  end

  local global = compile_scope(global_items, E, load, check_conf)
  local per_service = {}
  for i = 1, maxn(src.services) do
    per_service[i] = compile_scope(service_items[i] or {}, E, load, check_conf)
  end
  compiled.global_plugins = chain_of({ global })
  for ri, cr in ipairs(compiled.routes) do
    local own = compile_scope(route_items[ri] or {}, E, load, check_conf)
    cr.plugins = chain_of({ global, cr.service and per_service[cr.service] or {}, own })
  end

  if E.count() > 0 then return nil, E.result() end
  compiled.hash = M.sha256(M.canonical_json(value))
  return compiled
end

function M.load_string(text, name)
  name = name or "config"
  local yaml = require("gw.yaml")
  local value, marks = yaml.load(text, name)
  if value == nil then return nil, { marks } end
  return M.compile(value, marks, name)
end

function M.load_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, { path .. ": cannot open: " .. tostring(err) } end
  local text = f:read("*a")
  f:close()
  return M.load_string(text, path)
end

---------------------------------------------------------------------------------------------
-- Canonical JSON (sorted keys) and SHA-256, for compiled.hash.

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
              ["\b"] = "\\b", ["\f"] = "\\f" }

local function json_string(s)
  if not s:find('[%c"\\]') then return '"' .. s .. '"' end
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESC[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function encode(v, out, depth)
  if depth > 1000 then error("value nested too deep", 0) end
  local t = type(v)
  if v == nil or is_null(v) then
    out[#out + 1] = "null"
  elseif t == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif t == "number" then
    if v ~= v then out[#out + 1] = '"nan"'
    elseif v == math.huge then out[#out + 1] = '"inf"'
    elseif v == -math.huge then out[#out + 1] = '"-inf"'
    elseif floor(v) == v and v > -1e17 and v < 1e17 then out[#out + 1] = string.format("%.0f", v)
    else out[#out + 1] = string.format("%.17g", v) end
  elseif t == "string" then
    out[#out + 1] = json_string(v)
  elseif t == "table" then
    if next(v) ~= nil and schema.is_array(v) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode(v[i], out, depth + 1)
      end
      out[#out + 1] = "]"
    else
      -- keys as strings (a YAML number key 200 and "200" cannot both occur in a source)
      local keys, orig = {}, nil
      for k in pairs(v) do
        if type(k) == "string" then
          keys[#keys + 1] = k
        else
          local sk = tostring(k)
          orig = orig or {}
          orig[sk] = k
          keys[#keys + 1] = sk
        end
      end
      sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = json_string(k)
        out[#out + 1] = ":"
        local x = v[k]
        if orig and orig[k] ~= nil then x = v[orig[k]] end
        encode(x, out, depth + 1)
      end
      out[#out + 1] = "}"
    end
  else
    out[#out + 1] = json_string(tostring(v))
  end
end

function M.canonical_json(v)
  local out = {}
  encode(v, out, 0)
  return concat(out)
end

local bit = require("bit")
local band, bxor, bnot, rshift, ror, tobit, tohex = bit.band, bit.bxor, bit.bnot, bit.rshift, bit.ror,
                                                    bit.tobit, bit.tohex

-- Round constants: the first 32 bits of the fractional parts of the cube roots (K) and square
-- roots (H0) of the first primes, computed rather than transcribed.
local K, H0 = {}, {}
do
  local primes, n = {}, 2
  while #primes < 64 do
    local prime = true
    for _, q in ipairs(primes) do
      if q * q > n then break end
      if n % q == 0 then prime = false break end
    end
    if prime then primes[#primes + 1] = n end
    n = n + 1
  end
  local function frac32(x) return tobit(floor((x - floor(x)) * 4294967296)) end
  for i = 1, 64 do
    -- refine the cube root with a Newton step so the 32 fractional bits are exact
    local p = primes[i]
    local c = p ^ (1 / 3)
    c = c - (c * c * c - p) / (3 * c * c)
    K[i] = frac32(c)
  end
  for i = 1, 8 do H0[i] = frac32(math.sqrt(primes[i])) end
end

function M.sha256(msg)
  local len = #msg
  local bits = len * 8
  msg = msg .. "\128" .. string.rep("\0", (55 - len) % 64) ..
        string.char(0, 0, floor(bits / 2 ^ 40) % 256, floor(bits / 2 ^ 32) % 256,
                    floor(bits / 2 ^ 24) % 256, floor(bits / 2 ^ 16) % 256, floor(bits / 2 ^ 8) % 256) ..
        string.char(bits % 256)
  local H = { H0[1], H0[2], H0[3], H0[4], H0[5], H0[6], H0[7], H0[8] }
  local w = {}
  for chunk = 1, #msg, 64 do
    for i = 0, 15 do
      local a, b, c, d = msg:byte(chunk + i * 4, chunk + i * 4 + 3)
      w[i] = tobit(a * 16777216 + b * 65536 + c * 256 + d)
    end
    for i = 16, 63 do
      local x, y = w[i - 15], w[i - 2]
      local s0 = bxor(ror(x, 7), ror(x, 18), rshift(x, 3))
      local s1 = bxor(ror(y, 17), ror(y, 19), rshift(y, 10))
      w[i] = tobit(w[i - 16] + s0 + w[i - 7] + s1)
    end
    local a, b, c, d, e, f, g, h = H[1], H[2], H[3], H[4], H[5], H[6], H[7], H[8]
    for i = 0, 63 do
      local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
      local ch = bxor(band(e, f), band(bnot(e), g))
      local t1 = tobit(h + S1 + ch + K[i + 1] + w[i])
      local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
      local maj = bxor(band(a, b), band(a, c), band(b, c))
      h, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + S0 + maj)
    end
    H[1], H[2], H[3], H[4] = tobit(H[1] + a), tobit(H[2] + b), tobit(H[3] + c), tobit(H[4] + d)
    H[5], H[6], H[7], H[8] = tobit(H[5] + e), tobit(H[6] + f), tobit(H[7] + g), tobit(H[8] + h)
  end
  local out = {}
  for i = 1, 8 do out[i] = tohex(H[i], 8) end
  return concat(out)
end

return M
