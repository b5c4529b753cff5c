-- opentelemetry (export): the batch exporter against a collector that is down, failing, refusing or
-- slow, and a queue that overflows. Requests never wait for it; what is lost is counted at the admin
-- API's GET /metrics. A reload flushes what the old worker still held.
local helpers = require "spec.helpers"
local otlp = dofile(helpers.repo .. "/spec/03-plugins/17-opentelemetry/otlp.lua")
local cjson = require "cjson"
local socket = require "socket"

local DROPPED_FAILED = 'gateway_otel_spans_dropped_total{reason="export_failed"}'
local DROPPED_FULL = 'gateway_otel_spans_dropped_total{reason="queue_full"}'
local EXPORTED = "gateway_otel_spans_exported_total"
local FAILURES = "gateway_otel_export_failures_total"

-- a gw with one route /t (opentelemetry with `conf`, plus `more` plugins) on the mock upstream
local function start(upport, conf, more)
  local plugins = { { name = "opentelemetry", config = conf } }
  for _, p in ipairs(more or {}) do plugins[#plugins + 1] = p end
  return helpers.start_gw{ config = { services = { {
    name = "s", url = "http://127.0.0.1:" .. upport,
    routes = { { name = "t", paths = { "/t" }, plugins = plugins } } } } } }
end

-- n requests, each on its own connection; the longest one's duration and the trace ids
local function requests(n, path)
  local longest, tids = 0, {}
  for i = 1, n do
    local c = helpers.proxy_client()
    local t0 = socket.gettime()
    local res = assert(c:get(path or "/t"))
    longest = math.max(longest, socket.gettime() - t0)
    c:close()
    assert.equal(200, res.status)
    tids[i] = otlp.traceparent(cjson.decode(res.body).headers.traceparent)
  end
  return longest, tids
end

describe("opentelemetry (export)", function()
  local upport, rport
  local function endpoint(q) return "http://127.0.0.1:" .. rport .. "/v1/traces" .. (q or "") end

  lazy_setup(function()
    upport = helpers.start_mock_upstream{ name = "otel-export" }[1]
    rport = otlp.start()
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() otlp.reset(rport) end)

  it("a collector that is down: requests are served at once, every span is dropped and counted", function()
    local closed = helpers.get_free_port()
    start(upport, { endpoint = "http://127.0.0.1:" .. closed .. "/v1/traces", batch_flush_delay = 0.05,
                    retry_count = 1 })
    local longest = requests(5)
    assert.truthy(longest < 1, "a request took " .. longest .. " s")
    -- each request: root, upstream and the plugin's rewrite span
    helpers.wait_until(function() return otlp.metric(DROPPED_FAILED) == 15 end, 5)
    local m = otlp.metrics()
    assert.equal(0, m[EXPORTED] or 0)
    assert.equal(0, m[DROPPED_FULL] or 0)
    assert.truthy(m[FAILURES] >= 2 and m[FAILURES] % 2 == 0, "two attempts per batch: " .. tostring(m[FAILURES]))
    assert.matches("export to http://127.0.0.1:" .. closed .. "/v1/traces failed", helpers.read_file(helpers.gw_info().log_file))
  end)

  it("a collector that fails once: the batch is retried and arrives once", function()
    start(upport, { endpoint = endpoint(), batch_flush_delay = 0.05, retry_count = 2 })
    otlp.mode(rport, "fail=1")
    local _, tids = requests(1)
    otlp.wait_spans(rport, tids[1], 3)
    helpers.wait_until(function() return otlp.metric(EXPORTED) == 3 end, 5)
    local m = otlp.metrics()
    assert.equal(1, m[FAILURES])
    assert.equal(0, m[DROPPED_FAILED] or 0)
    assert.equal(2, otlp.received(rport).attempts)
    assert.equal(3, #otlp.spans_of(rport, tids[1]))
  end)

  it("a collector that refuses the export (400): no retry, the batch is dropped", function()
    start(upport, { endpoint = endpoint("?status=400"), batch_flush_delay = 0.05, retry_count = 3 })
    requests(1)
    helpers.wait_until(function() return otlp.metric(DROPPED_FAILED) == 3 end, 5)
    helpers.sleep(0.2)
    assert.equal(1, otlp.received(rport).attempts)
    assert.equal(1, otlp.metric(FAILURES))
  end)

  it("a slow collector: requests do not wait for the export", function()
    start(upport, { endpoint = endpoint(), batch_flush_delay = 0.05 })
    otlp.mode(rport, "delay_ms=2000")
    local _, first = requests(1)
    helpers.sleep(0.2)                                       -- the export is in flight now
    local longest, tids = requests(3)
    assert.truthy(longest < 1, "a request took " .. longest .. " s")
    assert.same({}, otlp.spans_of(rport, first[1]))
    for _, tid in ipairs{ first[1], tids[1], tids[2], tids[3] } do otlp.wait_spans(rport, tid, 3, 10) end
    helpers.wait_until(function() return otlp.metric(EXPORTED) == 12 end, 5)
  end)

  it("a full queue drops the spans that do not fit and counts them", function()
    -- five spans a request (root, upstream, rewrite, response-header's access and header_filter)
    start(upport, { endpoint = endpoint(), queue_size = 2, batch_span_count = 2, batch_flush_delay = 0.05 },
          { { name = "response-header", config = { headers = { ["X-Gw"] = "1" } } } })
    local _, tids = requests(1)
    local spans = otlp.wait_spans(rport, tids[1], 2)
    helpers.wait_until(function() return otlp.metric(EXPORTED) == 2 end, 5)
    assert.equal(3, otlp.metric(DROPPED_FULL))
    helpers.sleep(0.2)
    spans = otlp.spans_of(rport, tids[1])
    assert.equal(2, #spans)
    assert.equal(1, #otlp.of_kind(spans, 2))                 -- the root and the upstream span came first
    assert.equal(1, #otlp.of_kind(spans, 3))
    -- a burst: whatever is not exported was counted as dropped
    requests(10)
    helpers.wait_until(function()
      local m = otlp.metrics()
      return (m[EXPORTED] or 0) + (m[DROPPED_FULL] or 0) == 55
    end, 5)
    assert.equal(otlp.metric(EXPORTED), #otlp.received(rport).spans)
  end)

  it("batches: batch_span_count spans are exported at once, without waiting for the timer", function()
    start(upport, { endpoint = endpoint(), batch_span_count = 6, batch_flush_delay = 30 })
    local _, tids = requests(1)
    helpers.sleep(0.3)
    assert.equal(0, otlp.received(rport).attempts)           -- 3 spans wait for the timer
    local _, more = requests(1)
    otlp.wait_spans(rport, more[1], 3)
    local r = otlp.received(rport)
    assert.equal(1, r.attempts)
    assert.equal(6, #r.spans)                                -- both requests in one export
    assert.equal(3, #otlp.spans_of(rport, tids[1]))
  end)

  it("a reload: the old worker exports what it still held, and the spans of a request it finishes", function()
    start(upport, { endpoint = endpoint(), batch_span_count = 100, batch_flush_delay = 60 })
    local _, tids = requests(2)
    helpers.sleep(0.3)
    assert.equal(0, otlp.received(rport).attempts)
    -- a request in flight keeps the old worker draining for a while
    local c = helpers.proxy_client()
    assert(c:raw("GET /t/delay/600 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    helpers.sleep(0.1)
    helpers.reload_gw()
    local res = assert(c:read_response())
    c:close()
    assert.equal(200, res.status)
    local last = otlp.traceparent(cjson.decode(res.body).headers.traceparent)
    for _, tid in ipairs{ tids[1], tids[2], last } do otlp.wait_spans(rport, tid, 3, 10) end
  end)
end)
