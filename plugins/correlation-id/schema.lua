return {
  name = "correlation-id",
  fields = {
    { header_name = { type = "string", default = "X-Request-ID", match = "^[%w!#$%%&'*+%-.^_`|~]+$",
                      description = "the request header carrying the id" } },
    { generator = { type = "string", default = "uuid", one_of = { "uuid", "uuid#counter" },
                    description = "uuid: a random UUID v4 per request; uuid#counter: a UUID per worker, then a counter" } },
    { echo_downstream = { type = "boolean", default = true,
                          description = "send the id back to the client in the same header" } },
    { trust_incoming = { type = "boolean", default = true,
                         description = "keep an id the client (or a proxy before gw) sent, when it is well-formed" } },
  },
}
