-- request-validator: checks a request against JSON Schemas (draft 7, lua/gw/jsonschema.lua)
-- before it goes upstream: the body, the query arguments, the headers and the path parameters
-- (the named captures of the route's regex path). Every failing field is reported at once:
-- 400 {"error":"Validation failed","details":["body.email: must be a valid email", ...]};
-- a body whose Content-Type is not allowed gets 415. The schemas are compiled once per config
-- table (a weak-keyed cache), never per request; the body is read only when body_schema is set.
local jsonschema = require "gw.jsonschema"

local RequestValidator = {
  PRIORITY = 999,          -- after authentication (key-auth 1250, jwt 1450, basic-auth 1100)
  VERSION = "1.0.0",
}

local type, pairs, next, setmetatable, error = type, pairs, next, setmetatable, error

local EMPTY = setmetatable({}, { __newindex = function() error("read-only", 2) end })

-- The request's headers as an object for the header schema. When the schema only looks up the
-- properties it names (no additionalProperties, patternProperties, ...), a proxy reads each
-- named header on demand instead of building the table of every header.
local header_proxy = setmetatable({}, { __index = function(_, k)
  if type(k) ~= "string" then return nil end
  local n = gw.request.get_header_count(k)
  if n == 0 then return nil end
  if n == 1 then return gw.request.get_header(k) end
  return gw.request.get_headers()[k]
end })

local LOOKUP_ONLY = { type = true, properties = true, required = true, title = true, description = true,
  ["$schema"] = true, ["$comment"] = true }

local function lookup_only(schema)
  if type(schema) ~= "table" then return false end
  for k in pairs(schema) do
    if not LOOKUP_ONLY[k] then return false end
  end
  return true
end

local function media_matcher(list)
  local exact, patterns = {}, {}
  for _, t in ipairs(list) do
    t = t:lower()
    if t:find("*", 1, true) then
      patterns[#patterns + 1] = "^" .. t:gsub("[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0"):gsub("%*", "[^/]*") .. "$"
    else
      exact[t] = true
    end
  end
  return function(media)
    if exact[media] then return true end
    for i = 1, #patterns do
      if media:find(patterns[i]) then return true end
    end
    return false
  end
end

local function compile(schema, opts, what)
  if schema == nil then return nil end
  local v, errs = jsonschema.compile(schema, opts)
  if not v then error("request-validator: invalid " .. what .. ": " .. table.concat(errs, "; ")) end
  return v
end

-- conf -> its compiled validators, built on first use in each worker
local cache = setmetatable({}, { __mode = "k" })

local function compiled(conf)
  local c = cache[conf]
  if c then return c end
  local max = conf.max_errors or 20
  local header_schema = conf.header_schema
  if type(header_schema) == "string" then header_schema = jsonschema.decode(header_schema) or header_schema end
  c = {
    body = compile(conf.body_schema, { max_errors = max }, "body_schema"),
    query = compile(conf.query_schema, { coerce = true, max_errors = max }, "query_schema"),
    header = compile(header_schema, { coerce = true, lower_keys = true, max_errors = max }, "header_schema"),
    header_proxy = lookup_only(header_schema),
    path = compile(conf.path_schema, { coerce = true, max_errors = max }, "path_schema"),
    allowed = media_matcher(conf.allowed_content_types or { "application/json" }),
    allowed_list = table.concat(conf.allowed_content_types or { "application/json" }, ", "),
  }
  cache[conf] = c
  return c
end
RequestValidator._compiled = compiled

-- the form validator (strings read as numbers and booleans) is built when a form first comes
local function form_validator(conf, c)
  if c.body_form == nil then
    c.body_form = compile(conf.body_schema, { coerce = true, max_errors = conf.max_errors or 20 }, "body_schema")
  end
  return c.body_form
end

local JSON_TYPE = { ["Content-Type"] = "application/json; charset=utf-8" }

-- {"error":MESSAGE,"details":[...]}, "error" first
local function fail(conf, status, message, details)
  local body = '{"error":"' .. message .. '"'
  if conf.verbose_response ~= false then body = body .. ',"details":' .. jsonschema.encode(details) end
  return gw.response.exit(status, body .. "}", JSON_TYPE)
end

local function path_params()
  local named = gw.request.get_uri_captures().named
  for k, v in pairs(named) do
    if v == false then named[k] = nil end          -- a group that did not take part
  end
  return named
end

-- errs: the list so far (nil when none); returns it
local function check_body(conf, c, errs)
  local ct = gw.request.get_header("content-type")
  local media = ct and (ct:match("^%s*([^;%s]+)") or ""):lower()
  if media and not c.allowed(media) then
    return nil, "header.content-type: must be one of: " .. c.allowed_list
  end
  local body = gw.request.get_raw_body()
  if body == "" then
    errs = errs or {}
    if #errs < (conf.max_errors or 20) then errs[#errs + 1] = "body: is required" end
    return errs
  end
  if not media then return nil, "header.content-type: is required with a body (one of: " .. c.allowed_list .. ")" end
  local value, validator
  if media == "application/x-www-form-urlencoded" then
    value = gw.request.get_body(media)
    validator = form_validator(conf, c)
  else
    value = jsonschema.decode(body)
    validator = c.body
  end
  if value == nil then
    errs = errs or {}
    if #errs < (conf.max_errors or 20) then errs[#errs + 1] = "body: is not valid JSON" end
    return errs
  end
  local _
  _, errs = validator.validate(value, "body", errs)
  return errs
end

function RequestValidator:access(conf)
  local c = compiled(conf)
  local errs, _
  if c.path then _, errs = c.path.validate(path_params(), "path", errs) end
  if c.query then
    local q = gw.request.get_raw_query() ~= "" and gw.request.get_query() or EMPTY
    _, errs = c.query.validate(q, "query", errs)
  end
  if c.header then
    _, errs = c.header.validate(c.header_proxy and header_proxy or gw.request.get_headers(), "header", errs)
  end
  if c.body then
    local unsupported
    errs, unsupported = check_body(conf, c, errs)
    if unsupported then return fail(conf, 415, "Unsupported Media Type", { unsupported }) end
  end
  if errs and next(errs) then return fail(conf, 400, "Validation failed", errs) end
end

return RequestValidator
