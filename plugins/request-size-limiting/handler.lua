-- request-size-limiting: 413 before reading anything when the Content-Length is over the limit;
-- a chunked body is counted by the core while it streams upstream (gw.request.set_body_limit)
-- and ends with 413 as soon as it passes the limit.
local RequestSizeLimiting = {
  PRIORITY = 951,
  VERSION = "1.0.0",
}

local UNIT = { bytes = 1, kilobytes = 1024, megabytes = 1024 * 1024 }

function RequestSizeLimiting:access(conf)
  local limit = math.floor(conf.allowed_payload_size * UNIT[conf.size_unit])
  if limit < 1 then limit = 1 end
  if conf.require_content_length and gw.request.get_header("Transfer-Encoding") then
    return gw.response.exit(411, { message = "A valid Content-Length header is required" })
  end
  if not gw.request.set_body_limit(limit) then
    return gw.response.exit(413, { message = "Request size limit exceeded" })
  end
end

return RequestSizeLimiting
