return {
  name = "acl",
  fields = {
    { allow = { type = "set", len_min = 1, elements = { type = "string", len_min = 1 },
                description = "groups allowed: a consumer in none of them gets 403" } },
    { deny = { type = "set", len_min = 1, elements = { type = "string", len_min = 1 },
               description = "groups denied: a consumer in any of them gets 403 (checked first)" } },
    { hide_groups_header = { type = "boolean", default = false,
                             description = "do not send X-Consumer-Groups upstream" } },
  },
  custom_validator = function(conf)
    if conf.allow == nil and conf.deny == nil then return nil, "at least one of allow, deny is required" end
    return true
  end,
}
