-- The admin API (served by the master): status, config read and replace, reload, views, token.
local helpers = require "spec.helpers"
local cjson = require "cjson"

local function config(extra_route)
  local routes = { { name = "a", paths = { "/a" } } }
  if extra_route then routes[#routes + 1] = { name = "b", paths = { "/b" } } end
  return {
    _format_version = "3.0",
    services = { { name = "echo", url = "echo://", routes = routes } },
  }
end

describe("admin API", function()
  local gw, admin, proxy

  lazy_setup(function()
    gw = helpers.start_gw{ config = config(false) }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function()
    admin = helpers.admin_client()
    proxy = helpers.proxy_client()
  end)
  after_each(function()
    admin:close()
    proxy:close()
  end)

  it("GET /status reports version, generation, config hash and workers", function()
    local st = assert.jsonbody(admin:get("/status"))
    assert.equal("0.1.0", st.version)
    assert.is_number(st.generation)
    assert.matches("^%x+$", st.config_hash)
    assert.equal(1, #st.workers)
    assert.is_number(st.workers[1].pid)
    assert.is_number(st.workers[1].lua_memory_kb)
    assert.is_true(st.last_reload.ok)
  end)

  it("GET /config returns the running config as JSON, and as YAML on request", function()
    local c = assert.jsonbody(admin:get("/config"))
    assert.equal("echo", c.services[1].name)
    local res = admin:get("/config", { headers = { Accept = "application/yaml" } })
    local body = assert.res_status(200, res)
    assert.matches("name: echo", body, 1, true)
  end)

  it("POST /config with errors answers 400 listing them and keeps the running config", function()
    local res = admin:post("/config", { body = "_format_version: '3.0'\nservices:\n  - name: x\n    url: ftp://h\n",
                                        headers = { ["Content-Type"] = "application/yaml" } })
    local body = assert.res_status(400, res)
    local j = cjson.decode(body)
    assert.matches("POST /config:4:10: services%[0%]%.url: ", j.errors[1])
    assert.res_status(200, proxy:get("/a"))
  end)

  it("POST /config applies a new config atomically; the identical one is a no-op", function()
    local res = admin:post("/config", { body = cjson.encode(config(true)),
                                        headers = { ["Content-Type"] = "application/json" } })
    assert.res_status(201, res)
    helpers.wait_until(function()
      local c = helpers.proxy_client()
      local r = c:get("/b")
      c:close()
      return r and r.status == 200
    end, 5)
    res = admin:post("/config", { body = cjson.encode(config(true)),
                                  headers = { ["Content-Type"] = "application/json" } })
    local j = cjson.decode(assert.res_status(200, res))
    assert.equal("unchanged", j.message)
  end)

  it("serves read-only views", function()
    local routes = assert.jsonbody(admin:get("/routes"))
    assert.truthy(#routes.data >= 1)
    local services = assert.jsonbody(admin:get("/services"))
    assert.equal("echo", services.data[1].name)
    local avail = assert.jsonbody(admin:get("/plugins/available"))
    local names = table.concat(avail.data, ",")
    assert.matches("ab-routing", names, 1, true)
    -- an empty list is a JSON array, not an object
    assert.equal('{"data":[]}', assert.res_status(200, admin:get("/consumers")))
    assert.res_status(404, admin:get("/nope"))
  end)

  it("gw reload (CLI) asks the running gw to reload, like POST /reload", function()
    local before = assert.jsonbody(admin:get("/status")).generation
    local rc, out = helpers.execute(helpers.gw_bin .. " reload -c " .. gw.config_file)
    assert.equal(0, rc, out)
    local gen = tonumber(out:match("^reloaded: generation (%d+)\n$"))
    assert.truthy(gen, out)
    assert.is_true(gen > before)
    assert.equal(gen, assert.jsonbody(admin:get("/status")).generation)
  end)

  it("POST /reload re-reads the config file", function()
    local before = assert.jsonbody(admin:get("/status")).generation
    local j = assert.jsonbody(admin:post("/reload", {}))
    assert.equal("reloaded", j.message)
    assert.is_true(j.generation > before)
  end)
end)

describe("admin API with admin_token", function()
  lazy_setup(function()
    local c = config(false)
    c.gw = { admin_token = "s3cret" }
    helpers.start_gw{ config = c }
  end)
  lazy_teardown(helpers.stop_all)

  it("answers 401 without the bearer token and 200 with it", function()
    local admin = helpers.admin_client()
    assert.res_status(401, admin:get("/status"))
    assert.res_status(200, admin:get("/status", { headers = { Authorization = "Bearer s3cret" } }))
    admin:close()
  end)

  it("gw check refuses a non-loopback admin_listen without a token", function()
    local rc, out = helpers.gw_check('_format_version: "3.0"\ngw:\n  admin_listen: "0.0.0.0:8001"\n')
    assert.equal(1, rc)
    assert.matches("gw%.admin_listen: a non%-loopback admin_listen requires gw%.admin_token", out)
  end)
end)

describe("admin API upstream health", function()
  local up, closed
  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "healthy" }
    closed = helpers.get_free_port()   -- nothing listens there
    helpers.start_gw{ config = {
      upstreams = { { name = "pool", healthchecks = { passive = { failures = 1, cooldown = 30 } },
                      targets = { { target = "127.0.0.1:" .. up[1] }, { target = "127.0.0.1:" .. closed } } } },
      services = { { name = "s", url = "http://pool", routes = { { paths = { "/" } } } } },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  it("GET /upstreams/{name}/health shows the target the workers skip as UNHEALTHY", function()
    local admin = helpers.admin_client()
    local h = assert.jsonbody(admin:get("/upstreams/pool/health"))
    for _, t in ipairs(h.data) do assert.equal("HEALTHY", t.health) end
    local c = helpers.proxy_client()
    for _ = 1, 4 do assert.res_status(200, c:get("/x")) end   -- retries hide the dead target
    c:close()
    local dead = "127.0.0.1:" .. closed
    helpers.wait_until(function()
      local j = assert.jsonbody(admin:get("/upstreams/pool/health"))
      for _, t in ipairs(j.data) do
        if t.target == dead then return t.health == "UNHEALTHY" and t.down_workers == 1 end
      end
    end, 5)
    local j = assert.jsonbody(admin:get("/upstreams/pool/health"))
    for _, t in ipairs(j.data) do
      if t.target ~= dead then assert.equal("HEALTHY", t.health) end
    end
    assert.res_status(404, admin:get("/upstreams/nope/health"))
    admin:close()
  end)
end)
