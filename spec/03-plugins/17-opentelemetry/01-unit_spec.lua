-- opentelemetry (unit): traceparent parsing and formatting, sampling from the trace id, ids, JSON
-- strings, and the handler in gw.test.context (what goes upstream, which spans are queued), with one
-- export to the mock OTLP receiver.
local helpers = require "spec.helpers"
local cjson = require "cjson"
local otlp = dofile(helpers.repo .. "/spec/03-plugins/17-opentelemetry/otlp.lua")

local handler = dofile(helpers.repo .. "/plugins/opentelemetry/handler.lua")
local parse, format = handler._parse_traceparent, handler._format_traceparent

local T = "4bf92f3577b34da6a3ce929d0e0e4736"
local P = "00f067aa0ba902b7"

local function conf(over)
  local c = { endpoint = "http://127.0.0.1:9/v1/traces" }
  for k, v in pairs(over or {}) do c[k] = v end
  return assert(helpers.validate_plugin_config("opentelemetry", c))
end

-- runs rewrite then log (with `status`) on a new context; returns the context and the spans queued
local function request(c, spec, status)
  local ctx = gw.test.context(spec or {})
  ctx:run(handler, "rewrite", c)
  ctx:set_response(status or 200, {})
  ctx:run(handler, "log", c)
  local st = handler._state(c)
  local spans = {}
  for i = 0, st.n - 1 do spans[#spans + 1] = cjson.decode(st.ring[(st.head + i - 1) % st.size + 1]) end
  return ctx, spans
end

describe("opentelemetry (unit)", function()
  describe("traceparent", function()
    it("parses version 00 and gives the flags as a number", function()
      local tid, pid, flags = parse("00-" .. T .. "-" .. P .. "-01")
      assert.equal(T, tid)
      assert.equal(P, pid)
      assert.equal(1, flags)
      assert.equal(0, select(3, parse("00-" .. T .. "-" .. P .. "-00")))
      assert.equal(3, select(3, parse("00-" .. T .. "-" .. P .. "-03")))
    end)

    it("refuses what the W3C format does not allow", function()
      local bad = {
        "00-" .. T:upper() .. "-" .. P .. "-01",             -- uppercase hex
        "00-" .. T .. "-" .. P:upper() .. "-01",
        "00-" .. T .. "-" .. P .. "-0A",
        "00-" .. ("0"):rep(32) .. "-" .. P .. "-01",         -- zero trace id
        "00-" .. T .. "-" .. ("0"):rep(16) .. "-01",         -- zero parent id
        "ff-" .. T .. "-" .. P .. "-01",                     -- version ff
        "00-" .. T .. "-" .. P .. "-01-x",                   -- version 00 is exactly 55 characters
        "00-" .. T .. "-" .. P .. "-01 ",
        "cc-" .. T .. "-" .. P .. "-01x",                    -- later version: more only after a "-"
        "00-" .. T:sub(2) .. "-" .. P .. "-01",
        "00_" .. T .. "-" .. P .. "-01",
        "0-" .. T .. "-" .. P .. "-01",
        "00-" .. T .. "-" .. P .. "-1",
        "00-" .. T .. "g" .. "-" .. P .. "-01",
        "", "garbage", 42,
      }
      for _, v in ipairs(bad) do assert.is_nil(parse(v), tostring(v)) end
      assert.is_nil(parse(nil))
    end)

    it("accepts a later version with more fields", function()
      assert.equal(T, (parse("cc-" .. T .. "-" .. P .. "-01-future")))
      assert.equal(T, (parse("01-" .. T .. "-" .. P .. "-09")))
    end)

    it("formats version 00 with two hex digits of flags, round trip", function()
      assert.equal("00-" .. T .. "-" .. P .. "-01", format(T, P, 1))
      assert.equal("00-" .. T .. "-" .. P .. "-00", format(T, P, 0))
      assert.equal("00-" .. T .. "-" .. P .. "-ff", format(T, P, 255))
      local tid, pid, flags = parse(format(T, P, 0x41))
      assert.same({ T, P, 0x41 }, { tid, pid, flags })
    end)
  end)

  describe("sampling", function()
    local by_ratio = handler._sampled_by_ratio
    local function threshold(r) return r * 4294967296 end

    it("ratio 0 keeps nothing, ratio 1 everything", function()
      for _, tid in ipairs{ ("0"):rep(31) .. "1", ("f"):rep(32), T } do
        assert.is_false(by_ratio(tid, threshold(0)))
        assert.is_true(by_ratio(tid, threshold(1)))
      end
    end)

    it("decides from the trace id's last 32 bits: the same id always gets the same answer", function()
      assert.is_true(by_ratio(("f"):rep(24) .. "00000000", threshold(0.0001)))
      assert.is_false(by_ratio(("0"):rep(24) .. "ffffffff", threshold(0.9999)))
      assert.is_true(by_ratio(("0"):rep(24) .. "3fffffff", threshold(0.25)))
      assert.is_false(by_ratio(("0"):rep(24) .. "40000000", threshold(0.25)))
      for _ = 1, 100 do
        local tid = handler._new_trace_id()
        assert.equal(by_ratio(tid, threshold(0.5)), by_ratio(tid, threshold(0.5)))
        if by_ratio(tid, threshold(0.1)) then assert.is_true(by_ratio(tid, threshold(0.5))) end
      end
    end)

    it("keeps about the configured share of new traces", function()
      local kept, n = 0, 20000
      for _ = 1, n do
        if by_ratio(handler._new_trace_id(), threshold(0.25)) then kept = kept + 1 end
      end
      assert.truthy(math.abs(kept / n - 0.25) < 0.02, "kept " .. kept / n)
    end)
  end)

  it("ids: lowercase hex of the right length, not zero, not repeated", function()
    local seen = {}
    for _ = 1, 5000 do
      local sid, tid = handler._new_span_id(), handler._new_trace_id()
      assert.matches("^" .. ("[0-9a-f]"):rep(16) .. "$", sid)
      assert.matches("^" .. ("[0-9a-f]"):rep(32) .. "$", tid)
      assert.is_nil(seen[sid])
      assert.is_nil(seen[tid])
      seen[sid], seen[tid] = true, true
    end
  end)

  it("JSON strings: escapes, valid UTF-8 kept, invalid bytes replaced", function()
    local j = handler._json_string
    assert.equal('"plain /path"', j("plain /path"))
    assert.equal([["a\"b\\c\n\u0001"]], j('a"b\\c\n\1'))
    assert.equal('"caf\195\169 \226\130\172 \240\159\152\128"', j("caf\195\169 \226\130\172 \240\159\152\128"))
    assert.equal([["a\ufffdb\ufffd\ufffdc"]], j("a\255b\192\175c"))                 -- overlong "/"
    assert.equal([["\ufffd\ufffd\ufffd"]], j("\237\160\128"))                      -- a surrogate
    assert.equal([["x\ufffd\ufffd"]], j("x\226\130"))                               -- cut short
    for _, s in ipairs{ 'q"\0\31', "\255\254", "ok" } do
      assert.is_string(cjson.decode(j(s)))
    end
  end)

  describe("the handler in gw.test.context", function()
    it("continues an incoming trace: new span id upstream, tracestate kept, the root span's parent", function()
      local c = conf()
      local ctx, spans = request(c, { path = "/orders/7?x=1", headers = {
        traceparent = "00-" .. T .. "-" .. P .. "-01", tracestate = "rojo=00f067aa0ba902b7",
        ["User-Agent"] = "unit/1" } })
      local tid, pid, flags = otlp.traceparent(ctx:upstream_header("traceparent"))
      assert.equal(T, tid)
      assert.not_equal(P, pid)
      assert.equal("01", flags)
      assert.equal("rojo=00f067aa0ba902b7", ctx:upstream_header("tracestate"))
      assert.equal(1, #spans)                      -- no upstream call, no phase timings here
      local root = spans[1]
      assert.equal(T, root.traceId)
      assert.equal(P, root.parentSpanId)
      assert.equal("rojo=00f067aa0ba902b7", root.traceState)
      assert.equal(2, root.kind)
      assert.equal("GET test-route", root.name)
      assert.matches("^%d+$", root.startTimeUnixNano)
      local a = otlp.attrs(root)
      assert.equal("/orders/7", a["url.path"])
      assert.is_nil(a["url.query"])
      assert.equal("unit/1", a["user_agent.original"])
      assert.equal("test-service", a["gw.service"])
      assert.equal("test-route", a["http.route"])
      assert.equal(200, a["http.response.status_code"])
      assert.matches("^test%-", a["gw.request_id"])
      assert.equal(8000, a["server.port"])
      assert.is_nil(root.status)
    end)

    it("starts a new trace without (or with an invalid, or a repeated) traceparent, and drops tracestate", function()
      for _, h in ipairs{ {}, { traceparent = "00-" .. T .. "-" .. P .. "-1" },
                          { traceparent = { "00-" .. T .. "-" .. P .. "-01", "00-" .. T .. "-" .. P .. "-01" } } } do
        h.tracestate = "a=b"
        local ctx, spans = request(conf(), { headers = h })
        local tid, _, flags = otlp.traceparent(ctx:upstream_header("traceparent"))
        assert.not_equal(T, tid)
        assert.equal("01", flags)
        assert.is_nil(ctx:upstream_header("tracestate"))
        assert.equal(tid, spans[1].traceId)
        assert.is_nil(spans[1].parentSpanId)
        assert.is_nil(spans[1].traceState)
      end
    end)

    it("unsampled: propagates flags 00, queues nothing", function()
      local ctx, spans = request(conf{ sampling_ratio = 0 })
      assert.equal("00", select(3, otlp.traceparent(ctx:upstream_header("traceparent"))))
      assert.same({}, spans)
      ctx, spans = request(conf(), { headers = { traceparent = "00-" .. T .. "-" .. P .. "-00" } })
      assert.equal("00", select(3, otlp.traceparent(ctx:upstream_header("traceparent"))))
      assert.same({}, spans)
      -- sampler ratio: the parent's flag does not count, and the other flag bits are kept
      ctx, spans = request(conf{ sampler = "ratio" }, { headers = { traceparent = "00-" .. T .. "-" .. P .. "-02" } })
      assert.equal("03", select(3, otlp.traceparent(ctx:upstream_header("traceparent"))))
      assert.equal(1, #spans)
    end)

    it("5xx: status error; an unknown method: _OTHER; include_query", function()
      local _, spans = request(conf{ include_query = true }, { method = "PURGE", path = "/x?a=1&b=2" }, 502)
      local root = spans[1]
      assert.same({ code = 2 }, root.status)
      assert.equal("HTTP test-route", root.name)
      local a = otlp.attrs(root)
      assert.equal("_OTHER", a["http.request.method"])
      assert.equal("PURGE", a["http.request.method_original"])
      assert.equal("a=1&b=2", a["url.query"])
      assert.equal("502", a["error.type"])
    end)

    it("a log phase without rewrite (an earlier plugin ended the request) still records the request", function()
      local c = conf()
      local ctx = gw.test.context{ headers = { traceparent = "00-" .. T .. "-" .. P .. "-01" } }
      ctx:set_response(401, {})
      ctx:run(handler, "log", c)
      local st = handler._state(c)
      assert.equal(1, st.n)
      local root = cjson.decode(st.ring[st.head])
      assert.equal(T, root.traceId)
      assert.equal(P, root.parentSpanId)
    end)

    it("a full queue keeps what fits", function()
      local c = conf{ queue_size = 2, batch_span_count = 2 }
      request(c)
      request(c)
      local _, spans = request(c)
      assert.equal(2, #spans)
      assert.equal(2, handler._state(c).n)
    end)
  end)

  it("exports the queue as one OTLP/HTTP JSON request", function()
    local port = otlp.start()
    finally(helpers.stop_all)
    local c = conf{ endpoint = "http://127.0.0.1:" .. port .. "/v1/traces", service_name = "unit",
                    resource_attributes = { ["deployment.environment"] = "test", ["host.cpus"] = 2,
                                            ratio = 0.5, canary = true },
                    headers = { ["X-Collector-Token"] = "s3cret" } }
    request(c, { headers = { traceparent = "00-" .. T .. "-" .. P .. "-01" } })
    request(c, { path = "/b" })
    handler._flush(handler._state(c))
    assert.equal(0, handler._state(c).n)
    local r = otlp.received(port)
    assert.equal(1, #r.exports)
    assert.equal("s3cret", r.exports[1].headers["x-collector-token"])
    assert.equal("application/json", r.exports[1].headers["content-type"])
    assert.equal(2, #r.spans)
    assert.equal(T, r.spans[1].traceId)
    assert.same({ ["service.name"] = "unit", ["deployment.environment"] = "test", ["host.cpus"] = 2,
                  ratio = 0.5, canary = true }, r.spans[1].resource)
    assert.equal("gw-opentelemetry", r.spans[1].scope)
  end)
end)
