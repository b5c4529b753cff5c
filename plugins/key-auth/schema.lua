local HEADER_NAME = "^[%w!#$%%&'*+%-.^_`|~]+$"

return {
  name = "key-auth",
  fields = {
    { key_names = { type = "array", default = { "apikey" }, len_min = 1,
                    elements = { type = "string", match = HEADER_NAME },
                    description = "names of the header, query argument or body field that carry the key, tried in order" } },
    { key_in_header = { type = "boolean", default = true, description = "look for the key in request headers" } },
    { key_in_query = { type = "boolean", default = true, description = "look for the key in query arguments" } },
    { key_in_body = { type = "boolean", default = false,
                      description = "look for the key in a JSON or form-encoded request body" } },
    { hide_credentials = { type = "boolean", default = false,
                           description = "remove the key from the request before it goes upstream" } },
    { anonymous = { type = "string", len_min = 1,
                    description = "id or username of the consumer used when authentication fails" } },
    { run_on_preflight = { type = "boolean", default = true,
                           description = "also authenticate OPTIONS requests (CORS preflight)" } },
    { realm = { type = "string", default = "gw", not_match = '["\\%c]',
                description = "realm of the WWW-Authenticate: Key header of 401 answers" } },
  },
  custom_validator = function(conf)
    if not (conf.key_in_header or conf.key_in_query or conf.key_in_body) then
      return nil, "at least one of key_in_header, key_in_query, key_in_body must be true"
    end
    return true
  end,
}
