return {
  name = "basic-auth",
  fields = {
    { hide_credentials = { type = "boolean", default = false,
                           description = "remove the Authorization header before the request goes upstream" } },
    { anonymous = { type = "string", len_min = 1,
                    description = "id or username of the consumer used when authentication fails" } },
    { realm = { type = "string", default = "service", not_match = '["\\%c]',
                description = "realm of the WWW-Authenticate: Basic header of 401 answers" } },
    { run_on_preflight = { type = "boolean", default = true,
                           description = "also authenticate OPTIONS requests (CORS preflight)" } },
  },
}
