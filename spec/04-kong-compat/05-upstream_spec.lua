-- kong-compat against Kong's own plugins: with KONG_SOURCE_DIR set to a Kong 3.x source checkout
-- (kong-compat/check-upstream.sh sets it), gw loads Kong's bundled plugins from that checkout,
-- unmodified (gw.kong_plugins_path = the checkout), and each request below checks that a plugin
-- does its job. Without KONG_SOURCE_DIR (CI has no checkout) the whole file is pending.
local helpers = require "spec.helpers"
local cjson = require "cjson"

local KONG = os.getenv("KONG_SOURCE_DIR")
if KONG == "" then KONG = nil end

local PLUGINS = { "correlation-id", "request-termination", "cors", "ip-restriction",
                  "request-transformer", "response-transformer", "request-size-limiting",
                  "rate-limiting", "key-auth", "acl", "bot-detection", "pre-function", "post-function" }

if not KONG then
  describe("kong-compat: Kong's own bundled plugins", function()
    pending("skipped: set KONG_SOURCE_DIR to a Kong 3.x source checkout (or run " ..
            "kong-compat/check-upstream.sh KONG_SOURCE_DIR) to run Kong's plugins on gw")
  end)
  return
end

local function route(name, plugin, config, extra)
  local r = { name = name, paths = { "/" .. name }, plugins = { { name = plugin, config = config } } }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

describe("kong-compat: Kong's own bundled plugins from " .. KONG, function()
  local client

  lazy_setup(function()
    for _, p in ipairs(PLUGINS) do
      local f = io.open(KONG .. "/kong/plugins/" .. p .. "/handler.lua")
      assert(f, "not a Kong source checkout (no kong/plugins/" .. p .. "/handler.lua): " .. KONG)
      f:close()
    end
    helpers.start_gw{ config = {
      gw = { kong_plugins_path = { KONG } },
      consumers = {
        { username = "alice", custom_id = "a-1", keyauth_credentials = { { key = "alice-key" } },
          acls = { { group = "admins" } } },
        { username = "bob", keyauth_credentials = { { key = "bob-key" } } },
        { username = "anon" },
      },
      services = { {
        name = "echo", url = "echo://",
        routes = {
          route("cid", "correlation-id", { echo_downstream = true }),
          route("cid-uuid", "correlation-id", { generator = "uuid", header_name = "X-Corr" }),
          route("term", "request-termination", { status_code = 418, message = "teapot" }),
          route("term-body", "request-termination",
                { status_code = 200, body = "<ok/>", content_type = "application/xml" }),
          route("term-echo", "request-termination", { echo = true, status_code = 200, trigger = "X-Trigger" }),
          route("cors", "cors", { origins = { "http://a.example", [[https://.*\.b\.example]] },
                                  credentials = true, max_age = 60, exposed_headers = { "X-Out" } }),
          route("ipr-deny", "ip-restriction", { deny = { "127.0.0.0/8" } }),
          route("ipr-allow", "ip-restriction", { allow = { "127.0.0.1", "::1" } }),
          route("ipr-other", "ip-restriction", { allow = { "10.0.0.0/8" }, status = 401, message = "go away" }),
          route("reqt", "request-transformer", {
            remove = { headers = { "X-Drop" }, querystring = { "secret" } },
            rename = { headers = { "X-Old:X-New" } },
            replace = { headers = { "X-Rep:replaced" } },
            add = { headers = { "X-Added:yes", "X-Tpl:$(query_params.who)" }, querystring = { "q:1" },
                    body = { "b:2" } },
            append = { headers = { "X-App:one" } },
          }),
          route("respt", "response-transformer", {
            remove = { json = { "headers" }, headers = { "X-Gone" } },
            add = { headers = { "X-Resp:1" }, json = { "added:true", "n:42" }, json_types = { "boolean", "number" } },
            replace = { json = { "method:PUT" } },
          }),
          route("size", "request-size-limiting", { allowed_payload_size = 10, size_unit = "bytes" }),
          route("size-cl", "request-size-limiting", { allowed_payload_size = 1, require_content_length = true }),
          route("rl", "rate-limiting", { minute = 3, policy = "local", limit_by = "ip" }),
          route("rl-hidden", "rate-limiting", { second = 1, minute = 100, policy = "local",
                                                hide_client_headers = true }),
          route("key", "key-auth", { hide_credentials = true }),
          route("key-anon", "key-auth", { anonymous = "anon", key_names = { "x-key" } }),
          { name = "acl", paths = { "/acl" }, plugins = {
            { name = "key-auth", config = {} },
            { name = "acl", config = { allow = { "admins" } } },
          } },
          route("bot", "bot-detection", { deny = { "evil-agent" } }),
          { name = "fn", paths = { "/fn" }, plugins = {
            { name = "pre-function", config = { access = {
              "kong.service.request.set_header('X-Pre', kong.request.get_query_arg('v') or 'none')",
              "if kong.request.get_query_arg('stop') then return kong.response.exit(409, { stopped = true }) end",
            } } },
            { name = "post-function", config = { header_filter = {
              "return function() kong.response.set_header('X-Post', 'seen') end",
            } } },
          } },
        },
      } },
    } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  describe("correlation-id", function()
    it("adds an id upstream and echoes it (uuid#counter), keeps a client's", function()
      local res = client:get("/cid")
      local body = cjson.decode(assert.res_status(200, res))
      local id = res.headers["Kong-Request-ID"]
      assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+#%d+$", id)
      assert.equal(id, body.headers["kong-request-id"])
      res = client:get("/cid", { headers = { ["Kong-Request-ID"] = "mine" } })
      assert.equal("mine", cjson.decode(assert.res_status(200, res)).headers["kong-request-id"])
      res = client:get("/cid-uuid")
      assert.matches("^%x+%-%x+%-4%x+%-%x+%-%x+$", cjson.decode(assert.res_status(200, res)).headers["x-corr"])
    end)
  end)

  describe("request-termination", function()
    it("answers with the status and message, or a raw body", function()
      local res = client:get("/term")
      assert.same({ message = "teapot" }, cjson.decode(assert.res_status(418, res)))
      res = client:get("/term-body")
      assert.equal("<ok/>", assert.res_status(200, res))
      assert.equal("application/xml", res.headers["Content-Type"])
    end)

    it("echo with a trigger: only requests carrying it are echoed", function()
      local res = client:get("/term-echo?a=1")
      assert.equal("echo", cjson.decode(assert.res_status(200, res)).service)   -- passed through
      res = client:get("/term-echo?a=1", { headers = { ["X-Trigger"] = "1" } })
      local echo = cjson.decode(assert.res_status(200, res))
      assert.equal("GET", echo.request.method)
      assert.same({ a = "1" }, echo.request.query)
      assert.equal("term-echo", echo.matched_route.name)
      assert.is_string(echo.kong.node_id)
    end)
  end)

  describe("cors", function()
    it("answers a preflight itself", function()
      local res = client:send{ method = "OPTIONS", path = "/cors", headers = {
        Origin = "http://a.example", ["Access-Control-Request-Method"] = "PUT" } }
      assert.res_status(200, res)
      assert.equal("http://a.example", res.headers["Access-Control-Allow-Origin"])
      assert.equal("true", res.headers["Access-Control-Allow-Credentials"])
      assert.equal("60", res.headers["Access-Control-Max-Age"])
      assert.matches("PUT", res.headers["Access-Control-Allow-Methods"], 1, true)
    end)

    it("allows listed and matching origins on a request, and no other", function()
      local res = client:get("/cors", { headers = { Origin = "https://x.b.example" } })
      assert.res_status(200, res)
      assert.equal("https://x.b.example", res.headers["Access-Control-Allow-Origin"])
      assert.equal("X-Out", res.headers["Access-Control-Expose-Headers"])
      res = client:get("/cors", { headers = { Origin = "http://evil.example" } })
      assert.res_status(200, res)
      assert.is_nil(res.headers["Access-Control-Allow-Origin"])
    end)
  end)

  describe("ip-restriction", function()
    it("denies, allows, and uses the configured status and message", function()
      local res = client:get("/ipr-deny")
      -- "IP address not allowed: 127.0.0.1" (3.1 and later), "Your IP address is not allowed" (3.0)
      assert.matches("IP address.* not allowed", cjson.decode(assert.res_status(403, res)).message)
      assert.res_status(200, client:get("/ipr-allow"))
      assert.equal("go away", cjson.decode(assert.res_status(401, client:get("/ipr-other"))).message)
    end)
  end)

  describe("request-transformer", function()
    it("removes, renames, replaces, adds and appends headers, query and body fields", function()
      local res = client:post("/reqt?secret=1&who=bob", {
        headers = { ["X-Drop"] = "1", ["X-Old"] = "o", ["X-Rep"] = "r", ["X-App"] = "zero",
                    ["Content-Type"] = "application/json" },
        body = '{"a":1}' })
      local raw = assert.res_status(200, res)
      local up = cjson.decode(raw)
      local h = up.headers
      assert.is_nil(h["x-drop"])
      assert.is_nil(h["x-old"])
      assert.equal("o", h["x-new"])
      assert.equal("replaced", h["x-rep"])
      assert.equal("yes", h["x-added"])
      assert.equal("bob", h["x-tpl"])                          -- a $(query_params.who) template
      assert.matches('"x-app":"zero"', raw, 1, true)   -- the echo lists both lines
      assert.matches('"x-app":"one"', raw, 1, true)
      assert.equal("q=1&who=bob", up.query)
      assert.same({ a = 1, b = "2" }, cjson.decode(up.body))
    end)
  end)

  describe("response-transformer", function()
    it("changes response headers and JSON body fields", function()
      local res = client:get("/respt")
      local body = cjson.decode(assert.res_status(200, res))
      assert.equal("1", res.headers["X-Resp"])
      assert.is_nil(body.headers)
      assert.equal(true, body.added)
      assert.equal(42, body.n)
      assert.equal("PUT", body.method)
    end)
  end)

  describe("request-size-limiting", function()
    it("refuses bodies over the limit, and asks for a length when there is no body framing", function()
      assert.res_status(200, client:post("/size", { body = "0123456789" }))
      local res = client:post("/size", { body = "0123456789a" })
      assert.equal("Request size limit exceeded", cjson.decode(assert.res_status(413, res)).message)
      res = client:send{ method = "GET", path = "/size-cl" }           -- no Content-Length, not chunked
      assert.equal("A valid Content-Length header is required", cjson.decode(assert.res_status(411, res)).message)
      res = client:send{ method = "POST", path = "/size-cl", chunks = { "abc" } }   -- chunked: read, counted
      assert.res_status(200, res)
    end)
  end)

  describe("rate-limiting (local policy)", function()
    it("counts per minute in a shared dict and refuses over the limit", function()
      local remaining = {}
      for i = 1, 3 do
        local res = client:get("/rl")
        assert.res_status(200, res)
        assert.equal("3", res.headers["X-RateLimit-Limit-Minute"])
        remaining[i] = tonumber(res.headers["X-RateLimit-Remaining-Minute"])
      end
      assert.same({ 2, 1, 0 }, remaining)
      local res = client:get("/rl")
      assert.equal("API rate limit exceeded", cjson.decode(assert.res_status(429, res)).message)
      assert.truthy(tonumber(res.headers["Retry-After"]))
    end)

    it("hides the headers", function()
      local res = client:get("/rl-hidden")
      assert.is_nil(res.headers["X-RateLimit-Limit-Second"])
      helpers.wait_until(function()
        res = client:get("/rl-hidden")
        return res.status == 429
      end, 5)
      assert.is_nil(res.headers["X-RateLimit-Limit-Second"])
      assert.is_nil(res.headers["Retry-After"])
    end)
  end)

  describe("key-auth", function()
    it("authenticates by key against the consumers of gw's config", function()
      local res = client:get("/key")
      assert.equal("No API key found in request", cjson.decode(assert.res_status(401, res)).message)
      assert.matches("^Key", res.headers["WWW-Authenticate"])
      assert.res_status(401, client:get("/key?apikey=wrong"))
      res = client:get("/key?apikey=alice-key&x=1")
      local up = cjson.decode(assert.res_status(200, res))
      assert.equal("alice", up.headers["x-consumer-username"])
      assert.equal("a-1", up.headers["x-consumer-custom-id"])
      assert.equal("x=1", up.query)                                -- hide_credentials
      res = client:get("/key", { headers = { apikey = "alice-key" } })
      up = cjson.decode(assert.res_status(200, res))
      assert.is_nil(up.headers.apikey)
    end)

    it("with Kong's acl: groups from gw's consumers", function()
      assert.res_status(200, client:get("/acl?apikey=alice-key"))
      local res = client:get("/acl?apikey=bob-key")
      assert.equal("You cannot consume this service", cjson.decode(assert.res_status(403, res)).message)
    end)

    it("falls back to the anonymous consumer", function()
      local up = cjson.decode(assert.res_status(200, client:get("/key-anon")))
      assert.equal("anon", up.headers["x-consumer-username"])
      assert.equal("true", up.headers["x-anonymous-consumer"])
      up = cjson.decode(assert.res_status(200, client:get("/key-anon", { headers = { ["x-key"] = "alice-key" } })))
      assert.equal("alice", up.headers["x-consumer-username"])
    end)
  end)

  describe("bot-detection", function()
    it("lets browsers through, refuses known bots and the deny list", function()
      assert.res_status(200, client:get("/bot", { headers = { ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64)" } }))
      assert.res_status(403, client:get("/bot", { headers = { ["User-Agent"] = "Googlebot/2.1" } }))
      assert.res_status(403, client:get("/bot", { headers = { ["User-Agent"] = "an evil-agent" } }))
    end)
  end)

  describe("pre-function and post-function", function()
    it("run sandboxed Lua with the PDK in their phases", function()
      local res = client:get("/fn?v=42")
      local up = cjson.decode(assert.res_status(200, res))
      assert.equal("42", up.headers["x-pre"])
      assert.equal("seen", res.headers["X-Post"])
      res = client:get("/fn?stop=1")
      assert.same({ stopped = true }, cjson.decode(assert.res_status(409, res)))
    end)
  end)
end)
