-- opentelemetry (integration): a real gw in front of the mock upstream, exporting to the mock OTLP
-- receiver (spec/fixtures/otlp_receiver.py): ids across the root, upstream and plugin spans, the
-- traceparent the upstream received, continued and new traces, sampling, attributes, the request
-- id shared with the access log.
local helpers = require "spec.helpers"
local otlp = dofile(helpers.repo .. "/spec/03-plugins/17-opentelemetry/otlp.lua")
local cjson = require "cjson"

local SERVER, CLIENT, INTERNAL = 2, 3, 1
local T = "4bf92f3577b34da6a3ce929d0e0e4736"
local P = "00f067aa0ba902b7"

describe("opentelemetry (integration)", function()
  local rport, upport, gwinfo, client

  lazy_setup(function()
    rport = otlp.start()
    local up = helpers.start_mock_upstream{ name = "otel-up" }
    upport = up[1]
    local endpoint = "http://127.0.0.1:" .. rport .. "/v1/traces"
    local function otel(over)
      local c = { endpoint = endpoint, batch_flush_delay = 0.05, service_name = "edge",
                  headers = { Authorization = "Bearer otel-token" },
                  resource_attributes = { ["deployment.environment"] = "spec", ["service.version"] = 3 } }
      for k, v in pairs(over or {}) do c[k] = v end
      return { name = "opentelemetry", config = c }
    end
    gwinfo = helpers.start_gw{ config = {
      gw = { access_log = "access.log", plugins_path = { helpers.repo .. "/spec/fixtures/plugins" } },
      consumers = { { username = "alice", keyauth_credentials = { { key = "alice-key" } } } },
      services = {
        { name = "backend", url = "http://127.0.0.1:" .. up[1],
          plugins = { otel() },
          routes = {
            { name = "traced", paths = { "/traced" },
              plugins = { { name = "response-header", config = { headers = { ["X-Gw"] = "1" } } } } },
            { name = "ratio0", paths = { "/ratio0" }, plugins = { otel{ sampling_ratio = 0 } } },
            { name = "forced", paths = { "/forced" },
              plugins = { otel{ sampler = "ratio", sampling_ratio = 1, include_query = true, plugin_spans = false } } },
            { name = "auth", paths = { "/auth" }, plugins = { { name = "key-auth" } } },
            { name = "crash", paths = { "/crash" }, plugins = { { name = "crash" } } },
          } },
        { name = "echo", url = "echo://", plugins = { otel() },
          routes = { { name = "echo", paths = { "/echo" } } } },
      },
      plugins = { otel{ service_name = "edge-global" } },   -- requests that match no route
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  -- GET through gw; the traceparent the mock upstream received, split
  local function get(path, headers)
    local res = assert(client:get(path, { headers = headers }))
    local body = res.status == 200 and cjson.decode(res.body) or {}
    local tp = body.headers and body.headers.traceparent
    local tid, pid, flags
    if tp then tid, pid, flags = otlp.traceparent(tp) end
    return res, tid, pid, flags, body
  end

  it("a new trace: root, upstream and plugin spans with their parents; the upstream got the upstream span's id", function()
    local res, tid, pid, flags = get("/traced/items?x=1", { ["User-Agent"] = "spec-agent/1.0" })
    assert.equal(200, res.status)
    assert.matches("^%x+$", tid)
    assert.equal(32, #tid)
    assert.equal(16, #pid)
    assert.equal("01", flags)
    local spans = otlp.wait_spans(rport, tid, 5)
    local roots = otlp.of_kind(spans, SERVER)
    assert.equal(1, #roots)
    local root = roots[1]
    assert.is_nil(root.parentSpanId)
    assert.equal("GET traced", root.name)
    local ups = otlp.of_kind(spans, CLIENT)
    assert.equal(1, #ups)
    assert.equal(pid, ups[1].spanId)                  -- the upstream's parent is the CLIENT span
    assert.equal(root.spanId, ups[1].parentSpanId)
    local byname = otlp.by_name(spans)
    for _, n in ipairs{ "opentelemetry rewrite", "response-header access", "response-header header_filter" } do
      assert.is_table(byname[n], n)
      assert.equal(INTERNAL, byname[n].kind)
      assert.equal(root.spanId, byname[n].parentSpanId)
      assert.same({ ["gw.plugin"] = n:match("^(%S+)"), ["gw.phase"] = n:match("(%S+)$") }, otlp.attrs(byname[n]))
    end
    -- span ids are distinct, 16 hex digits
    local seen = {}
    for _, s in ipairs(spans) do
      assert.matches("^" .. ("%x"):rep(16) .. "$", s.spanId)
      assert.is_nil(seen[s.spanId])
      seen[s.spanId] = true
    end
    -- times: unixNano strings, the upstream call inside the request
    local function ns(s) return tonumber(s) end
    for _, s in ipairs(spans) do
      assert.matches("^%d+$", s.startTimeUnixNano)
      assert.truthy(ns(s.endTimeUnixNano) >= ns(s.startTimeUnixNano))
    end
    assert.truthy(math.abs(ns(root.startTimeUnixNano) / 1e9 - os.time()) < 60)
    assert.truthy(ns(ups[1].startTimeUnixNano) >= ns(root.startTimeUnixNano))
    assert.truthy(ns(ups[1].endTimeUnixNano) <= ns(root.endTimeUnixNano))
    assert.truthy(ns(byname["response-header header_filter"].startTimeUnixNano) >= ns(ups[1].startTimeUnixNano))
  end)

  -- handlers run without a pcall frame of their own: the failing one's timing is ended by C
  it("a plugin that raises still gets its span, ended where it failed; the request is a 500", function()
    local tid = "5bf92f3577b34da6a3ce929d0e0e4737"
    local res = assert(client:get("/crash", { headers = { ["X-Crash"] = "boom",
                                                          traceparent = "00-" .. tid .. "-" .. P .. "-01" } }))
    assert.equal(500, res.status)
    local spans = otlp.wait_spans(rport, tid, 3)
    local byname = otlp.by_name(spans)
    local crash = assert.is_table(byname["crash access"])
    assert.same({ ["gw.plugin"] = "crash", ["gw.phase"] = "access" }, otlp.attrs(crash))
    assert.truthy(tonumber(crash.endTimeUnixNano) >= tonumber(crash.startTimeUnixNano))
    local root = otlp.of_kind(spans, SERVER)[1]
    assert.truthy(tonumber(crash.endTimeUnixNano) <= tonumber(root.endTimeUnixNano))
    assert.equal(500, otlp.attrs(root)["http.response.status_code"])
    assert.equal(0, #otlp.of_kind(spans, CLIENT))                -- the upstream was never called
  end)

  it("the root and upstream spans carry the HTTP semantic-convention attributes", function()
    local res, tid = get("/traced/items?secret=1", { ["User-Agent"] = "spec-agent/1.0", Host = "api.example.test" })
    assert.equal(200, res.status)
    local spans = otlp.wait_spans(rport, tid, 2)
    local root = otlp.of_kind(spans, SERVER)[1]
    local a = otlp.attrs(root)
    assert.equal("GET", a["http.request.method"])
    assert.equal("/traced/items", a["url.path"])
    assert.equal("http", a["url.scheme"])
    assert.is_nil(a["url.query"])                     -- include_query is off
    assert.equal("api.example.test", a["server.address"])
    assert.equal(gwinfo.proxy_port, a["server.port"])
    assert.equal("127.0.0.1", a["client.address"])
    assert.equal("spec-agent/1.0", a["user_agent.original"])
    assert.equal("traced", a["http.route"])
    assert.equal("traced", a["gw.route"])
    assert.equal("backend", a["gw.service"])
    assert.equal(200, a["http.response.status_code"])
    assert.matches("^%S+$", a["gw.request_id"])
    assert.is_nil(root.status)
    local u = otlp.attrs(otlp.of_kind(spans, CLIENT)[1])
    assert.equal("127.0.0.1", u["server.address"])
    assert.equal(upport, u["server.port"])
    assert.equal(200, u["http.response.status_code"])
    -- the resource and the export request itself
    assert.equal("edge", root.resource["service.name"])
    assert.equal("spec", root.resource["deployment.environment"])
    assert.equal(3, root.resource["service.version"])
    local exports = otlp.received(rport).exports
    assert.equal("Bearer otel-token", exports[#exports].headers.authorization)
    assert.equal("application/json", exports[#exports].headers["content-type"])
  end)

  it("the span's gw.request_id is the id of the request's access log line", function()
    local path = "/traced/logged-" .. math.random(1e9)
    local res, tid = get(path)
    assert.equal(200, res.status)
    local root = otlp.of_kind(otlp.wait_spans(rport, tid, 1), SERVER)[1]
    local line = helpers.wait_until(function()
      for l in (helpers.read_file(gwinfo.prefix .. "/access.log") or ""):gmatch("[^\n]+") do
        if l:find(path, 1, true) then return l end
      end
    end, 5)
    assert.equal(cjson.decode(line).request_id, otlp.attrs(root)["gw.request_id"])
  end)

  it("a 5xx answer marks the root span as an error", function()
    local res = assert(client:get("/traced/status/503"))
    assert.equal(503, res.status)
    local spans = helpers.wait_until(function()
      for _, s in ipairs(otlp.received(rport).spans) do
        if s.kind == SERVER and otlp.attrs(s)["url.path"] == "/traced/status/503" then
          return otlp.spans_of(rport, s.traceId)
        end
      end
    end, 5)
    local root = otlp.of_kind(spans, SERVER)[1]
    assert.same({ code = 2 }, root.status)
    assert.equal(503, otlp.attrs(root)["http.response.status_code"])
    assert.equal("503", otlp.attrs(root)["error.type"])
    assert.same({ code = 2 }, otlp.of_kind(spans, CLIENT)[1].status)
  end)

  it("continues an incoming trace: same trace id, the client's span as the root's parent, tracestate kept", function()
    local res, tid, pid, flags, body = get("/traced/x", { traceparent = "00-" .. T .. "-" .. P .. "-01",
                                                          tracestate = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7" })
    assert.equal(200, res.status)
    assert.equal(T, tid)
    assert.not_equal(P, pid)
    assert.equal("01", flags)
    assert.equal("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", body.headers.tracestate)
    local spans = otlp.wait_spans(rport, T, 3)
    local root = otlp.of_kind(spans, SERVER)[1]
    assert.equal(P, root.parentSpanId)
    assert.equal("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", root.traceState)
    assert.equal(pid, otlp.of_kind(spans, CLIENT)[1].spanId)
  end)

  it("an invalid traceparent starts a new trace and drops the tracestate", function()
    local bad = {
      "00-" .. T:upper() .. "-" .. P .. "-01",                 -- uppercase
      "00-" .. ("0"):rep(32) .. "-" .. P .. "-01",             -- zero trace id
      "00-" .. T .. "-" .. ("0"):rep(16) .. "-01",             -- zero parent id
      "ff-" .. T .. "-" .. P .. "-01",                         -- version ff
      "00-" .. T .. "-" .. P .. "-01-extra",                   -- version 00 with more
      "00-" .. T .. "-" .. P .. "01",
      "garbage",
    }
    for _, tp in ipairs(bad) do
      local res, tid, pid, flags, body = get("/traced/x", { traceparent = tp, tracestate = "a=b" })
      assert.equal(200, res.status)
      assert.is_string(tid, tp)
      assert.not_equal(T, tid, tp)
      assert.not_equal(("0"):rep(32), tid)
      assert.not_equal(P, pid)
      assert.equal("01", flags)
      assert.is_nil(body.headers.tracestate, tp)
    end
    -- a later version with more fields is understood
    local _, tid = get("/traced/x", { traceparent = "cc-" .. T .. "-" .. P .. "-01-what-the-future-holds" })
    assert.equal(T, tid)
  end)

  it("sampling: ratio 0 records nothing but still propagates (flags 00); a sampled parent is honoured", function()
    local res, tid, pid, flags = get("/ratio0/x")
    assert.equal(200, res.status)
    assert.equal(32, #tid)
    assert.equal(16, #pid)
    assert.equal("00", flags)
    -- parent_based_ratio: the client's sampled flag wins over the ratio
    local T2 = "0af7651916cd43dd8448eb211c80319c"
    local _, tid2, _, flags2 = get("/ratio0/y", { traceparent = "00-" .. T2 .. "-b7ad6b7169203331-01" })
    assert.equal(T2, tid2)
    assert.equal("01", flags2)
    local spans = otlp.wait_spans(rport, T2, 2)
    assert.equal("GET ratio0", otlp.of_kind(spans, SERVER)[1].name)
    -- ... and an unsampled parent on a ratio-1 route is not recorded either
    local T3 = "11111111111111111111111111111111"
    local _, tid3, _, flags3 = get("/traced/z", { traceparent = "00-" .. T3 .. "-b7ad6b7169203331-00" })
    assert.equal(T3, tid3)
    assert.equal("00", flags3)
    helpers.sleep(0.4)                                        -- several flush periods
    assert.same({}, otlp.spans_of(rport, tid))
    assert.same({}, otlp.spans_of(rport, T3))
  end)

  it("sampler ratio ignores the parent's flag; include_query and plugin_spans: false", function()
    local T4 = "22222222222222222222222222222222"
    local res, tid, _, flags = get("/forced/q?page=2", { traceparent = "00-" .. T4 .. "-b7ad6b7169203331-00" })
    assert.equal(200, res.status)
    assert.equal(T4, tid)
    assert.equal("01", flags)
    local spans = otlp.wait_spans(rport, T4, 2)
    helpers.sleep(0.2)
    spans = otlp.spans_of(rport, T4)
    assert.equal(2, #spans)                                   -- root and upstream, no plugin spans
    assert.equal("page=2", otlp.attrs(otlp.of_kind(spans, SERVER)[1])["url.query"])
  end)

  it("an echo service: no upstream span; a request ended by key-auth: the root span, no upstream span", function()
    local res = assert(client:get("/echo/e", { headers = { traceparent = "00-" .. ("3"):rep(32) .. "-" .. P .. "-01" } }))
    assert.equal(200, res.status)
    local spans = otlp.wait_spans(rport, ("3"):rep(32), 2)
    helpers.sleep(0.2)
    spans = otlp.spans_of(rport, ("3"):rep(32))
    assert.equal(0, #otlp.of_kind(spans, CLIENT))
    assert.equal("GET echo", otlp.of_kind(spans, SERVER)[1].name)

    res = assert(client:get("/auth/a", { headers = { traceparent = "00-" .. ("4"):rep(32) .. "-" .. P .. "-01" } }))
    assert.equal(401, res.status)
    spans = otlp.wait_spans(rport, ("4"):rep(32), 2)
    local root = otlp.of_kind(spans, SERVER)[1]
    assert.equal(401, otlp.attrs(root)["http.response.status_code"])
    assert.is_nil(root.status)                                -- 4xx is not a server error
    assert.equal(0, #otlp.of_kind(spans, CLIENT))
    assert.is_table(otlp.by_name(spans)["opentelemetry rewrite"])

    res = assert(client:get("/auth/a", { headers = { apikey = "alice-key",
      traceparent = "00-" .. ("5"):rep(32) .. "-" .. P .. "-01" } }))
    assert.equal(200, res.status)
    spans = otlp.wait_spans(rport, ("5"):rep(32), 2)
    assert.equal("alice", otlp.attrs(otlp.of_kind(spans, SERVER)[1])["gw.consumer"])
  end)

  it("a request that matches no route (a global entry): the method alone names the span", function()
    local T5 = ("6"):rep(32)
    local res = assert(client:get("/nowhere", { headers = { traceparent = "00-" .. T5 .. "-" .. P .. "-01" } }))
    assert.equal(404, res.status)
    local spans = otlp.wait_spans(rport, T5, 2)
    local root = otlp.of_kind(spans, SERVER)[1]
    assert.equal("GET", root.name)
    assert.equal("edge-global", root.resource["service.name"])
    local a = otlp.attrs(root)
    assert.is_nil(a["http.route"])
    assert.is_nil(a["gw.service"])
    assert.equal(404, a["http.response.status_code"])
    assert.equal(0, #otlp.of_kind(spans, CLIENT))
  end)

  it("counts what it exported at GET /metrics", function()
    helpers.wait_until(function() return otlp.metric("gateway_otel_spans_exported_total") > 0 end, 5)
    local n = 0
    for _ in ipairs(otlp.received(rport).spans) do n = n + 1 end
    helpers.wait_until(function() return otlp.metric("gateway_otel_spans_exported_total") == n end, 5)
    assert.equal(0, otlp.metric('gateway_otel_spans_dropped_total{reason="queue_full"}'))
  end)
end)
