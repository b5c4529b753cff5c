-- acl (integration): key-auth / basic-auth then acl in a real gw; per-route and per-service
-- configs; the groups header the upstream receives.
local helpers = require "spec.helpers"
local b64 = require("mime").b64

local YAML = [[
_format_version: "3.0"
gw:
  listen: ["127.0.0.1:{PROXY_PORT}"]
  admin_listen: "127.0.0.1:{ADMIN_PORT}"
  workers: 1

consumers:
  - username: admin
    keyauth_credentials: [{ key: admin-key }]
    basicauth_credentials: [{ username: admin, password: admin-pw }]
    acls: [{ group: admins }, { group: users }]
  - username: user
    keyauth_credentials: [{ key: user-key }]
    acls: [{ group: users }]
  - username: banned
    keyauth_credentials: [{ key: banned-key }]
    acls: [{ group: users }, { group: banned }]
  - username: guest                  # the anonymous consumer: no groups

services:
  - name: api
    url: http://127.0.0.1:{UP}
    plugins:
      - name: key-auth
      - name: acl                    # every route of the service: users, but not banned
        config: { allow: [users], deny: [banned] }
    routes:
      - name: users
        paths: ["/users"]
      - name: admin                  # this route: admins only, groups hidden from the upstream
        paths: ["/admin"]
        plugins:
          - name: acl
            config: { allow: [admins], hide_groups_header: true }
      - name: maybe-anonymous
        paths: ["/maybe-anonymous"]
        plugins:
          - name: key-auth
            config: { anonymous: guest }
  - name: basic
    url: http://127.0.0.1:{UP}
    routes:
      - name: basic
        paths: ["/basic"]
        plugins:
          - name: basic-auth
          - name: acl
            config: { allow: [admins] }
  - name: misconfigured              # acl without an authentication plugin
    url: http://127.0.0.1:{UP}
    routes:
      - name: no-auth
        paths: ["/no-auth"]
        plugins:
          - name: acl
            config: { deny: [banned] }
]]

local function echo(res)
  local body = assert(helpers.json_decode(res.body), "not JSON: " .. tostring(res.body))
  local h = {}
  for k, v in pairs(body.headers or {}) do h[k:lower()] = v end
  body.h = h
  return body
end

local FORBIDDEN = { message = "You cannot consume this service" }

describe("acl (integration)", function()
  local client

  lazy_setup(function()
    local up = helpers.start_mock_upstream{ name = "up" }
    helpers.start_gw{ yaml = YAML, vars = { UP = up[1] } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  local function get(path, key, headers)
    headers = headers or {}
    headers.apikey = key
    return client:get(path, { headers = headers })
  end

  it("allows members of an allowed group and sends the groups upstream", function()
    local res = get("/users/x", "user-key", { ["X-Consumer-Groups"] = "admins" })
    assert.res_status(200, res)
    local e = echo(res)
    assert.equal("users", e.h["x-consumer-groups"])
    assert.equal("user", e.h["x-consumer-username"])
    assert.equal("admins, users", echo(get("/users/x", "admin-key")).h["x-consumer-groups"])
  end)

  it("denies a consumer in a denied group, even when also allowed: 403", function()
    local res = get("/users/x", "banned-key")
    assert.same(FORBIDDEN, helpers.json_decode(assert.res_status(403, res)))
  end)

  it("a route's config replaces the service's", function()
    assert.same(FORBIDDEN, helpers.json_decode(assert.res_status(403, get("/admin/x", "user-key"))))
    local res = get("/admin/x", "admin-key", { ["X-Consumer-Groups"] = "forged" })
    assert.res_status(200, res)
    assert.is_nil(echo(res).h["x-consumer-groups"])     -- hide_groups_header, and the client's is gone
  end)

  it("runs after the authentication plugin: a bad key is 401, not 403", function()
    local res = get("/users/x", "wrong")
    assert.res_status(401, res)
    assert.equal('Key realm="gw"', res.headers["www-authenticate"])
  end)

  it("judges the anonymous consumer by its groups: 403", function()
    assert.same(FORBIDDEN, helpers.json_decode(assert.res_status(403, get("/maybe-anonymous/x", nil))))
    assert.res_status(200, get("/maybe-anonymous/x", "user-key"))
  end)

  it("works behind basic-auth", function()
    local ok = client:get("/basic/x", { headers = { Authorization = "Basic " .. b64("admin:admin-pw") } })
    assert.res_status(200, ok)
    assert.equal("admins, users", echo(ok).h["x-consumer-groups"])
    assert.res_status(401, client:get("/basic/x", { headers = { Authorization = "Basic " .. b64("admin:no") } }))
  end)

  it("answers 401 when no plugin authenticated the request", function()
    local res = client:get("/no-auth/x")
    assert.same({ message = "Unauthorized" }, helpers.json_decode(assert.res_status(401, res)))
  end)
end)
