-- response-header: adds fixed headers to every response (and to what the upstream receives,
-- when `request_headers` is set).
local ResponseHeader = {
  PRIORITY = 800,
  VERSION = "1.0.0",
}

function ResponseHeader:access(conf)
  for name, value in pairs(conf.request_headers or {}) do
    gw.service.request.set_header(name, value)
  end
end

function ResponseHeader:header_filter(conf)
  for name, value in pairs(conf.headers) do
    gw.response.set_header(name, value)
  end
end

return ResponseHeader
