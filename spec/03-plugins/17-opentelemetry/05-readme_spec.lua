-- opentelemetry README: its gw configs compile, and the example runs against a real gw (the
-- backend replaced by the mock upstream, the collector by the mock OTLP receiver): the spans of
-- exactly the traces the README's sampling rules keep arrive, with its resource and headers.
local helpers = require "spec.helpers"
local cjson = require "cjson"
local otlp = dofile(helpers.repo .. "/spec/03-plugins/17-opentelemetry/otlp.lua")

describe("opentelemetry README", function()
  local readme = helpers.readme("opentelemetry")
  local yamls = {}
  for _, y in ipairs(readme.yamls) do
    if y:find("_format_version", 1, true) then yamls[#yamls + 1] = y end
  end

  it("the gw configs compile", function()
    helpers.assert_yaml_compiles(yamls, readme.label)
  end)

  it("the example runs: traces continued, sampled by the ratios, with the resource and headers", function()
    local up = helpers.start_mock_upstream{ name = "otel-readme" }
    local rport = otlp.start()
    finally(helpers.stop_all)
    local y, n = helpers.local_gw_yaml(yamls[1], { workers = 1, replace = {
      ["127%.0%.0%.1:9000"] = "127.0.0.1:" .. up[1], ["127%.0%.0%.1:4318"] = "127.0.0.1:" .. rport,
      ["batch_flush_delay: 1 "] = "batch_flush_delay: 0.05 " } })
    assert.equal(1, n["127%.0%.0%.1:9000"])
    assert.equal(2, n["127%.0%.0%.1:4318"])
    helpers.start_gw{ yaml = y }

    local function get(path, headers)
      local c = helpers.proxy_client()
      local res = assert(c:get(path, { headers = headers }))
      c:close()
      assert.equal(200, res.status)
      local tid, _, flags = otlp.traceparent(cjson.decode(res.body).headers.traceparent)
      return tid, flags
    end

    -- a sampled caller: recorded whatever the ratio
    local T = "0af7651916cd43dd8448eb211c80319c"
    assert.equal(T, (get("/orders/1", { traceparent = "00-" .. T .. "-b7ad6b7169203331-01" })))
    local spans = otlp.wait_spans(rport, T, 3)
    local root = otlp.of_kind(spans, 2)[1]
    assert.equal("GET orders", root.name)
    assert.same({ ["service.name"] = "edge-gateway", ["deployment.environment"] = "production",
                  ["service.version"] = "2.4.1" }, root.resource)
    assert.equal("Bearer collector-token", otlp.received(rport).exports[1].headers.authorization)

    -- new traces: kept when the trace id's last 32 bits are below ratio * 2^32
    local kept = {}
    local function expect(path, ratio, count)
      for _ = 1, count do
        local tid, flags = get(path)
        local keep = tonumber(tid:sub(25), 16) < ratio * 2 ^ 32
        assert.equal(keep and "01" or "00", flags)
        kept[tid] = keep
      end
    end
    expect("/orders/2", 0.25, 40)
    expect("/health", 0.01, 40)
    local nkept = 0
    for tid, keep in pairs(kept) do
      if keep then
        nkept = nkept + 1
        otlp.wait_spans(rport, tid, 3)
      end
    end
    assert.truthy(nkept > 0)
    helpers.sleep(0.3)
    for tid, keep in pairs(kept) do
      if not keep then assert.same({}, otlp.spans_of(rport, tid)) end
    end
  end)
end)
