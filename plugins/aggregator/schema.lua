-- aggregator: upstream calls (templates over the request and earlier results, run in parallel
-- waves) composed into one JSON response by a mapping. The field checks are here; templates,
-- references, dependencies (unknown names, cycles) and the mapping are checked by compiling them
-- with the handler's compiler, so what loads is what runs.
local dir = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."

local compile
local function compiler()
  if not compile then
    local chunk = assert(loadfile(dir .. "/handler.lua"))
    compile = chunk()._compile
  end
  return compile
end

local call_record = { type = "record", fields = {
  { name = { type = "string", required = true, match = "^[%a_][%w_%-]*$",
             description = "the call's name, used in $(calls.NAME....) and depends_on" } },
  { method = { type = "string", default = "GET", match = "^%u+$", description = "HTTP method" } },
  { url = { type = "string", required = true,
            description = "http(s) URL template; values are percent-encoded" } },
  { headers = { type = "map", keys = { type = "string" }, values = { type = "string" },
                description = "request headers: name -> template" } },
  { body = { type = "any", description = "a string template, or a JSON template tree sent as JSON" } },
  { timeout = { type = "integer", default = 10000, between = { 1, 600000 },
                description = "ms for the whole call" } },
  { max_body_size = { type = "integer", default = 1048576, between = { 0, 67108864 },
                      description = "longest response body accepted, in bytes" } },
  { depends_on = { type = "array", elements = { type = "string" },
                   description = "calls that must finish first (references imply this too)" } },
  { success_status = { type = "array", elements = { type = "integer", between = { 100, 599 } },
                       description = "statuses that count as success (default: 200-299)" } },
  { on_error = { type = "string", default = "fail", one_of = { "fail", "null", "fallback" },
                 description = "a failed call: answer 502/504, or use null, or use fallback" } },
  { fallback = { type = "any", description = "the call's body when it failed, with on_error: fallback" } },
} }

return {
  name = "aggregator",
  fields = {
    { calls = { type = "array", required = true, len_min = 1, len_max = 64, elements = call_record,
                description = "the upstream calls" } },
    { response = { type = "any", required = true,
                   description = "the response body: a JSON template tree over the calls' results" } },
    { response_status = { type = "integer", default = 200, between = { 200, 599 },
                          description = "the response status" } },
    { response_headers = { type = "map", keys = { type = "string" }, values = { type = "string" },
                           description = "response headers: name -> template" } },
  },
  custom_validator = function(conf)
    local ok, err = compiler()(conf)
    if not ok then return nil, err end
    return true
  end,
}
