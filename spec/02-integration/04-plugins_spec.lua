-- 04-plugins: plugins running in a real gw against the real mock upstream — chain order and
-- scopes, errors, gw.response.exit, header_filter, log, and the gw.* request/service API.
-- Test plugins live in spec/fixtures/plugins (`code` runs Lua source given in its config).
local helpers = require "spec.helpers"
local socket = require "socket"
local cjson = require "cjson"

local FIXTURES = helpers.repo .. "/spec/fixtures/plugins"

-- A route whose `code` plugin runs the given per-phase sources.
local function code_route(name, path, conf, extra)
  local r = { name = name, paths = { path }, plugins = { { name = "code", config = conf } } }
  for _, p in ipairs(extra or {}) do table.insert(r.plugins, p) end
  return r
end

local function gw_config(t)
  t.gw = t.gw or {}
  t.gw.plugins_path = { FIXTURES }
  t.gw.shared_dicts = t.gw.shared_dicts or { test = "1m" }
  return t
end

-- The mock's echo: request headers of a repeated name come back as a list.
local function as_list(v)
  if v == nil then return {} end
  if type(v) == "table" then return v end
  return { v }
end

local function json(res)
  return assert(helpers.json_decode(res.body), "not JSON: " .. tostring(res.body))
end

describe("plugins #integration", function()
  local up, up_b, client

  lazy_setup(function()
    up = helpers.start_mock_upstream({ name = "a" })
    up_b = helpers.start_mock_upstream({ name = "b" })
  end)
  lazy_teardown(helpers.stop_all)

  before_each(function() client = helpers.proxy_client() end)
  after_each(function() if client then client:close() end end)

  describe("chain", function()
    lazy_setup(function()
      helpers.start_gw({ config = gw_config({
        services = {
          { name = "svc-a", url = "http://127.0.0.1:" .. up[1],
            plugins = { { name = "scoped", config = { value = "service" } } },
            routes = {
              { name = "order", paths = { "/order" }, plugins = {
                -- deliberately not in execution order
                { name = "ord-low" }, { name = "ord-tie-b" }, { name = "ord-high" }, { name = "ord-tie-a" },
                { name = "code", config = { access = [[
                  gw.service.request.set_header("X-Ctx-Order", table.concat(gw.ctx.shared.order, ","))
                ]] } },
              } },
              { name = "scoped-route", paths = { "/scoped-route" },
                plugins = { { name = "scoped", config = { value = "route" } } } },
              { name = "scoped-service", paths = { "/scoped-service" } },
              { name = "disabled", paths = { "/disabled" },
                plugins = { { name = "scoped", config = { value = "disabled" }, enabled = false } } },
            } },
          { name = "svc-b", url = "http://127.0.0.1:" .. up_b[1],
            routes = { { name = "scoped-global", paths = { "/scoped-global" } } } },
        },
        plugins = { { name = "scoped", config = { value = "global" } },
                    { name = "code", config = { header_filter = [[gw.response.set_header("X-Global", "hf")]] } } },
      }) })
    end)

    it("runs plugins by PRIORITY, higher first, ties by name", function()
      local res = client:get("/order")
      assert.res_status(200, res)
      assert.same({ "ord-high", "ord-tie-a", "ord-tie-b", "ord-low" },
        as_list(assert.request(res).has.header("x-order")))
      -- rewrite ran in the same order, before every access handler
      assert.equal("ord-high,ord-tie-a,ord-tie-b,ord-low", assert.request(res).has.header("x-ctx-order"))
    end)

    it("uses the most specific config: route > service > global", function()
      local res = client:get("/scoped-route")
      assert.res_status(200, res)
      assert.same({ "route" }, as_list(assert.request(res).has.header("x-scoped")))

      res = client:get("/scoped-service")
      assert.res_status(200, res)
      assert.same({ "service" }, as_list(assert.request(res).has.header("x-scoped")))

      res = client:get("/scoped-global")
      assert.res_status(200, res)
      assert.same({ "global" }, as_list(assert.request(res).has.header("x-scoped")))
      assert.equal("b", json(res).upstream)
    end)

    it("runs global plugins for requests that match no route", function()
      local res = client:get("/nothing-here")
      assert.res_status(404, res)
      assert.equal("hf", res.headers["x-global"])
      res = client:get("/scoped-global")
      assert.equal("hf", res.headers["x-global"])
    end)

    it("a disabled route-level entry does not hide the service's", function()
      local res = client:get("/disabled")
      assert.res_status(200, res)
      assert.same({ "service" }, as_list(assert.request(res).has.header("x-scoped")))
    end)
  end)

  describe("errors and short-circuits", function()
    lazy_setup(function()
      local pid_header = [[gw.response.set_header("X-Pid", gw.worker().pid)]]
      helpers.start_gw({ config = gw_config({
        services = {
          { name = "svc-a", url = "http://127.0.0.1:" .. up[1], routes = {
            code_route("crash", "/crash", { header_filter = pid_header }, { { name = "crash" } }),
            { name = "exit-rewrite", paths = { "/exit-rewrite" }, plugins = {
              { name = "code-first", config = { rewrite = [[
                gw.response.exit(403, { message = "go away", n = 1 }, { ["X-Exit"] = "rewrite" })
              ]] } },
              { name = "code", config = {
                rewrite = [[gw.shared.test:incr("later-rewrite", 1, 0)]],
                access = [[gw.shared.test:incr("later-access", 1, 0)]],
              } },
            } },
            { name = "exit-access", paths = { "/exit-access" }, plugins = {
              { name = "code-first", config = { access = [[
                gw.response.exit(429, { message = "slow down" }, { ["X-Exit"] = "access", ["Retry-After"] = 7 })
                error("not reached")
              ]] } },
              { name = "code", config = {
                access = [[gw.shared.test:incr("later-access", 1, 0)]],
                header_filter = [[gw.response.set_header("X-HF-Status", gw.response.get_status())]],
              } },
            } },
            { name = "exit-string", paths = { "/exit-string" }, plugins = {
              { name = "code", config = { access = [[
                gw.response.exit(200, "plain text", { ["Content-Type"] = "text/plain" })
              ]] } },
            } },
            code_route("hf", "/hf", { header_filter = [[
              gw.response.set_header("X-Upstream-Status", tostring(gw.response.get_status()))
              gw.response.set_header("X-Added", "yes")
              gw.response.clear_header("X-Remove-Me")
              if gw.response.get_status() == 404 then gw.response.set_status(200) end
            ]] }),
            code_route("log", "/log", { log = [[
              local id = gw.request.get_header("X-Id")
              gw.sleep(0.3)
              gw.shared.test:set("log:" .. id, gw.response.get_status() .. " " .. gw.request.get_path())
              gw.log.notice("log phase done for ", id)
            ]] }),
            code_route("err-rewrite", "/err-rewrite", { rewrite = [[error("rewrite went wrong")]],
              header_filter = pid_header }),
            code_route("err-hf", "/err-hf", { header_filter = [[
              gw.response.set_header("X-Before", "1")
              error("header_filter went wrong")
            ]] }),
            code_route("err-log", "/err-log", { log = [[error("log went wrong")]], header_filter = pid_header }),
            code_route("exit-then-log-sleep", "/exit-then-log-sleep", {
              access = [[gw.response.exit(201, "made")]],
              log = [[
                gw.sleep(0.1)
                gw.shared.test:set("log:" .. gw.request.get_header("X-Id"), "slept after exit")
              ]],
              header_filter = pid_header,
            }),
            code_route("nested-co", "/nested-co", { access = [[
              local ok, err = pcall(function()
                local co = coroutine.create(function() gw.sleep(0.05) end)
                local ok2, err2 = coroutine.resume(co)
                if not ok2 then error(err2, 0) end
              end)
              gw.response.exit(200, { ok = ok, err = tostring(err) })
            ]], header_filter = pid_header }),
            code_route("nested-exit", "/nested-exit", { access = [[
              local co = coroutine.create(function() gw.response.exit(201, "from nested") end)
              local ok, err = coroutine.resume(co)
              gw.response.exit(200, { ok = ok, err = tostring(err) })
            ]] }),
            code_route("counters", "/counters", { access = [[
              gw.response.exit(200, { rw = gw.shared.test:get("later-rewrite") or 0,
                                      ac = gw.shared.test:get("later-access") or 0 })
            ]] }),
            code_route("read", "/read", { access = [[
              local v = gw.shared.test:get("log:" .. gw.request.get_header("X-Id"))
              gw.response.exit(200, { value = v or gw.json.null })
            ]] }),
          } },
        },
      }) })
    end)

    it("a plugin raising in access: 500 JSON, logged with plugin, phase and traceback; the worker lives on", function()
      local res = client:get("/crash", { headers = { ["X-Crash"] = "boom" } })
      local body = assert.res_status(500, res)
      local doc = assert(helpers.json_decode(body), body)
      assert.equal("An unexpected error occurred", doc.message)
      assert.matches("application/json", res.headers["content-type"], 1, true)
      local pid = assert.response(res).has.header("x-pid")  -- header_filter still ran

      local line = assert.logfile().has.line("plugin 'crash' failed in the access phase", true)
      assert.matches("crash plugin exploded: boom", line, 1, true)
      assert.logfile().has.line("stack traceback:", true)
      assert.logfile().has.line("crash/handler%.lua:%d+: in function 'explode'")

      -- the next request on a fresh connection and on the same one: the same worker serves it
      for _ = 1, 2 do
        client = client.sock and client or helpers.proxy_client()
        res = client:get("/crash")
        assert.res_status(200, res)
        assert.equal("yes", assert.request(res).has.header("x-crash-passed"))
        assert.equal(pid, res.headers["x-pid"])
      end
    end)

    local function counters()
      local c = helpers.proxy_client()
      local r = c:get("/counters")
      c:close()
      assert.res_status(200, r)
      return json(r)
    end

    it("gw.response.exit in rewrite: JSON body and headers, later plugins skipped, upstream not reached", function()
      local before = helpers.mock_stats(up[1]).requests
      local res = client:get("/exit-rewrite")
      local body = assert.res_status(403, res)
      assert.same({ message = "go away", n = 1 }, helpers.json_decode(body))
      assert.equal("rewrite", res.headers["x-exit"])
      assert.matches("application/json", res.headers["content-type"], 1, true)
      assert.equal(tostring(#body), res.headers["content-length"])
      -- /stats itself counts one request
      assert.equal(before + 1, helpers.mock_stats(up[1]).requests)
      -- neither the rewrite nor the access handler of the later plugin ran
      assert.same({ rw = 0, ac = 0 }, counters())
    end)

    it("gw.response.exit in access: status, headers, JSON; header_filter sees the status", function()
      local before = helpers.mock_stats(up[1]).requests
      local res = client:get("/exit-access")
      local body = assert.res_status(429, res)
      assert.same({ message = "slow down" }, helpers.json_decode(body))
      assert.equal("access", res.headers["x-exit"])
      assert.equal("7", res.headers["retry-after"])
      assert.equal("429", res.headers["x-hf-status"])
      assert.equal(before + 1, helpers.mock_stats(up[1]).requests)
      assert.same({ rw = 0, ac = 0 }, counters())
      -- the keep-alive connection is still usable; a string body keeps its Content-Type
      res = client:get("/exit-string")
      assert.equal("plain text", assert.res_status(200, res))
      assert.equal("text/plain", res.headers["content-type"])
    end)

    it("header_filter sets and clears response headers and sees the upstream status", function()
      local res = client:get("/hf/headers", { query = { set = "X-Remove-Me: 1" } })
      assert.res_status(200, res)
      assert.equal("200", res.headers["x-upstream-status"])
      assert.equal("yes", res.headers["x-added"])
      assert.is_nil(res.headers["x-remove-me"])

      res = client:get("/hf/status/404")
      assert.res_status(200, res)  -- set_status in header_filter
      assert.equal("404", res.headers["x-upstream-status"])
      assert.equal(404, json(res).status)

      res = client:get("/hf/status/503")
      assert.res_status(503, res)
      assert.equal("503", res.headers["x-upstream-status"])
    end)

    it("errors in rewrite and header_filter give a 500; an error in log leaves the response alone", function()
      local res = client:get("/err-rewrite")
      assert.res_status(500, res)
      assert.logfile().has.line("plugin 'code' failed in the rewrite phase: code.rewrite:1: rewrite went wrong", true)

      res = client:get("/err-hf")
      local body = assert.res_status(500, res)
      assert.equal("An unexpected error occurred", helpers.json_decode(body).message)
      assert.is_nil(res.headers["x-before"])  -- half-done header changes are not sent
      assert.logfile().has.line("plugin 'code' failed in the header_filter phase", true)

      client = helpers.proxy_client()
      res = client:get("/err-log")
      assert.res_status(200, res)
      local pid = res.headers["x-pid"]
      assert.logfile().has.line("plugin 'code' failed in the log phase: code.log:1: log went wrong", true)
      -- keep-alive still works after an error in log
      res = client:get("/err-log")
      assert.res_status(200, res)
      assert.equal(pid, res.headers["x-pid"])
    end)

    it("gw.sleep in the log phase after gw.response.exit", function()
      local res = client:get("/exit-then-log-sleep", { headers = { ["X-Id"] = "E1" } })
      assert.equal("made", assert.res_status(201, res))
      local pid = res.headers["x-pid"]
      -- the next request on the same connection waits for the log phase, then is served
      res = client:get("/read", { headers = { ["X-Id"] = "E1" } })
      assert.res_status(200, res)
      assert.equal("slept after exit", json(res).value)
      res = client:get("/exit-then-log-sleep", { headers = { ["X-Id"] = "E2" } })
      assert.res_status(201, res)
      assert.equal(pid, res.headers["x-pid"])
    end)

    it("gw.sleep from a coroutine of the plugin's own is refused, not mis-resumed", function()
      local res = client:get("/nested-co")
      local d = json(assert.res_status(200, res) and res)
      assert.equal(false, d.ok)
      assert.matches("gw.sleep", d.err, 1, true)
      local pid = res.headers["x-pid"]
      socket.sleep(0.1)
      res = client:get("/nested-co")
      assert.res_status(200, res)
      assert.equal(pid, res.headers["x-pid"])
    end)

    it("gw.response.exit from a coroutine of the plugin's own is refused", function()
      local res = client:get("/nested-exit")
      local d = json(assert.res_status(200, res) and res)
      assert.equal(false, d.ok)
      assert.matches("gw.response.exit: must be called from the plugin handler", d.err, 1, true)
    end)

    it("a client that goes away during gw.sleep does not disturb the worker", function()
      local c = helpers.proxy_client()
      assert(c:raw("GET /log/gone HTTP/1.1\r\nHost: x\r\nX-Id: G1\r\n\r\n"))
      assert(c:read_response())
      c:close()  -- while its log phase sleeps
      local c2 = helpers.proxy_client()
      assert(c2:raw("GET /exit-then-log-sleep HTTP/1.1\r\nHost: x\r\nX-Id: G2\r\n\r\n"))
      c2:close()
      socket.sleep(0.5)
      local res = client:get("/read", { headers = { ["X-Id"] = "G1" } })
      assert.res_status(200, res)
      assert.equal("200 /log/gone", json(res).value)
      res = client:get("/read", { headers = { ["X-Id"] = "G2" } })
      assert.res_status(200, res)
    end)

    it("the log phase runs after the response was sent", function()
      local t0 = socket.gettime()
      local res = client:get("/log/x", { headers = { ["X-Id"] = "L1" } })
      assert.res_status(200, res)
      assert.is_true(socket.gettime() - t0 < 0.3, "the response waited for the log phase")
      -- not written yet: the log phase is still sleeping
      local c2 = helpers.proxy_client()
      local r = c2:get("/read", { headers = { ["X-Id"] = "L1" } })
      assert.res_status(200, r)
      assert.equal(cjson.null, json(r).value)
      helpers.wait_until(function()
        local r2 = c2:get("/read", { headers = { ["X-Id"] = "L1" } })
        return r2 and r2.status == 200 and json(r2).value == "200 /log/x"
      end, 5)
      c2:close()
      assert.logfile().has.line("%[log%] %[code%] log phase done for L1")
    end)
  end)

  describe("gw.* API", function()
    lazy_setup(function()
      helpers.start_gw({ config = gw_config({
        gw = { limits = { max_body_size = "1k" } },
        upstreams = { { name = "up-b", targets = { { target = "127.0.0.1:" .. up_b[1] } } } },
        services = {
          { name = "svc-b", url = "http://127.0.0.1:" .. up_b[1] .. "/base" },
          { name = "svc-a", url = "http://127.0.0.1:" .. up[1], routes = {
            code_route("getters", "/getters", { access = [[
              local h = gw.request.get_headers()
              gw.response.exit(200, {
                method = gw.request.get_method(), path = gw.request.get_path(),
                raw_query = gw.request.get_raw_query(), query = gw.request.get_query(),
                a = gw.request.get_query_arg("a"), missing = gw.request.get_query_arg("zz") or "none",
                flag = gw.request.get_query_arg("flag"),
                h_lower = gw.request.get_header("x-custom-header"),
                h_mixed = gw.request.get_header("X-CUSTOM-Header"),
                h_underscore = gw.request.get_header("x_custom_header"),
                t_lower = h["x-custom-header"], t_mixed = h["X-Custom-Header"], t_underscore = h.x_custom_header,
                multi = h["x-multi"], first_multi = gw.request.get_header("X-Multi"),
                client_ip = gw.request.get_client_ip(), http_version = gw.request.get_http_version(),
                port = gw.request.get_port(), host = gw.request.get_host(),
                scheme = gw.request.get_scheme(), path_with_query = gw.request.get_path_with_query(),
                phase = gw.get_phase(),
              })
            ]] }),
            code_route("body", "/body", { access = [[
              local b, err, mime = gw.request.get_body()
              local raw = gw.request.get_raw_body()
              gw.response.exit(200, { body = b or gw.json.null, err = err or gw.json.null,
                                      mime = mime or gw.json.null, raw = raw })
            ]] }),
            code_route("setters", "/setters", { access = [[
              local sr = gw.service.request
              sr.set_method("PUT")
              sr.set_path("/new/path")
              sr.set_raw_query("x=1&y=2")
              sr.set_header("X-Set", "v")
              sr.set_header("X-Replace", "new")
              sr.add_header("X-Add", "1")
              sr.add_header("X-Add", "2")
              sr.clear_header("X-Drop")
              sr.set_headers({ ["X-H1"] = "a", ["X-H2"] = { "b", "c" } })
              sr.set_raw_body("raw body!")
            ]] }),
            code_route("set-query", "/set-query", { access = [[
              gw.service.request.set_query({ b = "2", a = { "1", "x y" }, flag = true })
            ]] }),
            code_route("set-body", "/set-body", { access = [[
              local mime = gw.request.get_header("X-Mime")
              assert(gw.service.request.set_body({ k = "v", n = 1 }, mime))
            ]] }),
            code_route("balancer", "/balancer", {
              balancer = [[
                local port = tonumber(gw.request.get_header("X-Port"))
                if port then assert(gw.service.set_target("127.0.0.1", port)) end
              ]],
              access = [[gw.ctx.shared.order = "access"]],
            }),
            code_route("to-upstream", "/to-upstream", { access = [[
              assert(gw.service.set_upstream("up-b"))
              local ok, err = gw.service.set_upstream("no-such-thing")
              gw.service.request.set_header("X-Unknown", tostring(ok) .. "|" .. tostring(err))
            ]] }),
            code_route("to-service", "/to-service", { access = [[
              assert(gw.service.set_upstream("svc-b"))
            ]] }),
            code_route("to-target", "/to-target", { access = [[
              assert(gw.service.set_target("127.0.0.1", tonumber(gw.request.get_header("X-Port"))))
            ]] }),
            { name = "ctx", paths = { "/ctx" }, plugins = {
              { name = "code-first", config = {
                rewrite = [[
                  gw.ctx.shared.x = "from-first"
                  gw.ctx.plugin.secret = "first-only"
                ]],
                access = [[
                  gw.sleep(0.01)
                  gw.service.request.set_header("X-First-Secret", tostring(gw.ctx.plugin.secret))
                ]],
                log = [[
                  gw.shared.test:set("ctx-log", tostring(gw.ctx.shared.from_hf) .. "|" .. tostring(gw.ctx.plugin.secret))
                ]],
              } },
              { name = "code", config = {
                access = [[
                  gw.service.request.set_header("X-Shared", gw.ctx.shared.x)
                  gw.service.request.set_header("X-Private", tostring(gw.ctx.plugin.secret))
                  gw.ctx.plugin.mine = "code-private"
                ]],
                header_filter = [[
                  gw.response.set_header("X-HF-Shared", gw.ctx.shared.x)
                  gw.response.set_header("X-HF-Private", gw.ctx.plugin.mine)
                  gw.ctx.shared.from_hf = "hf"
                ]],
              } },
            } },
            code_route("ctx-read", "/ctx-read", { access = [[
              gw.response.exit(200, { v = gw.shared.test:get("ctx-log") })
            ]] }),
            code_route("read-then-proxy", "/read-then-proxy", { access = [[
              local raw = gw.request.get_raw_body()
              gw.service.request.set_header("X-Seen-Size", #raw)
            ]] }),
            code_route("raw-body-chunked", "/raw-body-chunked", { access = [[
              gw.service.request.set_raw_body("replaced")
            ]] }),
            code_route("exit-unread", "/exit-unread", { access = [[
              gw.response.exit(401, { message = "no" })
            ]] }),
            code_route("set-host", "/set-host", { access = [[
              gw.service.request.set_header("Host", "changed.example")
              gw.service.request.set_header("X-Client-Host", gw.request.get_host())
            ]] }),
            code_route("body-filter", "/body-filter", { body_filter = [[
              local body = gw.response.get_raw_body()
              gw.response.set_raw_body("<" .. #body .. ">" .. body:upper())
            ]] }),
            code_route("body-filter-exit", "/body-filter-exit", {
              access = [[gw.response.exit(418, "short and stout")]],
              body_filter = [[gw.response.set_raw_body(gw.response.get_raw_body() .. "!")]],
            }),
            code_route("body-filter-error", "/body-filter-error", { body_filter = [[error("filter broke")]] }),
            code_route("consumer", "/consumer", {
              access = [[gw.client.authenticate({ id = "c1", username = "alice" }, { key = "k1" })]],
              header_filter = [[
                gw.response.set_header("X-Consumer", gw.client.get_consumer().username)
                gw.response.set_header("X-Credential", gw.client.get_credential().key)
              ]],
            }),
            code_route("router", "/router", { access = [[
              local r, s = gw.router.get_route(), gw.router.get_service()
              gw.service.request.set_header("X-Route", r.name)
              gw.service.request.set_header("X-Route-Path", r.paths[1])
              gw.service.request.set_header("X-Service", s.name)
              gw.service.request.set_header("X-Service-Port", s.port)
            ]] }),
            code_route("sleep", "/sleep", { access = [[
              local s = gw.request.get_query_arg("s")
              if s then gw.sleep(tonumber(s)) end
              gw.response.exit(200, { slept = s or gw.json.null })
            ]] }),
          } },
        },
      }) })
    end)

    it("gw.request getters", function()
      local res = client:get("/getters/some/where?a=1&a=2&flag&b=x%20y&c=p+q", {
        headers = { ["X-Custom-Header"] = "hello", ["X-Multi"] = { "m1", "m2" } },
      })
      local d = json(res)
      assert.res_status(200, res)
      assert.equal("GET", d.method)
      assert.equal("/getters/some/where", d.path)
      assert.equal("a=1&a=2&flag&b=x%20y&c=p+q", d.raw_query)
      assert.same({ a = { "1", "2" }, flag = true, b = "x y", c = "p q" }, d.query)
      assert.equal("1", d.a)
      assert.equal("none", d.missing)
      assert.equal(true, d.flag)
      for _, k in ipairs({ "h_lower", "h_mixed", "h_underscore", "t_lower", "t_mixed", "t_underscore" }) do
        assert.equal("hello", d[k], k)
      end
      assert.same({ "m1", "m2" }, d.multi)
      assert.equal("m1", d.first_multi)
      assert.equal("127.0.0.1", d.client_ip)
      assert.equal(1.1, d.http_version)
      assert.equal(helpers.gw_info().proxy_port, d.port)
      assert.equal("127.0.0.1", d.host)
      assert.equal("http", d.scheme)
      assert.equal("/getters/some/where?a=1&a=2&flag&b=x%20y&c=p+q", d.path_with_query)
      assert.equal("access", d.phase)
    end)

    it("gw.request.get_http_version on HTTP/1.0 and get_host with a port", function()
      assert(client:raw("GET /getters HTTP/1.0\r\nHost: Example.COM:8080\r\n\r\n"))
      local res = assert(client:read_response())
      local d = json(res)
      assert.equal(1.0, d.http_version)
      assert.equal("example.com", d.host)
    end)

    it("gw.request.get_body: JSON, form, raw, and a body that arrives in pieces", function()
      local res = client:post("/body", { body = { a = 1, b = { "x", "y" } } })
      local d = json(res)
      assert.same({ a = 1, b = { "x", "y" } }, d.body)
      assert.equal("application/json", d.mime)
      assert.same({ a = 1, b = { "x", "y" } }, helpers.json_decode(d.raw))

      res = client:post("/body", { body = "a=1&b=x+y&b=2&flag",
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } })
      d = json(res)
      assert.same({ a = "1", b = { "x y", "2" }, flag = true }, d.body)
      assert.equal("application/x-www-form-urlencoded", d.mime)

      res = client:post("/body", { body = "not json", headers = { ["Content-Type"] = "application/json" } })
      d = json(res)
      assert.equal(cjson.null, d.body)
      assert.matches("invalid JSON", d.err, 1, true)
      assert.equal("not json", d.raw)

      -- chunked, with pauses: the handler waits for the whole body without blocking the worker
      local pieces = { '{"slow":', ' "bo', 'dy"}' }
      local i = 0
      res = client:post("/body", { headers = { ["Content-Type"] = "application/json" }, chunks = function()
        i = i + 1
        if i > 1 then socket.sleep(0.1) end
        return pieces[i]
      end })
      d = json(res)
      assert.same({ slow = "body" }, d.body)
      assert.equal('{"slow": "body"}', d.raw)

      -- and the connection still works for a request without a body
      res = client:get("/body")
      d = json(res)
      assert.equal("", d.raw)
    end)

    it("gw.request.get_raw_body: a body over max_body_size gives 413", function()
      -- arriving in pieces: the handler is suspended when the limit is crossed
      local piece = "258\r\n" .. string.rep("x", 600) .. "\r\n"
      assert(client:raw("POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" .. piece))
      socket.sleep(0.1)
      assert(client:raw(piece))
      local res = assert(client:read_response())
      assert.res_status(413, res)
      assert.equal("Request body too large", json(res).message)
      -- all at once: the limit is found in the first read
      client = helpers.proxy_client()
      res = client:post("/body", { chunks = { string.rep("y", 2000) } })
      assert.res_status(413, res)
      assert.equal("close", res.headers["connection"])
      -- the worker is fine
      client = helpers.proxy_client()
      res = client:post("/body", { body = { small = true } })
      assert.same({ small = true }, json(res).body)
    end)

    it("gw.service.request setters reach the upstream", function()
      local res = client:post("/setters/orig?q=1", { body = "original",
        headers = { ["X-Drop"] = "x", ["X-Replace"] = "old" } })
      assert.res_status(200, res)
      local e = json(res)
      assert.equal("PUT", e.method)
      assert.equal("/new/path", e.path)
      assert.equal("x=1&y=2", e.query)
      assert.equal("raw body!", e.body)
      assert.equal(9, e.body_size)
      assert.equal("v", e.headers["x-set"])
      assert.equal("new", e.headers["x-replace"])
      assert.same({ "1", "2" }, e.headers["x-add"])
      assert.is_nil(e.headers["x-drop"])
      assert.equal("a", e.headers["x-h1"])
      assert.same({ "b", "c" }, e.headers["x-h2"])
      assert.equal("9", e.headers["content-length"])

      res = client:get("/set-query?old=1")
      e = json(res)
      assert.equal("a=1&a=x%20y&b=2&flag", e.query)

      res = client:post("/set-body", { body = { old = true } })
      e = json(res)
      assert.same({ k = "v", n = 1 }, helpers.json_decode(e.body))
      assert.matches("application/json", e.headers["content-type"], 1, true)

      res = client:post("/set-body", { body = "old=1", headers = { ["X-Mime"] = "application/x-www-form-urlencoded" } })
      e = json(res)
      assert.equal("k=v&n=1", e.body)
      assert.equal("application/x-www-form-urlencoded", e.headers["content-type"])
    end)

    it("a body read by a plugin is still sent upstream (Content-Length and chunked)", function()
      local res = client:post("/read-then-proxy", { body = "0123456789" })
      local e = json(res)
      assert.equal("0123456789", e.body)
      assert.equal("10", e.headers["x-seen-size"])
      assert.equal("10", e.headers["content-length"])
      res = client:post("/read-then-proxy", { chunks = { "abc", "defg" } })
      e = json(res)
      assert.equal("abcdefg", e.body)
      assert.equal("7", e.headers["x-seen-size"])
      res = client:post("/raw-body-chunked", { chunks = { "abc", "defg" } })
      e = json(res)
      assert.equal("replaced", e.body)
      assert.equal("8", e.headers["content-length"])
      assert.is_nil(e.headers["transfer-encoding"])
    end)

    it("gw.response.exit with the request body unread closes the connection after the response", function()
      local res = client:post("/exit-unread", { body = string.rep("z", 800) })
      assert.res_status(401, res)
      -- the unread body must not be taken for the next request: either gw reads it away or it
      -- closes the connection
      if res.headers["connection"] ~= "close" then
        res = client:get("/getters")
        assert.res_status(200, res)
      end
    end)

    it("gw.service.request.set_header('Host') sets the upstream Host, not the client's", function()
      local res = client:get("/set-host", { headers = { Host = "client.example" } })
      local e = json(res)
      assert.equal("client.example", e.headers["x-client-host"])
      assert.equal("client.example", e.headers["x-forwarded-host"])
      assert.equal("changed.example", e.headers["host"])
    end)

    it("body_filter reads and replaces a proxied body; Content-Length follows", function()
      -- a Content-Length body
      local res = client:get("/body-filter/bytes/10")
      local body = assert.res_status(200, res)
      assert.equal(14, #body)
      assert.equal("<10>", body:sub(1, 4))
      assert.equal(body:sub(5):upper(), body:sub(5))
      assert.equal("14", res.headers["content-length"])
      -- a chunked body from the upstream arrives whole and re-framed with a Content-Length
      res = client:get("/body-filter/chunked/3")
      body = assert.res_status(200, res)
      assert.equal(tostring(#body), res.headers["content-length"])
      assert.is_nil(res.headers["transfer-encoding"])
      local n, rest = body:match("^<(%d+)>(.*)$")
      assert.equal(tonumber(n), #rest)
      assert.equal(rest:upper(), rest)
    end)

    it("body_filter gathers at most max_body_size (1k here): one byte more is a 502", function()
      assert.res_status(200, client:get("/body-filter/bytes/1024"))
      assert.res_status(502, client:get("/body-filter/bytes/1025"))
      assert.res_status(200, client:get("/body-filter/bytes/10"))
    end)

    it("body_filter runs on gw's own responses (exit) too", function()
      local res = client:get("/body-filter-exit")
      assert.equal("short and stout!", assert.res_status(418, res))
    end)

    it("an error in body_filter gives a clean 500, and the next request is fine", function()
      local res = client:get("/body-filter-error")
      assert.res_status(500, res)
      assert.matches("filter broke", helpers.gw_log(), 1, true)
      assert.res_status(200, client:get("/body-filter/bytes/3"))
    end)

    it("the balancer phase runs after access and picks the target", function()
      local res = client:get("/balancer/x", { headers = { ["X-Port"] = tostring(up_b[1]) } })
      assert.equal("b", json(res).upstream)
      res = client:get("/balancer/x")
      assert.equal("a", json(res).upstream)
    end)

    it("gw.service.set_upstream / set_target", function()
      local res = client:get("/to-upstream/x")
      local e = json(res)
      assert.equal("b", e.upstream)
      assert.equal("/x", e.path)  -- strip_path
      assert.equal("nil|could not find an upstream named 'no-such-thing'", e.headers["x-unknown"])

      res = client:get("/to-service/x")
      e = json(res)
      assert.equal("b", e.upstream)
      assert.equal("/base/x", e.path)

      res = client:get("/to-target", { headers = { ["X-Port"] = up_b[1] } })
      e = json(res)
      assert.equal("b", e.upstream)
      res = client:get("/to-target", { headers = { ["X-Port"] = up[1] } })
      assert.equal("a", json(res).upstream)
    end)

    it("gw.ctx.shared crosses plugins and phases; gw.ctx.plugin is private", function()
      local res = client:get("/ctx")
      assert.res_status(200, res)
      local req = assert.request(res)
      assert.equal("from-first", req.has.header("x-shared"))
      assert.equal("nil", req.has.header("x-private"))
      assert.equal("first-only", req.has.header("x-first-secret"))
      assert.equal("from-first", res.headers["x-hf-shared"])
      assert.equal("code-private", res.headers["x-hf-private"])
      helpers.wait_until(function()
        local r = client:get("/ctx-read")
        return json(r).v == "hf|first-only"
      end, 5)
    end)

    it("gw.ctx.plugin survives a gw.sleep while other requests run", function()
      local clients = {}
      for i = 1, 5 do
        clients[i] = helpers.proxy_client()
        assert(clients[i]:raw("GET /ctx HTTP/1.1\r\nHost: x\r\n\r\n"))
      end
      for i = 1, 5 do
        local res = assert(clients[i]:read_response())
        assert.res_status(200, res)
        assert.equal("first-only", assert.request(res).has.header("x-first-secret"))
        clients[i]:close()
      end
    end)

    it("gw.client.authenticate is seen by later phases", function()
      local res = client:get("/consumer")
      assert.res_status(200, res)
      assert.equal("alice", res.headers["x-consumer"])
      assert.equal("k1", res.headers["x-credential"])
      res = client:get("/getters")
      assert.res_status(200, res)
    end)

    it("gw.router.get_route / get_service", function()
      local res = client:get("/router")
      local req = assert.request(res)
      assert.equal("router", req.has.header("x-route"))
      assert.equal("/router", req.has.header("x-route-path"))
      assert.equal("svc-a", req.has.header("x-service"))
      assert.equal(tostring(up[1]), req.has.header("x-service-port"))
    end)

    it("gw.sleep in access does not block other requests", function()
      local slow, fast = helpers.proxy_client(), helpers.proxy_client()
      local t0 = socket.gettime()
      assert(slow:raw("GET /sleep?s=0.5 HTTP/1.1\r\nHost: x\r\n\r\n"))
      socket.sleep(0.05)
      assert(fast:raw("GET /sleep HTTP/1.1\r\nHost: x\r\n\r\n"))
      local readable = socket.select({ slow.sock, fast.sock }, nil, 3)
      assert.equal(fast.sock, readable[1])
      assert.is_nil(readable[slow.sock])
      local fres = assert(fast:read_response())
      assert.res_status(200, fres)
      assert.is_true(socket.gettime() - t0 < 0.4)
      local sres = assert(slow:read_response())
      assert.res_status(200, sres)
      assert.equal("0.5", json(sres).slept)
      assert.is_true(socket.gettime() - t0 >= 0.45)
      slow:close()
      fast:close()
    end)
  end)

  describe("timers", function()
    lazy_setup(function()
      helpers.start_gw({ config = gw_config({
        services = { { name = "s", url = "http://127.0.0.1:" .. up[1], routes = {
          { name = "timers", paths = { "/timers" }, plugins = { { name = "timers" } } },
        } } },
      }) })
    end)

    it("gw.timer.at and gw.timer.every started from init_worker run in the worker", function()
      helpers.wait_until(function()
        local res = client:get("/timers")
        local d = json(res)
        return d.at == "xy:timer" and d.at_slept == true and (d.every or 0) >= 3
      end, 5)
      local d1 = json(client:get("/timers"))
      socket.sleep(0.3)
      local d2 = json(client:get("/timers"))
      assert.is_true(d2.every - d1.every >= 3, "every: " .. d1.every .. " -> " .. d2.every)
    end)

    it("a failing timer is logged with its traceback; the worker goes on", function()
      assert.logfile().has.line("timer failed: .*timers/handler%.lua:%d+: timer boom")
      assert.logfile().has.line("timers/handler%.lua:%d+: in function 'inner'")
      assert.res_status(200, client:get("/timers"))
    end)

    it("pending timers run with premature = true when the worker stops (reload)", function()
      local d = json(client:get("/timers"))
      local pid = d.pid
      assert.is_nil(d.premature)
      helpers.reload_gw()
      helpers.wait_until(function() return not helpers.pid_alive(pid) end, 5)
      client = helpers.proxy_client()
      d = json(client:get("/timers?pid=" .. pid))
      assert.equal("true", d.premature)
      assert.equal(true, d.every_premature)
    end)
  end)
end)
