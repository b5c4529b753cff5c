-- kong.db.schema (gw kong-compat): what plugin schemas take from Kong's Schema module —
-- Schema.define (callable field definitions) and the validators table.
local regex = require "gw.regex"

local Schema = {}

--- A field definition that can be called with overrides: typedefs.port { default = 6379 }.
function Schema.define(f)
  return setmetatable(f, { __call = function(self, overrides)
    local t = {}
    for k, v in pairs(self) do t[k] = v end
    for k, v in pairs(overrides or {}) do t[k] = v end
    return Schema.define(t)
  end })
end

Schema.validators = {
  is_regex = function(v)
    if type(v) ~= "string" then return nil, "expected a string" end
    local ok, err = regex.check(v)
    if ok then return true end
    return nil, "not a valid regex: " .. v .. " (" .. tostring(err) .. ")"
  end,
}

return Schema
