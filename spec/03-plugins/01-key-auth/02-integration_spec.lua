-- key-auth (integration): a real gw with consumers in its YAML, in front of a mock upstream.
local helpers = require "spec.helpers"

local YAML = [[
_format_version: "3.0"
gw:
  listen: ["127.0.0.1:{PROXY_PORT}"]
  admin_listen: "127.0.0.1:{ADMIN_PORT}"
  workers: 1

consumers:
  - username: alice
    custom_id: alice-42
    keyauth_credentials:
      - key: alice-key
        id: alice-cred
  - id: 00000000-0000-4000-8000-00000000000b
    username: bob
    keyauth_credentials: [{ key: bob-key }]
  - username: guest

services:
  - name: api                        # key-auth on every route of the service
    url: http://127.0.0.1:{UP}
    plugins:
      - name: key-auth
    routes:
      - name: default
        paths: ["/default"]
      - name: hidden                 # route config wins over the service's
        paths: ["/hidden"]
        plugins:
          - name: key-auth
            config: { hide_credentials: true, key_names: [apikey, x-api-key] }
      - name: header-only
        paths: ["/header-only"]
        plugins:
          - name: key-auth
            config: { key_in_query: false, realm: header-only }
      - name: anonymous
        paths: ["/anonymous"]
        plugins:
          - name: key-auth
            config: { anonymous: guest }
      - name: body
        paths: ["/body"]
        plugins:
          - name: key-auth
            config: { key_in_body: true, hide_credentials: true }
  - name: open                       # no auth at all
    url: http://127.0.0.1:{UP}
    routes:
      - name: open
        paths: ["/open"]
]]

local function echo(res)
  local body = assert(helpers.json_decode(res.body), "not JSON: " .. tostring(res.body))
  local h = {}
  for k, v in pairs(body.headers or {}) do h[k:lower()] = v end
  body.h = h
  return body
end

describe("key-auth (integration)", function()
  local client

  lazy_setup(function()
    local up = helpers.start_mock_upstream{ name = "up" }
    helpers.start_gw{ yaml = YAML, vars = { UP = up[1] } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("lets a valid key in the header through, with the consumer headers", function()
    local res = client:get("/default/x", { headers = { apikey = "alice-key" } })
    assert.res_status(200, res)
    local e = echo(res)
    assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", e.h["x-consumer-id"])
    assert.equal("alice", e.h["x-consumer-username"])
    assert.equal("alice-42", e.h["x-consumer-custom-id"])
    assert.equal("alice-cred", e.h["x-credential-identifier"])
    assert.is_nil(e.h["x-anonymous-consumer"])
    assert.equal("alice-key", e.h["apikey"])      -- hide_credentials is off
  end)

  it("lets a valid key in the query through", function()
    local res = client:get("/default/x?apikey=bob-key&a=1")
    assert.res_status(200, res)
    local e = echo(res)
    assert.equal("00000000-0000-4000-8000-00000000000b", e.h["x-consumer-id"])
    assert.equal("bob", e.h["x-consumer-username"])
    assert.is_nil(e.h["x-consumer-custom-id"])
    assert.matches("apikey=bob-key", e.query, 1, true)
  end)

  it("answers 401 JSON with WWW-Authenticate", function()
    local res = client:get("/default/x")
    local body = assert.res_status(401, res)
    assert.same({ message = "No API key found in request" }, helpers.json_decode(body))
    assert.equal('Key realm="gw"', res.headers["www-authenticate"])
    assert.matches("application/json", res.headers["content-type"], 1, true)

    res = client:get("/default/x", { headers = { apikey = "wrong" } })
    assert.same({ message = "Invalid authentication credentials" }, helpers.json_decode(assert.res_status(401, res)))
    assert.equal('Key realm="gw"', res.headers["www-authenticate"])

    res = client:get("/default/x?apikey=a&apikey=b")
    assert.same({ message = "Duplicate API key found" }, helpers.json_decode(assert.res_status(401, res)))
  end)

  it("never answers 500 to odd keys", function()
    for _, req in ipairs({
      { path = "/default/x", headers = { apikey = "" } },
      { path = "/default/x", headers = { apikey = string.rep("k", 4000) } },
      { path = "/default/x?apikey=%00%ff%zz" },
      { path = "/default/x?apikey" },
      { path = "/default/x?apikey=" },
      { path = "/default/x?=&&&apikey=%" },
    }) do
      local res = client:get(req.path, { headers = req.headers })
      assert.equal(401, res.status, req.path)
    end
    -- spaces around a header value are not part of it (HTTP's optional whitespace)
    assert.res_status(200, client:get("/default/x", { headers = { apikey = "\t alice-key \t" } }))
  end)

  it("replaces consumer headers a client sends itself", function()
    local res = client:get("/default/x", { headers = { apikey = "bob-key", ["X-Consumer-Custom-ID"] = "forged",
                                                       ["X-Anonymous-Consumer"] = "true", ["X-Consumer-Username"] = "admin" } })
    local e = echo(res)
    assert.equal("bob", e.h["x-consumer-username"])
    assert.is_nil(e.h["x-consumer-custom-id"])
    assert.is_nil(e.h["x-anonymous-consumer"])
  end)

  it("hide_credentials strips the key from the header or the query", function()
    local res = client:get("/hidden/x", { headers = { ["X-API-Key"] = "alice-key", other = "kept" } })
    assert.res_status(200, res)
    local e = echo(res)
    assert.equal("alice", e.h["x-consumer-username"])
    assert.is_nil(e.h["x-api-key"])
    assert.equal("kept", e.h["other"])

    res = client:get("/hidden/x?a=1&apikey=alice-key&b=%2Fz")
    assert.res_status(200, res)
    e = echo(res)
    assert.equal("alice", e.h["x-consumer-username"])
    assert.equal("/x", e.path)
    assert.equal("a=1&b=%2Fz", e.query)
  end)

  it("a route can refuse keys in the query", function()
    local res = client:get("/header-only/x?apikey=alice-key")
    assert.res_status(401, res)
    assert.equal('Key realm="header-only"', res.headers["www-authenticate"])
    res = client:get("/header-only/x", { headers = { apikey = "alice-key" } })
    assert.res_status(200, res)
  end)

  it("reads and hides a key in the body", function()
    local res = client:post("/body/x", { body = { apikey = "alice-key", n = 1 } })
    assert.res_status(200, res)
    local e = echo(res)
    assert.equal("alice", e.h["x-consumer-username"])
    assert.same({ n = 1 }, helpers.json_decode(e.body))
    res = client:post("/body/x", { body = "apikey=alice-key&n=1",
                                   headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } })
    assert.res_status(200, res)
    assert.equal("n=1", echo(res).body)
    res = client:post("/body/x", { body = "{broken", headers = { ["Content-Type"] = "application/json" } })
    assert.res_status(401, res)
  end)

  it("uses the anonymous consumer when the key is missing or wrong", function()
    for _, headers in ipairs({ {}, { apikey = "wrong" } }) do
      local res = client:get("/anonymous/x", { headers = headers })
      assert.res_status(200, res)
      local e = echo(res)
      assert.equal("true", e.h["x-anonymous-consumer"])
      assert.equal("guest", e.h["x-consumer-username"])
      assert.is_nil(e.h["x-credential-identifier"])
    end
    local res = client:get("/anonymous/x", { headers = { apikey = "alice-key" } })
    local e = echo(res)
    assert.equal("alice", e.h["x-consumer-username"])
    assert.is_nil(e.h["x-anonymous-consumer"])
  end)

  it("leaves routes without the plugin open", function()
    local res = client:get("/open/x")
    assert.res_status(200, res)
    assert.is_nil(echo(res).h["x-consumer-id"])
  end)
end)
