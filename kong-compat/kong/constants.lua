-- kong.constants (gw kong-compat): the constants Kong plugins read.
local PROTOCOLS = { "grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss" }
local PROTOCOLS_WITH_SUBSYSTEM = {}
for _, p in ipairs(PROTOCOLS) do
  PROTOCOLS_WITH_SUBSYSTEM[p] = (p == "tcp" or p == "tls" or p == "tls_passthrough" or p == "udp") and "stream" or "http"
end

return {
  PROTOCOLS = PROTOCOLS,
  PROTOCOLS_WITH_SUBSYSTEM = PROTOCOLS_WITH_SUBSYSTEM,
  HEADERS = {
    HOST_OVERRIDE = "X-Host-Override",
    PROXY_LATENCY = "X-Kong-Proxy-Latency",
    RESPONSE_LATENCY = "X-Kong-Response-Latency",
    ADMIN_LATENCY = "X-Kong-Admin-Latency",
    UPSTREAM_LATENCY = "X-Kong-Upstream-Latency",
    UPSTREAM_STATUS = "X-Kong-Upstream-Status",
    CONSUMER_ID = "X-Consumer-ID",
    CONSUMER_CUSTOM_ID = "X-Consumer-Custom-ID",
    CONSUMER_USERNAME = "X-Consumer-Username",
    CREDENTIAL_IDENTIFIER = "X-Credential-Identifier",
    RATELIMIT_LIMIT = "X-RateLimit-Limit",
    RATELIMIT_REMAINING = "X-RateLimit-Remaining",
    CONSUMER_GROUPS = "X-Consumer-Groups",
    AUTHENTICATED_GROUPS = "X-Authenticated-Groups",
    FORWARDED_HOST = "X-Forwarded-Host",
    FORWARDED_PATH = "X-Forwarded-Path",
    FORWARDED_PREFIX = "X-Forwarded-Prefix",
    ANONYMOUS = "X-Anonymous-Consumer",
    REQUEST_ID = "X-Kong-Request-Id",
    VIA = "Via",
    SERVER = "Server",
  },
  DATABASE = { DAO_MAX_TTL = 100000000 },
  CACHE = { NEG_TTL = 300, TTL = 0 },
  REPORTS = { STATS_TLS_PORT = 61833 },
  DEFAULT_ITERATOR = {},
}
