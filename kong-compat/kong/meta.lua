-- kong.meta (gw kong-compat): the Kong version gw's PDK corresponds to.
local version = setmetatable({ major = 3, minor = 9, patch = 0 }, {
  __tostring = function(t) return string.format("%d.%d.%d", t.major, t.minor, t.patch) end,
})

return {
  _NAME = "kong",
  _VERSION = tostring(version),
  _VERSION_TABLE = version,
  _SERVER_TOKENS = "kong/" .. tostring(version) .. " (gw)",
  version = tostring(version),
  _DEPENDENCIES = {},
}
