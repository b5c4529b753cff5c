-- basic-auth (integration): a real gw with consumers in its YAML, in front of a mock upstream.
local helpers = require "spec.helpers"
local auth = require "gw.auth"
local b64 = require("mime").b64

local YAML = [[
_format_version: "3.0"
gw:
  listen: ["127.0.0.1:{PROXY_PORT}"]
  admin_listen: "127.0.0.1:{ADMIN_PORT}"
  workers: 1

consumers:
  - username: alice
    custom_id: alice-42
    basicauth_credentials:
      - username: alice
        password: "correct horse"
  - username: carol
    basicauth_credentials:
      - username: carol
        password_hash: "{CAROL_HASH}"   # precomputed: no plain password in the file
  - username: guest

services:
  - name: api
    url: http://127.0.0.1:{UP}
    plugins:
      - name: basic-auth
        config: { realm: api }
    routes:
      - name: api
        paths: ["/api"]
      - name: hidden
        paths: ["/hidden"]
        plugins:
          - name: basic-auth
            config: { hide_credentials: true }
  - name: public
    url: http://127.0.0.1:{UP}
    routes:
      - name: public
        paths: ["/public"]
        plugins:
          - name: basic-auth
            config: { anonymous: guest }
]]

local function basic(user, pass) return "Basic " .. b64(user .. ":" .. pass) end

local function echo(res)
  local body = assert(helpers.json_decode(res.body), "not JSON: " .. tostring(res.body))
  local h = {}
  for k, v in pairs(body.headers or {}) do h[k:lower()] = v end
  body.h = h
  return body
end

describe("basic-auth (integration)", function()
  local client

  lazy_setup(function()
    local up = helpers.start_mock_upstream{ name = "up" }
    helpers.start_gw{ yaml = YAML, vars = { UP = up[1], CAROL_HASH = auth.hash_password("carol's pw") } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("accepts the right password and tells the upstream who called", function()
    local res = client:get("/api/x", { headers = { Authorization = basic("alice", "correct horse") } })
    assert.res_status(200, res)
    local e = echo(res)
    assert.equal("alice", e.h["x-consumer-username"])
    assert.equal("alice-42", e.h["x-consumer-custom-id"])
    assert.matches("^%x+%-", e.h["x-consumer-id"])
    assert.equal("alice", e.h["x-credential-identifier"])
    assert.is_nil(e.h["x-anonymous-consumer"])
    assert.is_not_nil(e.h["authorization"])
  end)

  it("accepts a password given as password_hash", function()
    local res = client:get("/api/x", { headers = { Authorization = basic("carol", "carol's pw") } })
    assert.res_status(200, res)
    assert.equal("carol", echo(res).h["x-consumer-username"])
    assert.res_status(401, client:get("/api/x", { headers = { Authorization = basic("carol", "carol") } }))
  end)

  it("answers 401 JSON with WWW-Authenticate: Basic realm", function()
    local res = client:get("/api/x")
    assert.same({ message = "Unauthorized" }, helpers.json_decode(assert.res_status(401, res)))
    assert.equal('Basic realm="api"', res.headers["www-authenticate"])

    res = client:get("/api/x", { headers = { Authorization = basic("alice", "wrong horse") } })
    assert.same({ message = "Invalid authentication credentials" }, helpers.json_decode(assert.res_status(401, res)))
    assert.equal('Basic realm="api"', res.headers["www-authenticate"])
  end)

  it("answers 401, never 500, to malformed Authorization headers", function()
    for _, value in ipairs({
      "", "Basic", "Basic ", "Basic !!!!", "Basic ====", "Basic YQ=", "Basic " .. b64("no-colon"),
      "Basic " .. b64(":pw"), "Basic " .. b64("alice:correct horse") .. "garbage", "Digest x=1",
      "Bearer " .. b64("alice:correct horse"), "Basic " .. b64("\0\1\2:\255"), "Basic " .. string.rep("QUFB", 1500),
      "Basic\t" .. b64("alice:wrong"), "basic" .. b64("alice:correct horse"),
    }) do
      local res = client:get("/api/x", { headers = { Authorization = value } })
      assert.equal(401, res.status, value)
      assert.equal('Basic realm="api"', res.headers["www-authenticate"])
      assert.is_table(helpers.json_decode(res.body))
    end
  end)

  it("hide_credentials (route config over the service's) keeps the password from the upstream", function()
    local res = client:get("/hidden/x", { headers = { Authorization = basic("alice", "correct horse") } })
    assert.res_status(200, res)
    local e = echo(res)
    assert.equal("alice", e.h["x-consumer-username"])
    assert.is_nil(e.h["authorization"])
    res = client:get("/hidden/x")
    assert.res_status(401, res)
    assert.equal('Basic realm="service"', res.headers["www-authenticate"])   -- the route's own config
  end)

  it("falls back to the anonymous consumer on another service", function()
    local res = client:get("/public/x", { headers = { Authorization = "Basic %%%" } })
    assert.res_status(200, res)
    local e = echo(res)
    assert.equal("true", e.h["x-anonymous-consumer"])
    assert.equal("guest", e.h["x-consumer-username"])
    res = client:get("/public/x", { headers = { Authorization = basic("alice", "correct horse") } })
    assert.equal("alice", echo(res).h["x-consumer-username"])
  end)

  it("does not show passwords or hashes through the admin API's consumer list", function()
    local admin = helpers.admin_client()
    local res = admin:get("/consumers")
    local body = assert.res_status(200, res)
    admin:close()
    assert.not_matches("correct horse", body, 1, true)
    assert.not_matches("sha256$", body, 1, true)
  end)
end)
