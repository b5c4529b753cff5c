-- correlation-id: unit (UUIDs, the handler on gw.test.context) and a real gw where the same id
-- reaches the upstream, comes back to the client, and shows in the access log and error log.
local helpers = require "spec.helpers"
local cjson = require "cjson"

local handler = dofile(helpers.repo .. "/plugins/correlation-id/handler.lua")
local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

local function conf(t)
  local c, errs = helpers.validate_plugin_config("correlation-id", t or {})
  assert(c, errs and table.concat(errs, "\n"))
  return c
end

describe("correlation-id (unit)", function()
  it("makes version 4 UUIDs, all different", function()
    local seen = {}
    for _ = 1, 10000 do
      local u = handler._uuid4()
      assert.matches(UUID, u)
      assert.is_nil(seen[u])
      seen[u] = true
    end
  end)

  it("generates an id, sends it upstream, makes it the request id, echoes it", function()
    local c = conf()
    local ctx = gw.test.context{}
    ctx:run(handler, "rewrite", c)
    local id = ctx:upstream_header("X-Request-ID")
    assert.matches(UUID, id)
    local got
    ctx:run({ access = function() got = gw.request.get_id() end }, "access")
    assert.equal(id, got)
    ctx:set_response(200, {})
    ctx:run(handler, "header_filter", c)
    assert.equal(id, ctx:response_header("X-Request-ID"))
  end)

  it("keeps a well-formed incoming id; replaces a malformed one; ignores it without trust_incoming", function()
    local ctx = gw.test.context{ headers = { ["X-Request-ID"] = "abc-123" } }
    ctx:run(handler, "rewrite", conf())
    assert.equal("abc-123", ctx:upstream_header("X-Request-ID"))
    ctx = gw.test.context{ headers = { ["X-Request-ID"] = "has space" } }
    ctx:run(handler, "rewrite", conf())
    assert.matches(UUID, ctx:upstream_header("X-Request-ID"))
    ctx = gw.test.context{ headers = { ["X-Request-ID"] = string.rep("a", 64) } }
    ctx:run(handler, "rewrite", conf())
    assert.matches(UUID, ctx:upstream_header("X-Request-ID"))
    ctx = gw.test.context{ headers = { ["X-Request-ID"] = "abc-123" } }
    ctx:run(handler, "rewrite", conf{ trust_incoming = false })
    assert.matches(UUID, ctx:upstream_header("X-Request-ID"))
  end)

  it("uuid#counter: one UUID per worker and a counter", function()
    local c = conf{ generator = "uuid#counter", header_name = "Kong-Request-ID" }
    local ids = {}
    for i = 1, 3 do
      local ctx = gw.test.context{}
      ctx:run(handler, "rewrite", c)
      ids[i] = ctx:upstream_header("Kong-Request-ID")
    end
    local base = ids[1]:match("^(.*)#%d+$")
    assert.matches(UUID, base)
    local n1 = tonumber(ids[1]:match("#(%d+)$"))
    assert.equal(base .. "#" .. (n1 + 1), ids[2])
    assert.equal(base .. "#" .. (n1 + 2), ids[3])
  end)

  it("config errors", function()
    assert.is_nil(helpers.validate_plugin_config("correlation-id", { generator = "tracker" }))
    assert.is_nil(helpers.validate_plugin_config("correlation-id", { header_name = "bad header" }))
  end)
end)

describe("correlation-id (integration)", function()
  local up, client, access_log

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "cid" }
    access_log = os.tmpname()
    helpers.start_gw{ config = {
      gw = { workers = 2, access_log = access_log, access_log_format = "$request_id $status $uri",
             plugins_path = { helpers.repo .. "/spec/fixtures/plugins" } },
      services = {
        { name = "s", url = "http://127.0.0.1:" .. up[1], routes = { { name = "r", paths = { "/s" } } },
          plugins = { { name = "code", config = { access = "gw.log.notice('seen by a plugin')" } } } },
        { name = "quiet", url = "http://127.0.0.1:" .. up[1], routes = { { name = "q", paths = { "/quiet" } } },
          plugins = { { name = "correlation-id", config = { echo_downstream = false } } } },
      },
      plugins = { { name = "correlation-id" } },
    } }
  end)
  lazy_teardown(function() helpers.stop_all(); os.remove(access_log) end)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("the upstream and the client get the same generated id; logs show it", function()
    local res = client:get("/s/x")
    local j = cjson.decode(assert.res_status(200, res))
    local id = res.headers["x-request-id"]
    assert.matches(UUID, id)
    assert.equal(id, j.headers["x-request-id"])
    assert(helpers.wait_until(function()
      local text = helpers.read_file(access_log) or ""
      return text:find(id .. " 200 /s/x", 1, true)
    end, 5))
    assert(helpers.wait_until(function()
      return helpers.gw_log():find("seen by a plugin, request: " .. id, 1, true)
    end, 5))
  end)

  it("keeps the client's id", function()
    local res = client:get("/s/y", { headers = { ["X-Request-ID"] = "client-chosen-1" } })
    local j = cjson.decode(assert.res_status(200, res))
    assert.equal("client-chosen-1", res.headers["x-request-id"])
    assert.equal("client-chosen-1", j.headers["x-request-id"])
  end)

  it("echo_downstream false: upstream only (a route's config wins over the global one)", function()
    local res = client:get("/quiet/x")
    local j = cjson.decode(assert.res_status(200, res))
    assert.matches(UUID, j.headers["x-request-id"])
    assert.is_nil(res.headers["x-request-id"])
  end)

  it("gw's own answers carry it too (no route: 404)", function()
    local res = client:get("/nowhere")
    assert.res_status(404, res)
    assert.matches(UUID, res.headers["x-request-id"])
  end)
end)

describe("correlation-id README", function()
  local readme = helpers.readme("correlation-id")

  it("the YAML compiles and runs: the id in the response and in the access log line", function()
    helpers.assert_yaml_compiles(readme.yamls[1], readme.label)
    local up = helpers.start_mock_upstream{ name = "cid-readme" }
    local log = os.tmpname()
    finally(function() helpers.stop_all(); os.remove(log) end)
    helpers.start_gw{ yaml = helpers.local_gw_yaml(readme.yamls[1], { workers = 1, replace = {
      ["127%.0%.0%.1:9000"] = "127.0.0.1:" .. up[1], ["/var/log/gw/access%.log"] = log } }) }
    local cl = helpers.proxy_client()
    local res = cl:get("/api/users")
    cl:close()
    assert.res_status(200, res)
    local id = res.headers["x-request-id"]
    assert.matches(UUID, id)
    assert(helpers.wait_until(function()
      local line = (helpers.read_file(log) or ""):match("[^\n]+")
      return line and line:match("^%d+%-%d+%-%d+T[%d:.]+Z " .. id:gsub("%-", "%%-") .. " 200 GET /api/users [%d.]+$")
    end, 5))
  end)
end)
