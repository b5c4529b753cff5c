-- rate-limiting, policy local: a real gw with two workers (counters in a gw.shared dict).
-- Counting tests use day windows (a window boundary mid-test would reset them).
local helpers = require "spec.helpers"

local YAML = [[
_format_version: "3.0"
gw:
  listen: ["127.0.0.1:{PROXY_PORT}"]
  admin_listen: "127.0.0.1:{ADMIN_PORT}"
  workers: 2
  shared_dicts: { rate_limiting: 1m, other_rl: 1m }

consumers:
  - username: alice
    keyauth_credentials: [{ key: alice-key, id: alice-1 }, { key: alice-key2, id: alice-2 }]
  - username: bob
    keyauth_credentials: [{ key: bob-key }]

services:
  - name: echo
    url: echo://
    routes:
      - name: exact
        paths: ["/exact"]
        plugins:
          - name: rate-limiting
            config: { day: 10, limit_by: ip }
      - name: two
        paths: ["/two"]
        plugins:
          - name: rate-limiting
            config: { day: 3, month: 1000, limit_by: ip, dict: other_rl }
      - name: hidden
        paths: ["/hidden"]
        plugins:
          - name: rate-limiting
            config: { day: 1, limit_by: ip, hide_client_headers: true }
      - name: header
        paths: ["/header"]
        plugins:
          - name: rate-limiting
            config: { day: 2, limit_by: header, header_name: X-Tenant }
      - name: path
        paths: ["/path"]
        plugins:
          - name: rate-limiting
            config: { day: 1, limit_by: path, path: /path/limited }
      - name: consumer
        paths: ["/consumer"]
        plugins:
          - name: key-auth
          - name: rate-limiting
            config: { day: 2, limit_by: consumer }
      - name: credential
        paths: ["/credential"]
        plugins:
          - name: key-auth
          - name: rate-limiting
            config: { day: 2, limit_by: credential }
      - name: nodict-tolerant
        paths: ["/nodict-tolerant"]
        plugins:
          - name: rate-limiting
            config: { day: 1, limit_by: ip, dict: missing }
      - name: nodict-strict
        paths: ["/nodict-strict"]
        plugins:
          - name: rate-limiting
            config: { day: 1, limit_by: ip, dict: missing, fault_tolerant: false }
      - name: second
        paths: ["/second"]
        plugins:
          - name: rate-limiting
            config: { second: 2, limit_by: ip }
  - name: svc
    url: echo://
    plugins:
      - name: rate-limiting
        config: { day: 3, limit_by: service }
    routes:
      - { name: svc-a, paths: ["/svc-a"] }
      - { name: svc-b, paths: ["/svc-b"] }
]]

local function get(path, headers)
  local c = helpers.proxy_client()
  local res = c:get(path, { headers = headers })
  c:close()
  return res
end

local function statuses(n, path, headers)
  local out = {}
  for i = 1, n do out[i] = get(path, headers).status end
  return out
end

local function count(list, s)
  local n = 0
  for _, v in ipairs(list) do if v == s then n = n + 1 end end
  return n
end

describe("rate-limiting policy local (integration)", function()
  lazy_setup(function()
    helpers.start_gw{ yaml = YAML }
  end)
  lazy_teardown(helpers.stop_all)

  it("is exact across two workers", function()
    -- both workers up (the second may still be starting when the port answers)
    helpers.wait_until(function() return #helpers.gw_worker_pids() == 2 end, 10)
    local s = statuses(25, "/exact")
    assert.equal(10, count(s, 200))
    assert.equal(15, count(s, 429))
    for i = 1, 10 do assert.equal(200, s[i]) end
  end)

  it("sends the limit headers, and 429 with Retry-After and the JSON message", function()
    local res = get("/two")
    assert.res_status(200, res)
    assert.equal("3", res.headers["x-ratelimit-limit-day"])
    assert.equal("2", res.headers["x-ratelimit-remaining-day"])
    assert.equal("1000", res.headers["x-ratelimit-limit-month"])
    assert.equal("999", res.headers["x-ratelimit-remaining-month"])
    assert.equal("3", res.headers["ratelimit-limit"])
    assert.equal("2", res.headers["ratelimit-remaining"])
    assert.truthy(tonumber(res.headers["ratelimit-reset"]) > 0)
    assert.is_nil(res.headers["retry-after"])
    get("/two"); get("/two")
    res = get("/two")
    local body = assert.res_status(429, res)
    assert.same({ message = "API rate limit exceeded" }, helpers.json_decode(body))
    assert.equal("0", res.headers["x-ratelimit-remaining-day"])
    local ra = tonumber(res.headers["retry-after"])
    assert.truthy(ra and ra > 0 and ra <= 86400)
  end)

  it("hide_client_headers", function()
    local res = get("/hidden")
    assert.res_status(200, res)
    assert.is_nil(res.headers["x-ratelimit-limit-day"])
    assert.is_nil(res.headers["ratelimit-remaining"])
    res = get("/hidden")
    assert.res_status(429, res)
    assert.is_nil(res.headers["x-ratelimit-remaining-day"])
    assert.truthy(res.headers["retry-after"])
  end)

  it("limit_by header: one counter per value, the IP without the header", function()
    assert.same({ 200, 200, 429 }, statuses(3, "/header", { ["X-Tenant"] = "a" }))
    assert.same({ 200, 200, 429 }, statuses(3, "/header", { ["X-Tenant"] = "b" }))
    assert.same({ 200, 200, 429 }, statuses(3, "/header"))
  end)

  it("limit_by path: only the configured path has its own counter", function()
    assert.same({ 200, 429 }, statuses(2, "/path/limited"))
    -- other paths of the route count by IP
    assert.same({ 200, 429 }, statuses(2, "/path/other"))
  end)

  it("limit_by consumer and credential", function()
    assert.same({ 200, 200 }, statuses(2, "/consumer", { apikey = "alice-key" }))
    assert.same({ 429 }, statuses(1, "/consumer", { apikey = "alice-key2" }))   -- same consumer
    assert.same({ 200, 200, 429 }, statuses(3, "/consumer", { apikey = "bob-key" }))
    assert.same({ 200, 200, 429 }, statuses(3, "/credential", { apikey = "alice-key" }))
    assert.same({ 200, 200, 429 }, statuses(3, "/credential", { apikey = "alice-key2" }))
  end)

  it("limit_by service: the routes of the service share one counter", function()
    local s = {}
    for i = 1, 2 do s[#s + 1] = get("/svc-a").status; s[#s + 1] = get("/svc-b").status end
    assert.same({ 200, 200, 200, 429 }, s)
  end)

  it("a new window starts again", function()
    -- wait for the start of a second, then use the 2 of it
    local socket = require "socket"
    local t = socket.gettime()
    helpers.sleep(math.ceil(t) - t + 0.05)
    assert.same({ 200, 200, 429 }, statuses(3, "/second"))
    helpers.sleep(1.1)
    assert.same({ 200 }, statuses(1, "/second"))
  end)

  it("a dict missing from gw.shared_dicts is declared for the plugin: the limit holds, shared by both routes", function()
    assert.same({ 200, 429 }, statuses(2, "/nodict-tolerant"))
    assert.res_status(200, get("/nodict-strict"))   -- its own route scope, same dict
    assert.res_status(429, get("/nodict-strict"))
    assert.is_nil(helpers.gw_log():find("is not declared", 1, true))
  end)
end)
