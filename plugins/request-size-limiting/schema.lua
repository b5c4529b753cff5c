return {
  name = "request-size-limiting",
  fields = {
    { allowed_payload_size = { type = "number", default = 128, gt = 0,
                               description = "the largest request body allowed, in size_unit" } },
    { size_unit = { type = "string", default = "megabytes", one_of = { "bytes", "kilobytes", "megabytes" },
                    description = "unit of allowed_payload_size (1 kilobyte = 1024 bytes)" } },
    { require_content_length = { type = "boolean", default = false,
                                 description = "refuse a body without Content-Length (chunked) with 411" } },
  },
}
