-- response-transformer: Kong's config shape. Each of remove, rename, replace, add, append holds
-- lists of strings for headers and json: names (remove), "old:new" (rename) or "name:value" (the
-- others; the value may be a $(...) template reading the request). JSON names are dotted paths.
local transform = require "gw.transform"

local LISTS = {
  { "headers", "headers", "response headers" },
  { "json", "json", "JSON body fields (dotted paths)" },
}

local fields = {}
for _, op in ipairs(transform.OPS) do fields[#fields + 1] = transform.op_field(op, LISTS, "json") end

return { name = "response-transformer", fields = fields }
