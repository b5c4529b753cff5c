-- ip-restriction: refuses clients by address. deny is checked first, then allow; the client is
-- gw.client.get_forwarded_ip(), so X-Forwarded-For counts only from gw.trusted_ips.
local ip = require "gw.ip"

local IpRestriction = {
  PRIORITY = 990,
  VERSION = "1.0.0",
}

-- conf -> { allow = set|false, deny = set|false }, built once per config generation (a conf
-- table lives as long as its generation).
local compiled = setmetatable({}, { __mode = "k" })

local function sets(conf)
  local s = compiled[conf]
  if not s then
    s = { allow = conf.allow and assert(ip.set(conf.allow)) or false,
          deny = conf.deny and assert(ip.set(conf.deny)) or false }
    compiled[conf] = s
  end
  return s
end

function IpRestriction:access(conf)
  local s = sets(conf)
  local client = gw.client.get_forwarded_ip()
  if (s.deny and s.deny:contains(client)) or (s.allow and not s.allow:contains(client)) then
    return gw.response.exit(conf.status, { message = conf.message })
  end
end

return IpRestriction
