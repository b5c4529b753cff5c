-- cors: which origins may call the routes from a browser, and what the preflight answers.
-- An `origins` entry is "*", an exact origin (only letters, digits, `.`, `:`, `/`, `-`, or an
-- IPv6 literal in brackets: compared exactly, case-insensitively, default port ignored) or a
-- PCRE2 pattern matched against the whole origin.

local METHODS = { "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT" }

-- how the handler wraps a pattern (one alternative of `(?i)^(?:...)\z`): checked here in that
-- form, so a pattern that compiles alone but not inside the wrapper is refused at load
local function check_pattern(o)
  local regex = require "gw.regex"
  local ok, err = regex.check(o)
  if not ok then return nil, "'" .. o .. "' is not a valid PCRE2 pattern: " .. tostring(err) end
  ok, err = regex.check("(?i)^(?:" .. o .. ")\\z")
  if not ok then return nil, "'" .. o .. "' cannot be matched as a whole origin: " .. tostring(err) end
  return true
end

local function check_origin(o)
  if o == "*" or o == "null" then return true end
  if o:find("://*", 1, true) then
    return nil, "'" .. o .. "' is a PCRE2 pattern, not a wildcard: write "
      .. o:gsub("([^\\])%.", "%1\\."):gsub("://%*\\%.", "://([a-z0-9-]+\\.)+") .. " for any subdomain"
  end
  local ipv6 = o:find("^%a[%w.-]*://%[[%x:.]*:[%x:.]*%]:?%d*$")
  if not (o:find("^[%w.:/%-]+$") or ipv6) then return check_pattern(o) end
  -- a plain origin: scheme://host[:port], nothing after it
  local scheme, rest = o:match("^(%a[%w.-]*)://(.+)$")
  if not scheme then
    return nil, "'" .. o .. "' is not an origin (scheme://host[:port]), a PCRE2 pattern or *"
  end
  local authority = rest:match("^[^/]*")
  if authority ~= rest then
    return nil, "'" .. o .. "' has a path: an origin is " .. scheme .. "://" .. authority
  end
  if not ipv6 and not authority:find("^[%w.-]+:?%d*$") then
    return nil, "'" .. o .. "' is not an origin (scheme://host[:port]), a PCRE2 pattern or *"
  end
  local port = tonumber(authority:match(":(%d+)$"))
  if port and (port < 1 or port > 65535) then return nil, "'" .. o .. "': port out of range" end
  return true
end

local function check_header_name(h)
  if h:find("^[%w!#$%%&'*+.^_`|~%-]+$") then return true end
  return nil, "'" .. h .. "' is not a header name"
end

local HEADER_NAME = { type = "string", custom_validator = check_header_name }

return {
  name = "cors",
  fields = {
    { origins = { type = "array", elements = { type = "string", len_min = 1, custom_validator = check_origin },
                  description = "allowed origins: exact origins, PCRE2 patterns, or * (none: any origin)" } },
    { methods = { type = "array", len_min = 1, default = METHODS,
                  elements = { type = "string", one_of = METHODS },
                  description = "methods a preflight may ask for (Access-Control-Allow-Methods)" } },
    { headers = { type = "array", elements = HEADER_NAME,
                  description = "Access-Control-Allow-Headers (none: echo Access-Control-Request-Headers)" } },
    { exposed_headers = { type = "array", elements = HEADER_NAME,
                          description = "Access-Control-Expose-Headers on actual responses" } },
    { credentials = { type = "boolean", required = true, default = false,
                      description = "send Access-Control-Allow-Credentials: true" } },
    { max_age = { type = "integer", between = { 0, 2147483647 },
                  description = "Access-Control-Max-Age of the preflight answer, in seconds" } },
    { preflight_continue = { type = "boolean", required = true, default = false,
                             description = "send preflight requests upstream instead of answering them" } },
    { private_network = { type = "boolean", required = true, default = false,
                          description = "answer Access-Control-Request-Private-Network: true" } },
  },
}
