-- kong.tools.redis.schema (gw kong-compat): the `redis` record of Kong's rate limiting plugins.
local typedefs = require "kong.db.schema.typedefs"

return {
  config_schema = {
    type = "record",
    fields = {
      { host = typedefs.host },
      { port = typedefs.port({ default = 6379 }) },
      { timeout = typedefs.timeout { default = 2000 } },
      { username = { type = "string", referenceable = true } },
      { password = { type = "string", encrypted = true, referenceable = true, len_min = 0 } },
      { database = { type = "integer", default = 0 } },
      { ssl = { type = "boolean", required = false, default = false } },
      { ssl_verify = { type = "boolean", required = false, default = false } },
      { server_name = typedefs.sni { required = false } },
    },
  },
}
