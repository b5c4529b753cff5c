-- opentelemetry: W3C trace context read from the client and sent upstream with a new span id;
-- spans for the request (SERVER), the upstream call (CLIENT) and each plugin phase (INTERNAL),
-- with the HTTP semantic-convention attributes; exported as OTLP/HTTP JSON in batches from a
-- per-worker timer. The request never waits for the collector: the log phase only appends
-- finished spans to a bounded queue (full: dropped and counted).
local bit = require "bit"

local band, bor, bxor, lshift, rol, tobit, tohex = bit.band, bit.bor, bit.bxor, bit.lshift, bit.rol,
  bit.tobit, bit.tohex
local byte, find, gsub, sub, format, rep = string.byte, string.find, string.gsub, string.sub,
  string.format, string.rep
local concat, sort = table.concat, table.sort
local floor, min, huge = math.floor, math.min, math.huge
local type, tonumber, tostring, pairs, ipairs, pcall = type, tonumber, tostring, pairs, ipairs, pcall

local OpenTelemetry = {
  PRIORITY = 100000,     -- after correlation-id (100001), before every other plugin
  VERSION = "1.0.0",
  TRACE_PHASES = true,   -- gw records the plugin phases of our routes (gw.request.get_phase_timings)
}

---------------------------------------------------------------------------------------------------
-- Ids: xoshiro128** per worker, seeded from /dev/urandom (init_worker, or first use).

local s0, s1, s2, s3 = 0, 0, 0, 0
local seeded = false

local function seed()
  local f = io.open("/dev/urandom", "rb")
  local b = f and f:read(16)
  if f then f:close() end
  local w = {}
  if b and #b == 16 then
    for i = 0, 3 do
      local a, c, d, e = byte(b, i * 4 + 1, i * 4 + 4)
      w[i + 1] = tobit(a * 16777216 + c * 65536 + d * 256 + e)
    end
  else                                             -- no /dev/urandom: the clock and the pid
    local t = gw.now()
    w = { tobit(floor(t)), tobit(floor((t % 1) * 1e6)), tobit(gw.worker().pid), tobit(0x9e3779b9) }
  end
  s0, s1, s2, s3 = w[1], w[2], w[3], w[4]
  if bor(s0, s1, s2, s3) == 0 then s0 = 1 end
  seeded = true
end

local function next32()
  local r = tobit(rol(tobit(s1 * 5), 7) * 9)
  local t = lshift(s1, 9)
  s2 = bxor(s2, s0); s3 = bxor(s3, s1); s1 = bxor(s1, s2); s0 = bxor(s0, s3)
  s2 = bxor(s2, t); s3 = rol(s3, 11)
  return r
end

--- A new span id: 16 lowercase hex digits, never all zero.
local function new_span_id()
  if not seeded then seed() end
  local a, b = next32(), next32()
  if bor(a, b) == 0 then b = 1 end
  return format("%08x%08x", a % 4294967296, b % 4294967296)
end

--- A new trace id: 32 lowercase hex digits, never all zero.
local function new_trace_id()
  if not seeded then seed() end
  local a, b, c, d = next32(), next32(), next32(), next32()
  if bor(a, b, c, d) == 0 then d = 1 end
  return format("%08x%08x%08x%08x", a % 4294967296, b % 4294967296, c % 4294967296, d % 4294967296)
end

function OpenTelemetry:init_worker()
  seed()     -- each worker its own sequence (the master never makes ids)
end

---------------------------------------------------------------------------------------------------
-- W3C traceparent: "VV-TRACEID(32)-PARENTID(16)-FLAGS(2)", lowercase hex.

local H = "[0-9a-f]"
local TRACEPARENT = "^(" .. H .. H .. ")%-(" .. rep(H, 32) .. ")%-(" .. rep(H, 16) .. ")%-(" .. H .. H .. ")"
local ZERO_TRACE, ZERO_SPAN = rep("0", 32), rep("0", 16)

--- trace_id, parent_id, flags (a number) of a valid traceparent value; nil otherwise. Version 00
-- is exactly 55 characters; a later version may carry more fields after a "-"; ff is invalid.
local function parse_traceparent(v)
  if type(v) ~= "string" or #v < 55 then return nil end
  local version, tid, pid, flags = v:match(TRACEPARENT)
  if not version or version == "ff" then return nil end
  if #v > 55 and (version == "00" or sub(v, 56, 56) ~= "-") then return nil end
  if tid == ZERO_TRACE or pid == ZERO_SPAN then return nil end
  return tid, pid, tonumber(flags, 16)
end

local function format_traceparent(tid, sid, flags)
  return "00-" .. tid .. "-" .. sid .. "-" .. tohex(flags, 2)
end

--- Whether a trace id falls in the sampled share: its last 32 bits below ratio * 2^32, so every
-- gateway with the same ratio decides the same for one trace.
local function sampled_by_ratio(tid, threshold)
  if threshold >= 4294967296 then return true end
  if threshold <= 0 then return false end
  return tonumber(sub(tid, 25, 32), 16) < threshold
end

---------------------------------------------------------------------------------------------------
-- JSON pieces (OTLP/HTTP JSON: ids as hex strings, times as unixNano strings, enums as numbers).

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
              ["\r"] = "\\r", ["\t"] = "\\t" }
local function esc_char(c) return ESC[c] or format("\\u%04x", byte(c)) end

-- length of the valid UTF-8 sequence at s[i] (lead byte c >= 0x80), 0 when invalid
local function cont(b) return b and b >= 0x80 and b <= 0xBF end
local function utf8_len(s, i, c)
  local c2, c3, c4 = byte(s, i + 1, i + 3)
  if c >= 0xC2 and c <= 0xDF then return cont(c2) and 2 or 0 end
  if c >= 0xE0 and c <= 0xEF then           -- no overlong forms, no surrogates
    local lo, hi = c == 0xE0 and 0xA0 or 0x80, c == 0xED and 0x9F or 0xBF
    return (c2 and c2 >= lo and c2 <= hi and cont(c3)) and 3 or 0
  end
  if c >= 0xF0 and c <= 0xF4 then           -- up to U+10FFFF
    local lo, hi = c == 0xF0 and 0x90 or 0x80, c == 0xF4 and 0x8F or 0xBF
    return (c2 and c2 >= lo and c2 <= hi and cont(c3) and cont(c4)) and 4 or 0
  end
  return 0
end

-- invalid UTF-8 bytes become U+FFFD (a collector refuses the whole export otherwise)
local function utf8_clean(s)
  local out, n, i, from, len = nil, 0, 1, 1, #s
  while i <= len do
    local c = byte(s, i)
    if c < 0x80 then
      i = i + 1
    else
      local l = utf8_len(s, i, c)
      if l > 0 then
        i = i + l
      else
        out = out or {}
        out[n + 1], out[n + 2], n = sub(s, from, i - 1), "\\ufffd", n + 2
        i = i + 1
        from = i
      end
    end
  end
  if not out then return s end
  out[n + 1] = sub(s, from)
  return concat(out)
end

--- s escaped for the inside of a JSON string literal (s itself when nothing needs escaping).
local function esc(s)
  if not find(s, '[%z\1-\31"\\\128-\255]') then return s end
  s = gsub(s, '[%z\1-\31"\\]', esc_char)
  if find(s, "[\128-\255]") then s = utf8_clean(s) end
  return s
end

--- A JSON string literal of s.
local function jstr(s) return '"' .. esc(s) .. '"' end

local function any_value(v)
  local t = type(v)
  if t == "boolean" then return '{"boolValue":' .. tostring(v) .. "}" end
  if t == "number" then
    if v == floor(v) and v > -2^53 and v < 2^53 then return '{"intValue":"' .. format("%d", v) .. '"}' end
    return '{"doubleValue":' .. format("%.17g", v) .. "}"
  end
  return '{"stringValue":' .. jstr(tostring(v)) .. "}"
end

-- unix seconds (µs precision) -> "unixNano" string
local function nanos(t) return format("%.0f000", floor(t * 1e6 + 0.5)) end

-- A span is written as pieces into B, then concatenated once: no intermediate strings. B is
-- filled and read without yielding in between, so one buffer serves every request.
local B, nb = {}, 0

-- attribute prefixes per key, made once: '{"key":"K","value":{"stringValue":"' (and with a comma)
local function prefixes(kind)
  return setmetatable({}, { __index = function(t, key)
    local v = '{"key":"' .. key .. '","value":{"' .. kind .. '":"'
    t[key] = v
    return v
  end })
end
local STR, STR_SEP, INT, INT_SEP = prefixes("stringValue"), {}, prefixes("intValue"), {}
setmetatable(STR_SEP, { __index = function(t, key) local v = "," .. STR[key]; t[key] = v; return v end })
setmetatable(INT_SEP, { __index = function(t, key) local v = "," .. INT[key]; t[key] = v; return v end })

-- the first attribute of a span opens the list; the others follow with a comma
local function a_first(key, v) B[nb + 1], B[nb + 2], B[nb + 3] = STR[key], esc(v), '"}}'; nb = nb + 3 end
local function a_str(key, v) B[nb + 1], B[nb + 2], B[nb + 3] = STR_SEP[key], esc(v), '"}}'; nb = nb + 3 end
local function a_int(key, v) B[nb + 1], B[nb + 2], B[nb + 3] = INT_SEP[key], format("%d", v), '"}}'; nb = nb + 3 end

local KIND_INTERNAL, KIND_SERVER, KIND_CLIENT = "1", "2", "3"

--- Starts a span in B, up to the opening of its attribute list.
local function span_begin(tid, sid, parent, tracestate, name, kind, t0, t1)
  B[nb + 1], B[nb + 2], B[nb + 3], B[nb + 4] = '{"traceId":"', tid, '","spanId":"', sid
  nb = nb + 4
  if parent then B[nb + 1], B[nb + 2] = '","parentSpanId":"', parent; nb = nb + 2 end
  if tracestate then B[nb + 1], B[nb + 2] = '","traceState":"', esc(tracestate); nb = nb + 2 end
  B[nb + 1], B[nb + 2], B[nb + 3], B[nb + 4] = '","name":"', esc(name), '","kind":', kind
  B[nb + 5], B[nb + 6] = ',"startTimeUnixNano":"', nanos(t0)
  B[nb + 7], B[nb + 8] = '","endTimeUnixNano":"', nanos(t1 < t0 and t0 or t1)
  B[nb + 9] = '","attributes":['
  nb = nb + 9
end

--- Ends the span in B and returns its JSON.
local function span_end(is_error)
  nb = nb + 1
  B[nb] = is_error and '],"status":{"code":2}}' or "]}"
  local json = concat(B, "", 1, nb)
  nb = 0
  return json
end

---------------------------------------------------------------------------------------------------
-- Metrics (the admin API's GET /metrics); no-ops where the metrics table is missing.

local NOOP = { inc = function() end }
local m_dropped, m_exported, m_failures
local QUEUE_FULL, EXPORT_FAILED = { "queue_full" }, { "export_failed" }
local function metrics()
  if m_dropped then return end
  local ok = pcall(function()
    m_dropped = gw.metrics.counter("gateway_otel_spans_dropped_total",
      "Spans the opentelemetry plugin dropped: export queue full, or the export failed after its retries",
      { "reason" })
    m_exported = gw.metrics.counter("gateway_otel_spans_exported_total",
      "Spans the opentelemetry plugin exported (the collector answered 2xx)")
    m_failures = gw.metrics.counter("gateway_otel_export_failures_total",
      "Export requests of the opentelemetry plugin that failed (each attempt counts)")
  end)
  if not ok then m_dropped, m_exported, m_failures = NOOP, NOOP, NOOP end
end

---------------------------------------------------------------------------------------------------
-- Per config (weak-keyed by the conf table): the exporter and what the hot path needs.

local SCOPE = '{"name":"gw-opentelemetry","version":"' .. OpenTelemetry.VERSION .. '"}'

local function resource_json(conf)
  local attrs = { '{"key":"service.name","value":{"stringValue":' .. jstr(conf.service_name) .. "}}" }
  local keys = {}
  for k in pairs(conf.resource_attributes or {}) do keys[#keys + 1] = k end
  sort(keys)
  for _, k in ipairs(keys) do
    attrs[#attrs + 1] = '{"key":' .. jstr(k) .. ',"value":' .. any_value(conf.resource_attributes[k]) .. "}"
  end
  return '{"attributes":[' .. concat(attrs, ",") .. "]}"
end

local states = setmetatable({}, { __mode = "k" })

local function state_of(conf)
  local st = states[conf]
  if st then return st end
  local headers = { ["Content-Type"] = "application/json" }
  for k, v in pairs(conf.headers or {}) do headers[k] = v end
  st = {
    threshold = conf.sampling_ratio * 4294967296,
    parent_based = conf.sampler ~= "ratio",
    plugin_spans = conf.plugin_spans,
    include_query = conf.include_query,
    prefix = '{"resourceSpans":[{"resource":' .. resource_json(conf) .. ',"scopeSpans":[{"scope":' ..
      SCOPE .. ',"spans":[',
    req = { method = "POST", url = conf.endpoint, headers = headers,
            timeout = { connect = conf.connect_timeout, send = conf.send_timeout, read = conf.read_timeout } },
    retries = conf.retry_count,
    delay = conf.batch_flush_delay,
    batch = conf.batch_span_count,
    size = conf.queue_size,
    ring = {}, head = 1, n = 0,      -- the queue: n spans from ring[head], wrapping at size
    timer = false, kicked = false, flushing = false, draining = false, logged_at = -huge,
  }
  states[conf] = st
  return st
end

local SUFFIX = "]}]}]}"

--- Sends one batch, retrying what may succeed later; counts the outcome.
local function send(st, body, k, premature)
  local req = st.req
  req.body = body
  local attempts, err = premature and 1 or st.retries + 1, nil
  for i = 1, attempts do
    local res, e = gw.http.request(req)
    if res and res.status >= 200 and res.status < 300 then
      req.body = nil
      m_exported:inc(k)
      return true
    end
    m_failures:inc(1)
    err = res and ("HTTP " .. res.status) or e
    if res and res.status ~= 408 and res.status ~= 429 and res.status < 500 then break end  -- refused for good
    if i < attempts then gw.sleep(min(0.1 * 2 ^ (i - 1), 2)) end
  end
  req.body = nil
  m_dropped:inc(k, EXPORT_FAILED)
  local now = gw.now()
  if now - st.logged_at >= 10 then     -- at most one line per 10 s per exporter
    st.logged_at = now
    gw.log.warn("export to ", req.url, " failed: ", tostring(err), " (", k, " spans dropped)")
  end
  return false
end

--- Exports everything queued, batch_span_count spans per request, one request at a time.
local function drain(st, premature)
  while st.n > 0 do
    local k, ring, head, size = min(st.n, st.batch), st.ring, st.head, st.size
    local parts = {}
    for i = 1, k do
      parts[i] = ring[head]
      ring[head] = nil
      head = head % size + 1
    end
    st.head, st.n = head, st.n - k
    send(st, st.prefix .. concat(parts, ",") .. SUFFIX, k, premature)
  end
end

local function flush(st, premature)
  if st.flushing or st.n == 0 then return end
  st.flushing = true
  metrics()
  local ok, err = pcall(drain, st, premature)
  st.flushing = false
  if not ok then gw.log.err("export failed: ", err) end
end

-- premature: the worker drains (reload, SIGQUIT); from then on the log phase exports itself
local function on_tick(premature, st)
  if premature then st.draining = true end
  flush(st, premature)
end
local function on_kick(premature, st)
  st.kicked = false
  on_tick(premature, st)
end

local function push(st, span)
  local n = st.n
  st.ring[(st.head + n - 1) % st.size + 1] = span
  st.n = n + 1
end

-- after the log phase queued spans: the periodic timer, or an export now for a full batch. A
-- draining worker starts no timer: the log phase exports (the response is gone; the open
-- connection keeps the worker alive until the export is done).
local function schedule(st)
  if st.draining then return flush(st, true) end
  if not st.timer then
    st.timer = gw.timer.every(st.delay, on_tick, st) and true or false   -- false: no event loop
  end
  if st.n >= st.batch and not st.flushing and not st.kicked then
    st.kicked = gw.timer.at(0, on_kick, st) and true or false
  end
end

---------------------------------------------------------------------------------------------------
-- The request's trace context, kept in gw.ctx.plugin: trace_id, parent (incoming parent id),
-- flags, sampled, span_id (the root's), up_span_id (the upstream span's), tracestate.

local function new_context(st, t)
  local tid, parent, flags
  local tp = gw.request.get_header("traceparent")
  if tp then
    tid, parent, flags = parse_traceparent(tp)
    if tid and gw.request.get_header_count("traceparent") > 1 then tid = nil end   -- ambiguous
  end
  local sampled
  if tid then
    if st.parent_based then sampled = band(flags, 1) == 1 else sampled = sampled_by_ratio(tid, st.threshold) end
    t.parent = parent
    t.flags = bor(band(flags, 0xfe), sampled and 1 or 0)
    if sampled then t.tracestate = gw.request.get_header("tracestate") end
  else
    tid = new_trace_id()
    sampled = sampled_by_ratio(tid, st.threshold)
    t.flags = sampled and 1 or 0
  end
  t.trace_id, t.sampled = tid, sampled
  if sampled then t.span_id = new_span_id() end
  return t
end

function OpenTelemetry:rewrite(conf)
  local t = new_context(state_of(conf), gw.ctx.plugin)
  t.up_span_id = new_span_id()
  gw.service.request.set_header("traceparent", format_traceparent(t.trace_id, t.up_span_id, t.flags))
  -- a new trace: the client's tracestate belonged to another one
  if not t.parent then gw.service.request.clear_header("tracestate") end
end

local KNOWN_METHODS = { GET = true, HEAD = true, POST = true, PUT = true, DELETE = true, CONNECT = true,
                        OPTIONS = true, TRACE = true, PATCH = true }

function OpenTelemetry:log(conf)
  local st = state_of(conf)
  local t = gw.ctx.plugin
  if not t.trace_id then new_context(st, t) end      -- an earlier plugin ended the request in rewrite
  if not t.sampled then return end
  metrics()

  local timings = gw.request.get_timings()
  local up_start = t.up_span_id and timings.upstream_start
  local phases = st.plugin_spans and gw.request.get_phase_timings()
  local count = 1 + (up_start and 1 or 0) + (phases and #phases or 0)
  local room = st.size - st.n
  if room < count then m_dropped:inc(count - (room > 0 and room or 0), QUEUE_FULL) end
  if room <= 0 then return end

  local now = gw.now()
  local start = timings.start
  if not start or start == 0 then start = now end     -- (gw.test.context has no start time)
  local tid, root = t.trace_id, t.span_id
  local method = gw.request.get_method()
  local known = KNOWN_METHODS[method]
  local route, svc = gw.router.get_route(), gw.router.get_service()
  local route_name, svc_name = route and route.name, svc and svc.name
  local status = gw.response.get_status()
  local is_error = status >= 500

  span_begin(tid, root, t.parent, t.tracestate,
             (known and method or "HTTP") .. (route_name and (" " .. route_name) or ""), KIND_SERVER, start, now)
  a_first("http.request.method", known and method or "_OTHER")
  if not known then a_str("http.request.method_original", method) end
  a_str("url.path", gw.request.get_path())
  a_str("url.scheme", gw.request.get_scheme())
  if st.include_query then
    local q = gw.request.get_raw_query()
    if q ~= "" then a_str("url.query", q) end
  end
  local host = gw.request.get_host()
  if host ~= "" then a_str("server.address", host) end
  a_int("server.port", gw.request.get_port())
  a_str("client.address", gw.client.get_forwarded_ip())
  a_str("network.peer.address", gw.client.get_ip())
  a_int("network.peer.port", gw.client.get_port())
  a_str("network.protocol.version", gw.request.get_http_version() == 1 and "1.0" or "1.1")
  local ua = gw.request.get_header("User-Agent")
  if ua then a_str("user_agent.original", ua) end
  if route_name then
    a_str("http.route", route_name)
    a_str("gw.route", route_name)
  end
  if svc_name then a_str("gw.service", svc_name) end
  a_int("http.response.status_code", status)
  if is_error then a_str("error.type", tostring(status)) end
  a_str("gw.request_id", gw.request.get_id())
  local consumer = gw.client.get_consumer()
  local cname = type(consumer) == "table" and (consumer.username or consumer.custom_id or consumer.id)
  if type(cname) == "string" then a_str("gw.consumer", cname) end
  push(st, span_end(is_error))
  room = room - 1

  if room > 0 and up_start then
    local up_error = status >= 400
    span_begin(tid, t.up_span_id, root, nil, (known and method or "HTTP") .. (svc_name and (" " .. svc_name) or ""),
               KIND_CLIENT, up_start, timings.upstream_end or now)
    a_first("http.request.method", known and method or "_OTHER")
    if svc then
      if svc.host then a_str("server.address", svc.host) end
      if svc.port then a_int("server.port", svc.port) end
      if svc.upstream then a_str("gw.upstream", svc.upstream) end
      a_str("gw.service", svc_name)
    end
    a_int("http.response.status_code", status)
    if up_error then a_str("error.type", tostring(status)) end
    push(st, span_end(up_error))
    room = room - 1
  end

  if phases then
    for i = 1, #phases do
      if room <= 0 then break end
      local p = phases[i]
      local plugin, phase = p.plugin, p.phase
      span_begin(tid, new_span_id(), root, nil, plugin .. " " .. phase, KIND_INTERNAL, p.start, p.finish)
      a_first("gw.plugin", plugin)
      a_str("gw.phase", phase)
      push(st, span_end(false))
      room = room - 1
    end
  end
  schedule(st)
end

---------------------------------------------------------------------------------------------------
-- For the specs (not part of the plugin's interface).
OpenTelemetry._parse_traceparent = parse_traceparent
OpenTelemetry._format_traceparent = format_traceparent
OpenTelemetry._sampled_by_ratio = sampled_by_ratio
OpenTelemetry._new_trace_id = new_trace_id
OpenTelemetry._new_span_id = new_span_id
OpenTelemetry._json_string = jstr
OpenTelemetry._state = state_of
OpenTelemetry._flush = flush

return OpenTelemetry
