return {
  name = "response-header",
  fields = {
    { headers = { type = "map", keys = { type = "string" }, values = { type = "string" }, default = {},
                  description = "headers set on every response" } },
    { request_headers = { type = "map", keys = { type = "string" }, values = { type = "string" },
                          description = "headers set on the request sent upstream" } },
  },
}
