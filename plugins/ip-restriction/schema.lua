local function cidr(v)
  local a, err = require("gw.ip").parse_cidr(v)
  if not a then return nil, err end
  return true
end

local CIDR = { type = "string", custom_validator = cidr }

return {
  name = "ip-restriction",
  fields = {
    { allow = { type = "array", len_min = 1, elements = CIDR,
                description = "addresses and CIDRs (IPv4, IPv6) let through; any other client is refused" } },
    { deny = { type = "array", len_min = 1, elements = CIDR,
               description = "addresses and CIDRs refused (checked before allow)" } },
    { status = { type = "integer", default = 403, between = { 400, 599 },
                 description = "status of the refusal" } },
    { message = { type = "string", default = "Your IP address is not allowed",
                  description = "message of the refusal's JSON body" } },
  },
  custom_validator = function(conf)
    if conf.allow == nil and conf.deny == nil then return nil, "at least one of allow, deny is required" end
    return true
  end,
}
