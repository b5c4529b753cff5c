-- opentelemetry: where spans go (OTLP/HTTP JSON), how many are kept, and which requests are traced.
local HEADER_NAME = "^[%w!#$%%&'*+%-.^_`|~]+$"

local function endpoint_ok(url)
  local scheme = url:match("^(%a[%w+.-]*)://")
  scheme = scheme and scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then
    return nil, 'expected an http:// or https:// URL (e.g. "http://127.0.0.1:4318/v1/traces")'
  end
  if url:find("[%s%c]") then return nil, "the URL must not contain spaces or control characters" end
  if url:find("#", 1, true) then return nil, "the URL must not contain a fragment" end
  local ok, config = pcall(require, "gw.config")          -- host and port checked as for services
  if ok and type(config) == "table" and config.parse_url then
    local u, err = config.parse_url(url)
    if not u then return nil, err end
  end
  return true
end

local function headers_ok(map)
  for name, value in pairs(map) do
    if not name:find(HEADER_NAME) then return nil, "'" .. name .. "' is not a header name" end
    if name:lower() == "content-type" or name:lower() == "content-length" then
      return nil, "header " .. name .. " is set by the exporter"
    end
    if value:find("[\r\n%z]") then return nil, "header " .. name .. ": value must not contain CR, LF or NUL" end
  end
  return true
end

local function attributes_ok(map)
  for key, value in pairs(map) do
    local t = type(value)
    if t ~= "string" and t ~= "number" and t ~= "boolean" then
      return nil, key .. ": expected a string, a number or a boolean"
    end
    if t == "number" and (value ~= value or value == math.huge or value == -math.huge) then
      return nil, key .. ": expected a finite number"
    end
    if key == "service.name" then return nil, "service.name: set it with service_name" end
  end
  return true
end

return {
  name = "opentelemetry",
  fields = {
    { endpoint = { type = "string", required = true, custom_validator = endpoint_ok,
                   description = "the OTLP/HTTP traces URL, path included (a collector: http://HOST:4318/v1/traces)" } },
    { headers = { type = "map", keys = { type = "string" },
                  values = { type = "string" }, default = {}, custom_validator = headers_ok,
                  description = "headers sent with every export (an Authorization for the collector)" } },
    { service_name = { type = "string", default = "gw", len_min = 1,
                       description = "the resource attribute service.name" } },
    { resource_attributes = { type = "map", keys = { type = "string", len_min = 1 }, values = { type = "any" },
                              default = {}, custom_validator = attributes_ok,
                              description = "more resource attributes (deployment.environment, service.version, ...)" } },
    { sampler = { type = "string", default = "parent_based_ratio", one_of = { "parent_based_ratio", "ratio" },
                  description = "parent_based_ratio: an incoming traceparent's sampled flag decides, sampling_ratio otherwise; ratio: sampling_ratio always" } },
    { sampling_ratio = { type = "number", default = 1, between = { 0, 1 },
                         description = "the share of new traces recorded, decided from the trace id" } },
    { plugin_spans = { type = "boolean", default = true,
                       description = "a span per plugin phase the request ran" } },
    { include_query = { type = "boolean", default = false,
                        description = "record the query string as url.query (it may carry secrets)" } },
    { queue_size = { type = "integer", default = 2048, between = { 1, 1000000 },
                     description = "spans waiting for export per worker; past it new spans are dropped and counted" } },
    { batch_span_count = { type = "integer", default = 200, between = { 1, 100000 },
                           description = "the most spans per export request; this many waiting start an export at once" } },
    { batch_flush_delay = { type = "number", default = 1, between = { 0.01, 3600 },
                            description = "seconds between exports of what is waiting" } },
    { retry_count = { type = "integer", default = 2, between = { 0, 10 },
                      description = "more attempts for a batch the collector refused (429, 5xx) or could not be reached" } },
    { connect_timeout = { type = "integer", default = 1000, between = { 1, 600000 }, description = "ms" } },
    { send_timeout = { type = "integer", default = 5000, between = { 1, 600000 }, description = "ms" } },
    { read_timeout = { type = "integer", default = 5000, between = { 1, 600000 }, description = "ms" } },
  },
  custom_validator = function(conf)
    if conf.batch_span_count > conf.queue_size then
      return nil, "batch_span_count (" .. conf.batch_span_count .. ") must not exceed queue_size (" ..
        conf.queue_size .. ")"
    end
    return true
  end,
}
