-- 05-phases: every gw.* function called in every phase (table-driven, in the manner of Kong's
-- phase-check specs). A call outside its phases raises an error naming the function, the current
-- phase and the allowed ones: before the response head that is a 500, in log the response stands
-- and only the error log shows it. init_worker and timers are checked through the phase-probe
-- plugin (spec/fixtures/plugins/phase-probe, rows.lua is the table).
local helpers = require "spec.helpers"

local FIXTURES = helpers.repo .. "/spec/fixtures/plugins"
local ROWS = dofile(FIXTURES .. "/phase-probe/rows.lua")
local REQUEST_PHASES = { "rewrite", "access", "header_filter", "log" }

local function message(fn, phase, allowed)
  return fn .. ": not allowed in the " .. phase .. " phase (allowed in: " .. table.concat(allowed, ", ") .. ")"
end

describe("phase checks #integration", function()
  local up, client

  lazy_setup(function()
    up = helpers.start_mock_upstream({ name = "phases" })
    helpers.start_gw({ config = {
      gw = { plugins_path = { FIXTURES }, shared_dicts = { test = "1m" } },
      upstreams = { { name = "probe", targets = { { target = "127.0.0.1:" .. up[1] } } } },
      services = { { name = "s", url = "http://127.0.0.1:" .. up[1], routes = {
        { name = "probe", paths = { "/" }, plugins = { { name = "phase-probe" } } },
      } } },
    } })
    client = helpers.proxy_client()
  end)
  lazy_teardown(function()
    if client then client:close() end
    helpers.stop_all()
  end)

  -- One request calling `row` in `phase`; then a second request on the same connection, so the
  -- first one's log phase is over when this returns.
  local function probe(row, phase)
    helpers.clean_gw_log()
    local res, err = client:get("/anything", { headers = { ["X-Call"] = row.fn, ["X-Phase"] = phase } })
    if not res then  -- the connection may have been closed after a 500
      client = helpers.proxy_client()
      error("no response: " .. tostring(err))
    end
    if res.headers["connection"] == "close" then client:close() end
    local res2 = client:get("/anything")
    assert.res_status(200, res2)
    return res, helpers.gw_log()
  end

  local probed
  local function init_and_timer_results()
    if probed then return probed end
    probed = helpers.wait_until(function()
      local res = client:get("/", { headers = { ["X-Read"] = "1" } })
      local d = res and res.status == 200 and helpers.json_decode(res.body)
      return d and d["timer-done"] and d
    end, 5)
    return probed
  end

  for _, row in ipairs(ROWS) do
    describe(row.fn, function()
      for _, phase in ipairs(REQUEST_PHASES) do
        if row.allowed[phase] then
          it("is allowed in " .. phase, function()
            local res, log = probe(row, phase)
            assert.is_not.equal(500, res.status, "status 500; log:\n" .. log)
            assert.is_nil(log:find("failed in the", 1, true), log)
            if row.fn == "gw.response.exit" then
              assert.equal("exited", assert.res_status(200, res))
            end
          end)
        else
          it("raises in " .. phase, function()
            local res, log = probe(row, phase)
            local msg = message(row.fn, phase, row.phases)
            if phase == "log" then
              assert.res_status(200, res)  -- the response had gone out already
            else
              local body = assert.res_status(500, res)
              assert.equal("An unexpected error occurred", helpers.json_decode(body).message)
            end
            assert.is_truthy(log:find("plugin 'phase-probe' failed in the " .. phase .. " phase: ", 1, true), log)
            -- the message, positioned at the plugin's call (not inside gw.* itself)
            local line = log:match("[^\n]*" .. msg:gsub("%p", "%%%0") .. "[^\n]*")
            assert.is_truthy(line, "expected '" .. msg .. "' in:\n" .. log)
            assert.matches("phase%-probe/handler%.lua:%d+: " .. msg:gsub("%p", "%%%0"), line)
          end)
        end
      end

      it((row.allowed.timer and "is allowed" or "raises") .. " in init_worker and timers", function()
        local d = init_and_timer_results()[row.fn]
        assert.equal(message(row.fn, "init_worker", row.phases),
          tostring(d.init_worker):match("^[^:]*:%d+: (.*)$") or d.init_worker)
        if row.allowed.timer then
          assert.equal("ok", d.timer)
        else
          assert.equal(message(row.fn, "timer", row.phases), tostring(d.timer):match("^[^:]*:%d+: (.*)$") or d.timer)
        end
      end)
    end)
  end

  it("gw.get_phase names each phase", function()
    -- checked through the rows above for request phases; init_worker/timer here
    local d = init_and_timer_results()
    assert.truthy(d["gw.sleep"].init_worker:find("init_worker phase", 1, true))
  end)
end)
