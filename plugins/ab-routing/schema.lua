return {
  name = "ab-routing",
  fields = {
    { header = { type = "string", default = "X-API-Version", required = true,
                 description = "request header whose value selects the upstream" } },
    { rules = { type = "array", required = true, len_min = 1,
                description = "value -> upstream rules, first match wins",
                elements = { type = "record", fields = {
                  { value = { type = "string", required = true, description = "header value to match" } },
                  { upstream = { type = "string", required = true, description = "upstream or service name" } },
                } } } },
  },
}
