-- A Kong declarative file as gw's config: top-level credentials and targets naming their consumer
-- or upstream (by name, id or { id = }), merged into it; key-auth, basic-auth and acl served from
-- them in a running gw; an unknown reference is an error at the entry.
local helpers = require "spec.helpers"
local config = require "gw.config"
local cjson = require "cjson"
local function ngx_b64(s) return (require("gw.jwt").base64url_encode(s):gsub("-", "+"):gsub("_", "/")) .. string.rep("=", (3 - #s % 3) % 3) end

local KONG_FILE = [[
_format_version: "3.0"
_transform: true
services:
  - name: orders
    url: http://up-orders
    routes:
      - name: orders
        paths: ["/orders"]
    plugins:
      - name: key-auth
      - name: acl
        config: { allow: [buyers] }
  - name: admin
    url: http://up-orders
    routes:
      - name: admin
        paths: ["/admin"]
    plugins:
      - name: basic-auth
upstreams:
  - name: up-orders
    targets:
      - target: 127.0.0.1:UP1
targets:
  - upstream: up-orders
    target: 127.0.0.1:UP2
consumers:
  - username: alice
    id: 9c2f7a35-1111-4e7b-9b0e-2f6a0c3d4e5f
    keyauth_credentials:
      - key: alice-key
  - username: bob
keyauth_credentials:
  - consumer: bob
    key: bob-key
  - consumer: { id: 9c2f7a35-1111-4e7b-9b0e-2f6a0c3d4e5f }
    key: alice-second-key
basicauth_credentials:
  - consumer: alice
    username: alice
    password: s3cret
acls:
  - consumer: alice
    group: buyers
  - consumer: { username: bob }
    group: viewers
]]

describe("Kong declarative file", function()
  it("compiles: top-level entities join their consumer and upstream", function()
    local c = assert(config.load_string(KONG_FILE:gsub("UP1", "9001"):gsub("UP2", "9002"), "kong.yaml"))
    local by = {}
    for _, k in ipairs(c.consumers) do by[k.username] = k end
    assert.equal(2, #by.alice.keyauth_credentials)
    assert.equal(1, #by.bob.keyauth_credentials)
    assert.equal(1, #by.alice.basicauth_credentials)
    assert.equal("viewers", by.bob.acls[1].group)
    assert.equal(2, #c.upstreams["up-orders"].targets)
  end)

  it("names an unknown consumer or upstream at the entry", function()
    local text = KONG_FILE:gsub("UP1", "9001"):gsub("UP2", "9002")
      :gsub("  %- consumer: bob\n    key: bob%-key", "  - consumer: carol\n    key: carol-key")
      :gsub("  %- upstream: up%-orders", "  - upstream: nowhere")
    local c, errs = config.load_string(text, "kong.yaml")
    assert.is_nil(c)
    local all = table.concat(errs, "\n")
    assert.matches('kong.yaml:%d+:%d+: keyauth_credentials%[0%]%.consumer: no consumer "carol"', all)
    assert.matches('kong.yaml:%d+:%d+: targets%[0%]%.upstream: no upstream "nowhere"', all)
  end)

  it("runs: credentials from the top level authenticate, acls apply, both targets serve", function()
    local up1 = helpers.start_mock_upstream{ name = "kd1" }
    local up2 = helpers.start_mock_upstream{ name = "kd2" }
    finally(helpers.stop_all)
    helpers.start_gw{ yaml = KONG_FILE:gsub("UP1", up1[1]):gsub("UP2", up2[1])
      :gsub("_transform: true\n", '_transform: true\ngw:\n  listen: ["127.0.0.1:{PROXY_PORT}"]\n  admin_listen: "127.0.0.1:{ADMIN_PORT}"\n  workers: 1\n') }
    local c = helpers.proxy_client()
    local seen = {}
    for _ = 1, 6 do
      local j = cjson.decode(assert.res_status(200, c:get("/orders", { headers = { apikey = "alice-second-key" } })))
      assert.equal("alice", j.headers["x-consumer-username"])
      seen[j.upstream] = true
    end
    assert.is_true(seen.kd1 and seen.kd2)
    assert.res_status(403, c:get("/orders", { headers = { apikey = "bob-key" } }))    -- authenticated, not a buyer
    assert.res_status(401, c:get("/orders", { headers = { apikey = "nobody" } }))
    assert.res_status(200, c:get("/admin", { headers = { Authorization = "Basic " .. ngx_b64("alice:s3cret") } }))
    c:close()
  end)
end)
