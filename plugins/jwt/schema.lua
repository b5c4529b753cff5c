local HEADER_NAME = "^[%w!#$%%&'*+%-.^_`|~]+$"

-- headers the plugin sets itself (lua/gw/auth.lua): a claim must not be mapped onto them
local RESERVED = { ["x-consumer-id"] = true, ["x-consumer-custom-id"] = true, ["x-consumer-username"] = true,
                   ["x-credential-identifier"] = true, ["x-anonymous-consumer"] = true,
                   ["x-consumer-groups"] = true, ["authorization"] = true, ["cookie"] = true, ["host"] = true }

local function names(description, default, elem)
  return { type = "set", default = default, elements = elem or { type = "string", len_min = 1 },
           description = description }
end

return {
  name = "jwt",
  fields = {
    { uri_param_names = names("query arguments that may carry the token", { "jwt" }) },
    { cookie_names = names("cookies that may carry the token", {},
                           { type = "string", match = HEADER_NAME }) },
    { header_names = names("headers that may carry the token as `Bearer TOKEN`", { "authorization" },
                           { type = "string", match = HEADER_NAME }) },
    { key_claim_name = { type = "string", default = "iss", len_min = 1, len_max = 256,
                         description = "claim naming the consumer's jwt secret (when the claims lack it: the "
                                       .. "header parameter of that name, such as kid)" } },
    { claims_to_verify = { type = "set", default = {}, elements = { type = "string", one_of = { "exp", "nbf" } },
                           description = "registered claims that must be present and valid now" } },
    { leeway = { type = "number", default = 0, between = { 0, 600 },
                 description = "seconds of clock skew tolerated by the exp and nbf checks" } },
    { maximum_expiration = { type = "number", default = 0, between = { 0, 31536000 },
                             description = "when > 0, tokens whose exp is further away (seconds) are refused" } },
    { required_claims = { type = "set", default = {}, elements = { type = "string", len_min = 1 },
                          description = "claims that must be present" } },
    { allowed_iss = { type = "set", default = {}, elements = { type = "string" },
                      description = "when not empty, the iss claim must be one of these" } },
    { allowed_aud = { type = "set", default = {}, elements = { type = "string" },
                      description = "when not empty, the aud claim (a string or a list) must contain one of these" } },
    { claims_to_headers = { type = "map", default = {}, keys = { type = "string", len_min = 1 },
                            values = { type = "string", match = HEADER_NAME },
                            description = "claim name -> request header sent upstream with its value" } },
    { anonymous = { type = "string", len_min = 1,
                    description = "id or username of the consumer used when authentication fails" } },
    { run_on_preflight = { type = "boolean", default = true,
                           description = "also authenticate OPTIONS requests (CORS preflight)" } },
    { realm = { type = "string", default = "gw", not_match = '["\\%c]',
                description = "realm of the WWW-Authenticate: Bearer header of 401 answers" } },
  },
  custom_validator = function(conf)
    if #conf.uri_param_names + #conf.cookie_names + #conf.header_names == 0 then
      return nil, "at least one of uri_param_names, cookie_names, header_names must name a place for the token"
    end
    if conf.maximum_expiration > 0 then
      local has_exp = false
      for _, c in ipairs(conf.claims_to_verify) do has_exp = has_exp or c == "exp" end
      if not has_exp then return nil, 'maximum_expiration needs "exp" in claims_to_verify' end
    end
    for claim, header in pairs(conf.claims_to_headers) do
      if RESERVED[header:lower()] then
        return nil, "claims_to_headers: claim " .. claim .. " cannot be sent as " .. header .. " (set by gw)"
      end
    end
    return true
  end,
}
