-- ab-routing: header-based A/B selection. When the request header `conf.header` has one of the
-- rule values, the request goes to that rule's upstream (an upstream or a service name).
local ABRouting = {
  PRIORITY = 900,
  VERSION = "1.0.0",
}

function ABRouting:access(conf)
  local value = gw.request.get_header(conf.header)
  if not value then return end
  for _, rule in ipairs(conf.rules) do
    if rule.value == value then
      local ok, err = gw.service.set_upstream(rule.upstream)
      if not ok then
        gw.log.err("cannot route to ", rule.upstream, ": ", err)
        return gw.response.exit(503, { message = "upstream unavailable" })
      end
      gw.service.request.set_header("X-Upstream-Selected", rule.upstream)
      return
    end
  end
end

return ABRouting
