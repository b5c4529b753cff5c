-- request-transformer: Kong's config shape. Each of remove, rename, replace, add, append holds
-- lists of strings for headers, querystring and body: names (remove), "old:new" (rename) or
-- "name:value" (the others; the value may be a $(...) template). Body names are JSON paths
-- ("user.name"); form fields take them as plain names.
local transform = require "gw.transform"

local LISTS = {
  { "headers", "headers", "headers" },
  { "querystring", "args", "query arguments" },
  { "body", "body", "JSON (dotted paths) or form fields" },
}

local URI = { uri = { type = "string", custom_validator = transform.check_uri,
  description = "the path sent upstream, a template: /v2/users/$(uri_captures.id)" } }

local fields = { { http_method = { type = "string", match = "^%u+$",
                                   description = "the method sent upstream" } } }
for _, op in ipairs(transform.OPS) do
  fields[#fields + 1] = transform.op_field(op, LISTS, "body", op == "replace" and { URI } or nil)
end
fields[#fields + 1] = { max_body_size = { type = "integer", default = 1048576, between = { 0, 2 ^ 53 },
  description = "bytes: a larger body is not transformed (see body_policy); 0: no bound of its own" } }
fields[#fields + 1] = { body_policy = { type = "string", default = "pass", one_of = { "pass", "reject" },
  description = "a body that cannot be transformed (too large, invalid JSON, not an object): "
    .. "pass sends it untouched, reject answers 413 or 400" } }

return { name = "request-transformer", fields = fields }
