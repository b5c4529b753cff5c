-- The core pieces the edge plugins stand on, through a real gw: regex route captures, a
-- per-request body limit enforced while streaming, the client address behind trusted proxies,
-- and handler:phases_for (a body_filter an instance does not need is not entered, and the
-- response streams).
local helpers = require "spec.helpers"
local cjson = require "cjson"
local config = require "gw.config"

local FIXTURES = helpers.repo .. "/spec/fixtures/plugins"

describe("edge core #integration", function()
  local up, client

  lazy_setup(function()
    up = helpers.start_mock_upstream{ name = "edge" }
    local probe = [[
      local c = gw.request.get_uri_captures()
      local limit = tonumber(gw.request.get_header("X-Limit") or "")
      local fits = limit and gw.request.set_body_limit(limit)
      if gw.request.get_header("X-Probe") then
        return gw.response.exit(200, { named = c.named, zero = c.unnamed[0], u1 = c.unnamed[1], u2 = c.unnamed[2],
                                       fwd = gw.client.get_forwarded_ip(), fits = fits })
      end
      if fits == false then return gw.response.exit(413, { message = "declared too large" }) end
    ]]
    helpers.start_gw{ config = {
      gw = { workers = 1, plugins_path = { FIXTURES }, trusted_ips = { "127.0.0.0/8", "10.0.0.0/8" } },
      services = {
        { name = "s", url = "http://127.0.0.1:" .. up[1],
          routes = {
            { name = "rx", paths = { "~/orders/(?<id>\\d+)(/items)?$", "/plain" },
              plugins = { { name = "code", config = { access = probe } } } },
            { name = "streamed", paths = { "/streamed" },
              plugins = { { name = "body-optional" } } },
            { name = "buffered", paths = { "/buffered" },
              plugins = { { name = "body-optional", config = { upper = true } } } },
          } },
        { name = "echo", url = "echo://",
          routes = { { name = "buffered-echo", paths = { "/buffered-echo" },
                       plugins = { { name = "body-optional", config = { upper = true } } } } } },
      },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  local function probe(path, headers)
    headers = headers or {}
    headers["X-Probe"] = "1"
    return cjson.decode(assert.res_status(200, client:get(path, { headers = headers })))
  end

  describe("gw.request.get_uri_captures", function()
    it("gives the named and numbered groups of the regex path that matched", function()
      local j = probe("/orders/42/items")
      assert.same({ id = "42" }, j.named)
      assert.equal("/orders/42/items", j.zero)
      assert.same({ "42", "/items" }, { j.u1, j.u2 })
    end)
    it("marks a group that did not take part as false", function()
      local j = probe("/orders/7")
      assert.equal("7", j.named.id)
      assert.equal(false, j.u2)
    end)
    it("is empty when the route matched by a prefix path", function()
      local j = probe("/plain/x")
      assert.same({}, j.named)
      assert.is_nil(j.zero)
    end)
  end)

  describe("gw.request.set_body_limit", function()
    it("reports a declared Content-Length over the limit", function()
      local res = client:post("/orders/1", { body = string.rep("x", 20), headers = { ["X-Limit"] = "10" } })
      assert.equal("declared too large", cjson.decode(assert.res_status(413, res)).message)
    end)
    it("lets a body under the limit through", function()
      local res = client:post("/orders/1", { body = string.rep("x", 10), headers = { ["X-Limit"] = "10" } })
      assert.equal(10, cjson.decode(assert.res_status(200, res)).body_size)
    end)
    it("counts a chunked body while it streams upstream: 413 once it passes the limit", function()
      local res = client:send{ method = "POST", path = "/orders/1", headers = { ["X-Limit"] = "1000" },
                               chunks = { string.rep("a", 600), string.rep("b", 600) } }
      assert.equal("Request body too large", cjson.decode(assert.res_status(413, res)).message)
    end)
    it("streams a chunked body under the limit whole", function()
      local res = client:send{ method = "POST", path = "/orders/1", headers = { ["X-Limit"] = "1000" },
                               chunks = { string.rep("a", 400), string.rep("b", 400) } }
      local j = cjson.decode(assert.res_status(200, res))
      assert.equal(800, j.body_size)
      assert.equal("chunked", j.headers["transfer-encoding"])
    end)
  end)

  describe("gw.client.get_forwarded_ip with gw.trusted_ips", function()
    it("takes the first untrusted address from the right of X-Forwarded-For", function()
      assert.equal("203.0.113.9", probe("/plain", { ["X-Forwarded-For"] = "198.51.100.1, 203.0.113.9, 10.1.1.1" }).fwd)
    end)
    it("reads every X-Forwarded-For line", function()
      local res = assert(client:raw("GET /plain HTTP/1.1\r\nHost: t\r\nX-Probe: 1\r\n" ..
        "X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 10.0.0.2\r\n\r\n") and client:read_response())
      assert.equal("198.51.100.1", cjson.decode(assert.res_status(200, res)).fwd)
    end)
    it("takes the leftmost when every address is trusted", function()
      assert.equal("10.0.0.1", probe("/plain", { ["X-Forwarded-For"] = "10.0.0.1, 10.0.0.2" }).fwd)
    end)
    it("stops at an address that does not parse, keeping the peer", function()
      assert.equal("127.0.0.1", probe("/plain", { ["X-Forwarded-For"] = "1.2.3.4, not-an-ip" }).fwd)
    end)
    it("is the peer without the header", function()
      assert.equal("127.0.0.1", probe("/plain").fwd)
    end)
  end)

  describe("handler:phases_for", function()
    it("skips a body_filter the instance does not need: the chunked response streams", function()
      local res = client:get("/streamed/chunked/3")
      assert.res_status(200, res)
      assert.equal("streamed", res.headers["x-body-optional"])
      assert.equal("chunked", res.headers["transfer-encoding"])
      assert.is_nil(res.headers["content-length"])
    end)
    it("gw.response.skip_body_filter in header_filter: this response streams, untouched", function()
      local res = client:get("/buffered/chunked/3", { headers = { ["X-Skip"] = "1" } })
      local body = assert.res_status(200, res)
      assert.equal("skipped", res.headers["x-body-optional"])
      assert.equal("chunked", res.headers["transfer-encoding"])
      assert.is_nil(res.headers["content-length"])
      assert.not_equal(body:upper(), body)
      -- gw's own answers too
      res = client:get("/buffered-echo", { headers = { ["X-Skip"] = "1" } })
      body = assert.res_status(200, res)
      assert.not_equal(body:upper(), body)
      local upper = assert.res_status(200, client:get("/buffered-echo"))
      assert.equal(upper:upper(), upper)
    end)
    it("runs it where the config needs it: gathered, changed, sent with a Content-Length", function()
      local res = client:get("/buffered/chunked/3")
      local body = assert.res_status(200, res)
      assert.equal("upper", res.headers["x-body-optional"])
      assert.equal(tostring(#body), res.headers["content-length"])
      assert.equal(body:upper(), body)
    end)
  end)
end)

describe("edge core config", function()
  local function errors(t)
    t._format_version = "3.0"
    local c, errs = config.load_string(cjson.encode(t), "edge.json")
    assert.is_nil(c)
    return table.concat(errs, "\n")
  end

  it("rejects a bad trusted_ips entry with its path", function()
    local e = errors{ gw = { trusted_ips = { "10.0.0.0/8", "10.0.0.0/33" } } }
    assert.matches("gw.trusted_ips%[1%]: invalid prefix length /33", e)
  end)

  it("reports a phases_for that raises as an error of that plugin's config", function()
    local e = errors{ gw = { plugins_path = { FIXTURES } },
                      services = { { name = "s", url = "echo://", plugins = { { name = "body-optional", config = { fail = true } } } } } }
    assert.matches("plugins%[0%]%.config: phases_for failed: .*phases_for cannot decide", e)
  end)

  it("declares the shared dicts a plugin asks for, keeping the sizes gw.shared_dicts gives", function()
    local c = assert(config.load_string(cjson.encode{ _format_version = "3.0",
      gw = { shared_dicts = { proxy_cache = "2m" } },
      services = { { name = "s", url = "echo://", plugins = {
        { name = "rate-limiting", config = { minute = 5 } },
        { name = "proxy-cache" } } } } }, "dicts.json"))
    assert.equal(1024 * 1024, c.gw.shared_dicts.rate_limiting)
    assert.equal(2 * 1024 * 1024, c.gw.shared_dicts.proxy_cache)
    -- policy redis needs no dict
    c = assert(config.load_string(cjson.encode{ _format_version = "3.0",
      services = { { name = "s", url = "echo://", plugins = {
        { name = "rate-limiting", config = { minute = 5, policy = "redis", redis_host = "127.0.0.1" } } } } } }, "dicts.json"))
    assert.is_nil(c.gw.shared_dicts.rate_limiting)
  end)
end)
