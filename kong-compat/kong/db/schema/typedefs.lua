-- kong.db.schema.typedefs (gw kong-compat): the field definitions Kong plugin schemas use, with
-- gw's own validators. Each is callable with overrides: typedefs.port { default = 6379 }.
local Schema = require "kong.db.schema"
local ip = require "kong.tools.ip"
local http = require "kong.tools.http"
local constants = require "kong.constants"

local define = Schema.define
local find, match, gsub = string.find, string.match, string.gsub

local function validate_host(host)
  local res, err = ip.normalize_ip(host)
  if not res then
    if err == "invalid port number" then return nil, "must not have a port" end
    return nil, "invalid value: " .. host
  end
  if res.port then return nil, "must not have a port" end
  return true
end

local function validate_host_with_optional_port(host)
  local res, err = ip.normalize_ip(host)
  if not res then return nil, err end
  return true
end

local function validate_wildcard_host(host)
  local i = find(host, "*", 1, true)
  if i then
    if i ~= 1 and i ~= #host then return nil, "wildcard must be leftmost or rightmost character" end
    local h, n = gsub(host, "%*", "wildcard")
    if n > 1 then return nil, "only one wildcard must be specified" end
    host = h
  end
  local res, err = ip.normalize_ip(host)
  if not res then
    if err == "invalid port number" then return nil, "must not have a port" end
    return nil, "invalid value: " .. host
  end
  if res.type ~= "name" then return nil, "must not be an IP" end
  if res.port then return nil, "must not have a port" end
  return true
end

local function validate_sni(host)
  local res, err = ip.normalize_ip(host)
  if not res then
    if err == "invalid port number" then return nil, "must not have a port" end
    return nil, "invalid value: " .. host
  end
  if res.type ~= "name" then return nil, "must not be an IP" end
  if res.port then return nil, "must not have a port" end
  return true
end

local function validate_ip(v)
  if ip.is_valid_ip(v) then return true end
  return nil, "not an ip address: " .. v
end

local function validate_ip_or_cidr(v)
  if ip.is_valid_ip_or_cidr(v) then return true end
  return nil, "invalid ip or cidr range: '" .. v .. "'"
end

local function validate_ip_or_cidr_v4(v)
  if ip.is_valid_ip_or_cidr_v4(v) then return true end
  return nil, "invalid ipv4 cidr range: '" .. v .. "'"
end

local function validate_path(path)
  if not match(path, "^/[%w%.%-_~/%%:@!%$&'%(%)%*%+,;=]*$") then
    return nil, "invalid path: '" .. path .. "' (characters outside of the reserved list of RFC 3986 found)"
  end
  local raw = gsub(path, "%%%x%x", "___")
  local bad = find(raw, "%", 1, true)
  if bad then return nil, "invalid url-encoded value: '" .. raw:sub(bad, bad + 2) .. "'" end
  return true
end

local function validate_url(url)
  local scheme, rest = match(url, "^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "missing scheme in url" end
  local host = match(rest, "^([^/?#]*)")
  host = host:gsub("^.*@", "")
  if host == "" then return nil, "missing host in url" end
  return true
end

local function validate_name(name)
  if not match(name, "^[%w%.%-_~]+$") then
    return nil, "invalid value '" .. name .. "': it must only contain alphanumeric and '., -, _, ~' characters"
  end
  return true
end

local function validate_utf8_name(name)
  if not match(name, "^[%w%.%-_~\128-\244]+$") then
    return nil, "invalid value '" .. name .. "': the only accepted ascii characters are alphanumerics or ., -, _, and ~"
  end
  return true
end

local function validate_tag(tag)
  if not match(tag, "^[ \033-\043\045\046\048-\126\128-\244]+$") then
    return nil, "invalid tag '" .. tag .. "': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
  end
  return true
end

local function validate_semver(v)
  if match(v, "^%d+%.%d+%.%d+") or match(v, "^%d+%.%d+$") or match(v, "^%d+$") then return true end
  return nil, "invalid version number: must be in format of X.Y.Z"
end

local function validate_lua(code)
  local ok, err = loadstring(code)
  if not ok then return nil, "Error parsing function: " .. tostring(err) end
  return true
end

local function validate_pem(v)
  if find(v, "-----BEGIN ", 1, true) then return true end
  return nil, "invalid PEM value"
end

local t = {}

t.http_method = define { type = "string", match = "^%u+$" }
t.protocol = define { type = "string", one_of = constants.PROTOCOLS }
t.host = define { type = "string", custom_validator = validate_host }
t.redis_host = t.host
t.host_with_optional_port = define { type = "string", custom_validator = validate_host_with_optional_port }
t.wildcard_host = define { type = "string", custom_validator = validate_wildcard_host }
t.ip = define { type = "string", custom_validator = validate_ip }
t.ip_or_cidr = define { type = "string", custom_validator = validate_ip_or_cidr }
t.cidr_v4 = define { type = "string", custom_validator = validate_ip_or_cidr_v4 }
t.cidr = t.cidr_v4
t.port = define { type = "integer", between = { 0, 65535 } }
t.path = define { type = "string", starts_with = "/",
                  match_none = { { pattern = "//", err = "must not have empty segments" } },
                  custom_validator = validate_path }
t.url = define { type = "string", custom_validator = validate_url }
t.cookie_name = define { type = "string", custom_validator = http.validate_cookie_name }
t.header_name = define { type = "string", custom_validator = http.validate_header_name }
t.timeout = define { type = "integer", between = { 0, 2 ^ 31 - 2 } }
t.uuid = define { type = "string", uuid = true, auto = true }
t.auto_timestamp_s = define { type = "integer", timestamp = true, auto = true }
t.auto_timestamp_ms = define { type = "number", timestamp = true, auto = true }
t.no_route = define { type = "foreign", reference = "routes" }
t.no_service = define { type = "foreign", reference = "services" }
t.no_consumer = define { type = "foreign", reference = "consumers" }
t.no_consumer_group = define { type = "foreign", reference = "consumer_groups" }
t.name = define { type = "string", unique = true, custom_validator = validate_name }
t.utf8_name = define { type = "string", unique = true, custom_validator = validate_utf8_name }
t.sni = define { type = "string", custom_validator = validate_sni }
t.redis_server_name = t.sni
t.certificate = define { type = "string", custom_validator = validate_pem }
t.key = define { type = "string", custom_validator = validate_pem, encrypted = true }
t.pem = define { type = "record", required = false, fields = {
  { private_key = { type = "string", required = false, custom_validator = validate_pem, encrypted = true } },
  { public_key = { type = "string", required = false, custom_validator = validate_pem } },
} }
t.tag = define { type = "string", required = true, custom_validator = validate_tag }
t.tags = define { type = "set", elements = t.tag }
t.protocols = define { type = "set", required = true,
                       default = { "grpc", "grpcs", "http", "https" },
                       elements = t.protocol }
t.protocols_http = define { type = "set", required = true,
                            default = { "grpc", "grpcs", "http", "https" },
                            elements = { type = "string", one_of = { "grpc", "grpcs", "http", "https", "ws", "wss" } } }
t.semantic_version = define { type = "string", custom_validator = validate_semver }
t.lua_code = define { type = "map", keys = { type = "string", len_min = 1 },
                      values = { type = "string", len_min = 1, custom_validator = validate_lua } }
t.ttl = define { type = "number", between = { 0, 100000000 } }
t.methods = define { type = "set", elements = t.http_method }
t.hosts = define { type = "array", elements = t.wildcard_host }
t.headers = define { type = "map", keys = t.header_name, values = { type = "array", elements = { type = "string" } } }
t.router_path = define { type = "string", match_any = { patterns = { "^/", "^~/" },
                                                          err = "should start with: / (fixed path) or ~/ (regex path)" } }
t.router_paths = define { type = "array", elements = t.router_path }
t.sources = define { type = "set", elements = { type = "record", fields = {
  { ip = t.ip_or_cidr }, { port = t.port } } } }
t.destinations = t.sources
t.capability = define { type = "string" }
t.paths = t.router_paths
t.no_sources = define { type = "set", eq = nil }
t.no_destinations = t.no_sources
t.no_methods = t.no_sources
t.no_hosts = define { type = "array" }
t.no_paths = t.no_hosts
t.no_headers = define { type = "map" }
t.run_on = define { type = "string", required = true, default = "first", one_of = { "first", "second", "all" } }
t.run_on_first = t.run_on { one_of = { "first" } }
t.queue = define { type = "record", fields = {
  { max_batch_size = { type = "integer", default = 1, between = { 1, 1000000 } } },
  { max_coalescing_delay = { type = "number", default = 1, between = { 0, 3600 } } },
  { max_entries = { type = "integer", default = 10000, between = { 1, 1000000 } } },
  { max_bytes = { type = "integer" } },
  { max_retry_time = { type = "number", default = 60 } },
  { initial_retry_delay = { type = "number", default = 0.01, between = { 0.001, 1000000 } } },
  { max_retry_delay = { type = "number", default = 60, between = { 0.001, 1000000 } } },
  { concurrency_limit = { type = "integer", default = 1, one_of = { -1, 1 } } },
} }

return t
