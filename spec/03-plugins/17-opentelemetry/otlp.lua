-- Spec helpers for the opentelemetry plugin: starts spec/fixtures/otlp_receiver.py (a mock OTLP/HTTP
-- collector) with helpers.start_fixture (helpers.stop_all stops it), reads what it received, and
-- reads gw's GET /metrics.
local helpers = require "spec.helpers"
local cjson = require "cjson"

local M = {}

--- Starts a receiver on a free port. Returns the port and the process.
function M.start()
  local ports, proc = helpers.start_fixture{ script = "spec/fixtures/otlp_receiver.py", kind = "otlp" }
  return ports[1], proc
end

local function call(port, method, path)
  local c = helpers.http_client("127.0.0.1", port, 5000)
  local res = assert(c:send{ method = method, path = path })
  c:close()
  assert(res.status == 200, path .. ": " .. res.status)
  return cjson.decode(res.body)
end

--- { exports = {{headers=, body=}...}, spans = {...each with resource= and scope=}, attempts = n }
function M.received(port) return call(port, "GET", "/received") end
function M.reset(port) return call(port, "POST", "/reset") end
--- Failure switches for the next exports: "status=500", "fail=2", "delay_ms=300", "" (normal).
function M.mode(port, query) return call(port, "POST", "/mode?" .. (query or "")) end

--- The received spans of one trace.
function M.spans_of(port, trace_id)
  local out = {}
  for _, s in ipairs(M.received(port).spans) do
    if s.traceId == trace_id then out[#out + 1] = s end
  end
  return out
end

--- Waits until the receiver holds at least `n` spans of the trace; returns them.
function M.wait_spans(port, trace_id, n, timeout)
  return helpers.wait_until(function()
    local spans = M.spans_of(port, trace_id)
    if #spans >= n then return spans end
  end, timeout or 5, 0.05)
end

--- Spans by name, and by kind (1 internal, 2 server, 3 client).
function M.by_name(spans)
  local t = {}
  for _, s in ipairs(spans) do t[s.name] = s end
  return t
end
function M.of_kind(spans, kind)
  local out = {}
  for _, s in ipairs(spans) do if s.kind == kind then out[#out + 1] = s end end
  return out
end

--- A span's attributes as a flat { key = value } table (intValue as a number).
function M.attrs(span)
  local t = {}
  for _, a in ipairs(span.attributes or {}) do
    local v = a.value
    t[a.key] = v.stringValue or (v.intValue and tonumber(v.intValue)) or v.boolValue or v.doubleValue
  end
  return t
end

--- The trace id and parent id of a traceparent value ("00-T-P-FF"), and the flags.
function M.traceparent(v)
  return v:match("^00%-(%x+)%-(%x+)%-(%x%x)$")
end

--- gw's GET /metrics as { ["name{labels}"] = value }; a missing series reads as 0 with M.metric.
function M.metrics()
  local c = helpers.admin_client()
  local res = assert(c:get("/metrics"))
  c:close()
  assert(res.status == 200, "GET /metrics: " .. res.status)
  local t = {}
  for line in res.body:gmatch("[^\n]+") do
    local key, value = line:match("^([%w_]+%b{}) (%S+)$")
    if not key then key, value = line:match("^([%w_]+) (%S+)$") end
    if key then t[key] = tonumber(value) end
  end
  return t
end
function M.metric(name) return M.metrics()[name] or 0 end

return M
