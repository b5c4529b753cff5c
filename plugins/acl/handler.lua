-- acl: lets a request through depending on the groups (acls) of its consumer, which an
-- authentication plugin (key-auth, basic-auth, jwt, ...) with a higher PRIORITY has set.
local auth = require "gw.auth"

local ACL = {
  PRIORITY = 950,
  VERSION = "1.0.0",
}

local FORBIDDEN = "You cannot consume this service"

function ACL:access(conf)
  local consumer = gw.client.get_consumer()
  if not consumer then
    -- no authentication plugin ran before this one, or none accepted the request
    return auth.unauthorized("Unauthorized")
  end
  local list, set = auth.consumer_groups(consumer)
  if conf.deny then
    for _, g in ipairs(conf.deny) do
      if set[g] then return auth.forbidden(FORBIDDEN) end
    end
  end
  if conf.allow then
    local ok = false
    for _, g in ipairs(conf.allow) do
      if set[g] then ok = true break end
    end
    if not ok then return auth.forbidden(FORBIDDEN) end
  end
  if conf.hide_groups_header or #list == 0 then
    gw.service.request.clear_header(auth.HEADERS.groups)
  else
    gw.service.request.set_header(auth.HEADERS.groups, table.concat(list, ", "))
  end
end

return ACL
