-- request-validator: JSON Schema (draft 7) for the body, the query arguments, the headers and the
-- path parameters of a request. Each schema is a YAML map or JSON text; it is compiled here, so a
-- bad schema (unknown type, bad pattern, non-numeric minimum, ...) is a config error with its path.
local jsonschema = require "gw.jsonschema"

local function schema_field(opts, description)
  return { type = "any", description = description, custom_validator = function(v)
    if type(v) ~= "table" and type(v) ~= "string" and type(v) ~= "boolean" then
      return nil, "expected a JSON Schema (a map, or JSON text)"
    end
    return jsonschema.check(v, opts)
  end }
end

-- "type/subtype", where either part may be "*" (or contain it: application/*+json)
local MEDIA = "^[%w!#$&^_.+*%-]+/[%w!#$&^_.+*%-]+$"

return {
  name = "request-validator",
  fields = {
    { body_schema = schema_field(nil, "JSON Schema of the request body") },
    { query_schema = schema_field({ coerce = true },
        "JSON Schema of the query arguments, an object of strings (integer, number and boolean types are read from them)") },
    { header_schema = schema_field({ coerce = true, lower_keys = true },
        "JSON Schema of the request headers, an object keyed by lowercase header name") },
    { path_schema = schema_field({ coerce = true },
        "JSON Schema of the path parameters: the named captures of the route's regex path") },
    { allowed_content_types = { type = "array", default = { "application/json" }, len_min = 1,
        elements = { type = "string", custom_validator = function(v)
          if not v:find(MEDIA) then return nil, "expected a media type such as application/json" end
          return true
        end },
        description = "media types a body may have when body_schema is set ('*' matches any part)" } },
    { verbose_response = { type = "boolean", default = true,
        description = "list each failing field in the 400 and 415 answers" } },
    { max_errors = { type = "integer", default = 20, between = { 1, 100 },
        description = "at most this many errors are collected and reported" } },
  },
  custom_validator = function(c)
    if c.body_schema == nil and c.query_schema == nil and c.header_schema == nil and c.path_schema == nil then
      return nil, "at least one of body_schema, query_schema, header_schema or path_schema is required"
    end
    return true
  end,
}
