local HEADER_NAME = "^[%w!#$%%&'*+%-.^_`|~]+$"

return {
  name = "proxy-cache",
  fields = {
    { strategy = { type = "string", default = "memory", one_of = { "memory", "redis" },
                   description = "where entries live: memory (a gw.shared dict) or redis (gw.redis)" } },
    { dict = { type = "string", default = "proxy_cache", match = "^[%w_%-]+$",
               description = "gw.shared dict of the memory strategy; declared with 16 MiB when gw.shared_dicts does not list it" } },
    { redis_host = { type = "string", default = "127.0.0.1", len_min = 1, description = "redis strategy: server host" } },
    { redis_port = { type = "integer", default = 6379, between = { 1, 65535 }, description = "redis strategy: server port" } },
    { redis_password = { type = "string", len_min = 1, description = "redis strategy: AUTH password" } },
    { redis_database = { type = "integer", default = 0, between = { 0, 1000 }, description = "redis strategy: SELECT db" } },
    { redis_timeout = { type = "integer", default = 1000, between = { 1, 600000 },
                        description = "redis strategy: ms bound on every Redis call (a failed call: Bypass)" } },
    { request_method = { type = "array", default = { "GET", "HEAD" }, len_min = 1,
                         elements = { type = "string", match = "^[A-Z]+$" },
                         description = "request methods whose responses are cached" } },
    { response_code = { type = "array", default = { 200, 301, 404 }, len_min = 1,
                        elements = { type = "integer", between = { 100, 599 } },
                        description = "upstream statuses that are cached" } },
    { content_type = { type = "array", default = { "text/plain", "application/json" }, len_min = 1,
                       elements = { type = "string", len_min = 1 },
                       description = "media types cached (parameters such as charset ignored); \"*\" for any" } },
    { cache_ttl = { type = "integer", default = 300, gt = 0, description = "seconds an entry stays fresh" } },
    { ttl_by_status = { type = "map", default = {},
                        keys = { type = "string", match = "^[1-5]%d%d$" },
                        values = { type = "integer", between = { 0, 31536000 } },
                        description = "TTL per status (\"404\": 60), instead of cache_ttl" } },
    { cache_control = { type = "boolean", default = false,
                        description = "use max-age/s-maxage as the TTL and let a request's no-cache/no-store bypass the cache" } },
    { stale_ttl = { type = "integer", default = 0, between = { 0, 31536000 },
                    description = "seconds past expiry an entry may still be served when the upstream fails (0: never)" } },
    { max_body_size = { type = "integer", default = 1048576, between = { 0, 1073741824 },
                        description = "larger bodies are not stored" } },
    { vary_headers = { type = "array", default = {}, elements = { type = "string", match = HEADER_NAME },
                       description = "request headers whose values are part of the key" } },
    { vary_consumer = { type = "boolean", default = false,
                        description = "the authenticated consumer is part of the key" } },
    { cache_key_header = { type = "boolean", default = false, description = "send X-Cache-Key" } },
  },
  custom_validator = function(conf)
    if conf.strategy == "redis" and not pcall(require, "gw.redis") then
      return nil, "strategy redis needs gw.redis, which this gw does not have"
    end
    return true
  end,
}
