local HEADER_NAME = "^[%w!#$%%&'*+%-.^_`|~]+$"
local WINDOWS = { "second", "minute", "hour", "day", "month" }

local fields = {}
for _, w in ipairs(WINDOWS) do
  fields[#fields + 1] = { [w] = { type = "number", gt = 0,
                                  description = "requests allowed per " .. w .. (w == "month" and " (30 days)" or "") } }
end
local more = {
  { limit_by = { type = "string", default = "consumer",
                 one_of = { "consumer", "credential", "ip", "header", "path", "service" },
                 description = "what a counter is kept for; consumer, credential, header and path fall back to the client IP when the request has none" } },
  { header_name = { type = "string", match = HEADER_NAME, description = "the header whose value is counted (limit_by: header)" } },
  { path = { type = "string", starts_with = "/", description = "the request path that is counted (limit_by: path); other paths count by IP" } },
  { policy = { type = "string", default = "local", one_of = { "local", "redis" },
               description = "local: a gw.shared dict, exact across the workers of one node; redis: one atomic script per request, shared by every node" } },
  { dict = { type = "string", default = "rate_limiting", len_min = 1,
             description = "the gw.shared dict of policy local (declared with 1 MiB when gw.shared_dicts does not list it)" } },
  { fault_tolerant = { type = "boolean", default = true,
                       description = "when the counters cannot be reached, let the request through (error logged); false: answer 500" } },
  { hide_client_headers = { type = "boolean", default = false, description = "send no rate-limit headers to the client" } },
  { redis_host = { type = "string", len_min = 1, description = "Redis host (policy redis)" } },
  { redis_port = { type = "integer", default = 6379, between = { 1, 65535 } } },
  { redis_password = { type = "string", len_min = 1 } },
  { redis_database = { type = "integer", default = 0, between = { 0, 1000 } } },
  { redis_timeout = { type = "number", default = 2000, gt = 0, description = "milliseconds; bounds what Redis adds to a request" } },
}
for _, f in ipairs(more) do fields[#fields + 1] = f end

return {
  name = "rate-limiting",

  fields = fields,
  custom_validator = function(conf)
    local any = false
    for _, w in ipairs(WINDOWS) do if conf[w] then any = true end end
    if not any then return nil, "at least one of second, minute, hour, day, month is required" end
    local last
    for _, w in ipairs(WINDOWS) do
      local v = conf[w]
      if v then
        if last and v < last.v then
          return nil, string.format("the limit per %s (%s) is lower than the limit per %s (%s)", w, tostring(v), last.w, tostring(last.v))
        end
        last = { w = w, v = v }
      end
    end
    if conf.limit_by == "header" and not conf.header_name then return nil, "limit_by header needs header_name" end
    if conf.limit_by == "path" and not conf.path then return nil, "limit_by path needs path" end
    if conf.policy == "redis" and not conf.redis_host then return nil, "policy redis needs redis_host" end
    return true
  end,
}
