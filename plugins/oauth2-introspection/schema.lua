local HEADER_NAME = "^[%w!#$%%&'*+%-.^_`|~]+$"
-- a scope token (RFC 6749 3.3): printable ASCII except space, " and \
local function scope_token(s)
  local ok = s ~= ""
  for i = 1, #s do
    local b = s:byte(i)
    if not (b == 0x21 or (b >= 0x23 and b <= 0x5B) or (b >= 0x5D and b <= 0x7E)) then ok = false end
  end
  if not ok then return nil, 'a scope is printable ASCII without spaces, " or \\' end
  return true
end

return {
  name = "oauth2-introspection",
  fields = {
    { introspection_url = { type = "string", required = true, match = "^[hH][tT][tT][pP][sS]?://[^/?#]",
                            description = "the identity provider's RFC 7662 introspection endpoint (http or https)" } },
    { client_id = { type = "string", required = true, len_min = 1,
                    description = "gw's client id at the identity provider (HTTP Basic user)" } },
    { client_secret = { type = "string", required = true, len_min = 1, encrypted = true,
                        description = "gw's client secret at the identity provider (HTTP Basic password)" } },
    { token_type_hint = { type = "string", default = "access_token",
                          description = "sent as token_type_hint; empty: not sent" } },
    { token_header = { type = "string", default = "Authorization", match = HEADER_NAME,
                       description = "request header with the token (Authorization: the Bearer scheme)" } },
    { token_query = { type = "string", len_min = 1,
                      description = "query argument that may carry the token instead (e.g. access_token)" } },
    { hide_credentials = { type = "boolean", default = false,
                           description = "remove the token from the request before it goes upstream" } },
    { required_scopes = { type = "array", default = {}, elements = { type = "string", custom_validator = scope_token },
                          description = "scopes the token must all have (else 403)" } },
    { consumer_by = { type = "string", default = "sub", one_of = { "sub", "client_id" },
                      description = "introspection field matched to a consumer's username or custom_id" } },
    { anonymous = { type = "string", len_min = 1,
                    description = "id or username of the consumer used when authentication fails or no consumer matches" } },
    { timeout = { type = "integer", default = 5000, between = { 1, 600000 },
                  description = "ms the whole introspection call may take (then 503)" } },
    { ttl = { type = "number", default = 60, gt = 0,
              description = "seconds an active result is cached at most (never past the token's exp)" } },
    { negative_ttl = { type = "number", default = 5, between = { 0, 86400 },
                       description = "seconds an inactive result is cached (0: not cached)" } },
    { cache_dict = { type = "string", default = "oauth2_introspection", len_min = 1,
                     description = "gw.shared dict for the cache; declared with 1 MiB when gw.shared_dicts does not list it" } },
    { ssl_verify = { type = "boolean", default = true,
                     description = "verify the identity provider's certificate (https)" } },
    { ssl_ca_file = { type = "string", len_min = 1, description = "PEM CA file instead of the system store" } },
    { realm = { type = "string", default = "gw", not_match = '["\\%c]',
                description = "realm of the WWW-Authenticate: Bearer header" } },
    { run_on_preflight = { type = "boolean", default = true,
                           description = "also authenticate OPTIONS requests (CORS preflight)" } },
  },
}
