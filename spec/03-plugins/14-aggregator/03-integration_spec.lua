-- aggregator in a real gw, in front of the bff fixture (spec/fixtures/bff_upstream.py): the
-- seed's order details over a regex route, parallel waves, each failure policy, timeouts,
-- bodies that are not JSON or too large, templated status and headers.
local helpers = require "spec.helpers"
local cjson = require "cjson"
local socket = require "socket"

local bff = dofile(helpers.repo .. "/spec/03-plugins/14-aggregator/bff.lua")

local SEED_RESPONSE = bff.SEED_RESPONSE

describe("aggregator (integration)", function()
  local ports, client

  local function route(name, path, conf)
    return { name = name, paths = { path }, plugins = { { name = "aggregator", config = conf } } }
  end

  lazy_setup(function()
    ports = bff.start()
    local O = "http://127.0.0.1:" .. ports.orders
    local C = "http://127.0.0.1:" .. ports.customers
    local I = "http://127.0.0.1:" .. ports.inventory
    local A = "http://127.0.0.1:" .. ports.all
    local seed_calls = {
      { name = "order", url = O .. "/orders/$(uri_captures.orderId)" },
      { name = "customer", url = C .. "/customers/$(calls.order.body.customerId)", on_error = "null" },
      { name = "items", url = I .. "/orders/$(uri_captures.orderId)/items" },
    }
    helpers.start_gw{ config = { services = { {
      name = "bff", url = "echo://",
      routes = {
        route("details", "~/api/orders/(?<orderId>[^/]+)/details$", { calls = seed_calls, response = SEED_RESPONSE }),
        route("parallel", "/parallel", { calls = {
          { name = "a", url = A .. "/orders/1?delay_ms=300" },
          { name = "b", url = A .. "/customers/2?delay_ms=300" },
          { name = "c", url = A .. "/orders/3/items?delay_ms=300" },
        }, response = { a = "$(calls.a.body.id)", b = "$(calls.b.body.id)", c = "$(calls.c.body)" } }),
        route("chain", "/chain", { calls = {
          { name = "a", url = A .. "/orders/1?delay_ms=300" },
          { name = "b", url = A .. "/customers/$(calls.a.body.id)?delay_ms=300" },
          { name = "c", url = A .. "/orders/$(calls.b.body.id)/items?delay_ms=300" },
        }, response = { c = "$(calls.c.body)" } }),
        route("fail", "/fail", { calls = {
          { name = "ok", url = A .. "/orders/1" },
          { name = "broken", url = A .. "/orders/2?status=500" },
          { name = "later", url = A .. "/customers/$(calls.broken.body.customerId)" },
        }, response = "$(calls.later.body)" }),
        route("policies", "/policies", { calls = {
          { name = "down", url = A .. "/orders/2?status=503", on_error = "null" },
          { name = "text", url = A .. "/echo?raw=hello", on_error = "fallback", fallback = { items = { "none" } } },
          { name = "after", url = A .. "/echo/after", depends_on = { "down", "text" } },
        }, response = { down = "$(calls.down.body)", down_status = "$(calls.down.status)",
                        down_error = "$(calls.down.error)", text = "$(calls.text.body)",
                        after = "$(calls.after.body.path)" } }),
        route("timeout", "/timeout", { calls = {
          { name = "fast", url = A .. "/orders/1" },
          { name = "slow", url = A .. "/orders/1?delay_ms=2000", timeout = 200 },
        }, response = 1 }),
        route("timeout-null", "/timeout-null", { calls = {
          { name = "slow", url = A .. "/orders/1?delay_ms=2000", timeout = 200, on_error = "null" },
        }, response = { slow = "$(calls.slow.body)", why = "$(calls.slow.error)" } }),
        route("notjson", "/notjson", { calls = { { name = "page", url = A .. "/echo?raw=%3Chtml%3E" } }, response = 1 }),
        route("big", "/big", { calls = { { name = "big", url = A .. "/echo?big=5000", max_body_size = 1000 } }, response = 1 }),
        route("refused", "/refused", { calls = { { name = "gone", url = "http://127.0.0.1:" .. helpers.get_free_port() .. "/x" } }, response = 1 }),
        route("status", "/status", {
          calls = { { name = "o", url = A .. "/orders/missing", success_status = { 200, 404 } } },
          response = { message = "$(calls.o.body.message)" },
          response_status = 404,
          response_headers = { ["X-Upstream-Status"] = "$(calls.o.status)", ["Cache-Control"] = "no-store",
                               ["X-Absent"] = "$(calls.o.body.nothing)" },
        }),
      },
    } } } }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  local function get(path) return bff.get(client, path) end

  it("composes the seed's order details from three backends over a regex route", function()
    local status, body, res = get("/api/orders/42/details")
    assert.equal(200, status)
    assert.equal("application/json; charset=utf-8", res.headers["content-type"])
    assert.same({
      id = "42", customerId = "cust-42", status = "shipped", total = 99.5, reference = 1234567890123456,
      customer = { name = "Ada cust-42", email = "cust-42@example.com" },
      items = {
        { sku = "sku-1", name = "Widget", quantity = 2, inventory = 7, availableQuantity = 7 },
        { sku = "sku-2", name = "Gadget", quantity = 1, inventory = 0, availableQuantity = 0 },
      },
    }, body.order)
    assert.matches('"reference":1234567890123456', res.body, 1, true)
    assert.is_nil(body.service)            -- the echo service never answered
  end)

  it("keeps an empty item list a list; a missing customerId leaves the customer null", function()
    local _, body, res = get("/api/orders/empty/details")
    assert.matches('"items":[]', res.body, 1, true)
    local status
    status, body = get("/api/orders/no-customer/details")
    assert.equal(200, status)
    assert.equal(cjson.null, body.order.customer.name)
    assert.equal(2, #body.order.items)
  end)

  it("percent-encodes captured values into the calls' URLs", function()
    local status, body = get("/api/orders/a%20b/details")
    assert.equal(200, status)
    assert.equal("a b", body.order.id)
    assert.equal("Ada cust-a b", body.order.customer.name)
  end)

  it("fails the whole request when the order is missing (404 is not a success)", function()
    local status, body = get("/api/orders/missing/details")
    assert.equal(502, status)
    assert.same({ message = "upstream call answered with status 404", call = "order" }, body)
  end)

  it("runs independent calls in parallel, dependent ones one after the other", function()
    get("/parallel")                                       -- warm the connection pool
    local t0 = socket.gettime()
    local status, body = get("/parallel")
    local parallel = socket.gettime() - t0
    assert.equal(200, status)
    assert.same({ a = "1", b = "2" }, { a = body.a, b = body.b })
    assert.equal(2, #body.c)
    t0 = socket.gettime()
    status = get("/chain")
    local chain = socket.gettime() - t0
    assert.equal(200, status)
    -- three 300 ms calls: together ~0.3 s, in a chain ~0.9 s
    assert.is_true(parallel >= 0.29, "parallel took " .. parallel)
    assert.is_true(chain >= 0.89, "chain took " .. chain)
    assert.is_true(parallel < 0.6 and chain / parallel > 2,
      string.format("parallel %.3f s, chain %.3f s", parallel, chain))
  end)

  it("fail: 502 naming the call, and the next wave is never sent", function()
    bff.counts(ports.all, true)
    local status, body = get("/fail")
    assert.equal(502, status)
    assert.same({ message = "upstream call answered with status 500", call = "broken" }, body)
    local counts = bff.counts(ports.all)
    assert.equal(1, counts["/orders/1"])
    assert.equal(1, counts["/orders/2"])
    for path in pairs(counts) do assert.is_nil(path:find("^/customers"), path) end
  end)

  it("null and fallback stand in for failed calls; later waves still run", function()
    local status, body = get("/policies")
    assert.equal(200, status)
    assert.equal(cjson.null, body.down)
    assert.equal(503, body.down_status)
    assert.equal("upstream call answered with status 503", body.down_error)
    assert.same({ items = { "none" } }, body.text)
    assert.equal("/echo/after", body.after)
  end)

  it("a call over its timeout: 504 with fail, null with null", function()
    local t0 = socket.gettime()
    local status, body = get("/timeout")
    assert.is_true(socket.gettime() - t0 < 1.5)
    assert.equal(504, status)
    assert.same({ message = "upstream call timed out", call = "slow" }, body)
    status, body = get("/timeout-null")
    assert.equal(200, status)
    assert.same({ slow = cjson.null, why = "upstream call timed out" }, body)
  end)

  it("a body that is not JSON, too large, or no answer at all fails the call", function()
    local status, body = get("/notjson")
    assert.equal(502, status)
    assert.same({ message = "upstream call answered with a body that is not JSON", call = "page" }, body)
    status, body = get("/big")
    assert.equal(502, status)
    assert.same({ message = "upstream call response too large", call = "big" }, body)
    status, body = get("/refused")
    assert.equal(502, status)
    assert.same({ message = "upstream call failed", call = "gone" }, body)
  end)

  it("answers with the configured status and templated headers", function()
    local status, body, res = get("/status")
    assert.equal(404, status)
    assert.same({ message = "no such order" }, body)
    assert.equal("404", res.headers["x-upstream-status"])
    assert.equal("no-store", res.headers["cache-control"])
    assert.is_nil(res.headers["x-absent"])
  end)

  it("serves concurrent clients, each with its own results", function()
    local clients = {}
    for i = 1, 5 do
      clients[i] = helpers.proxy_client()
      assert(clients[i]:raw("GET /api/orders/c" .. i .. "/details HTTP/1.1\r\nHost: x\r\n\r\n"))
    end
    for i = 1, 5 do
      local res = assert(clients[i]:read_response())
      assert.equal(200, res.status)
      local body = cjson.decode(res.body)
      assert.equal("c" .. i, body.order.id)
      assert.equal("cust-c" .. i .. "@example.com", body.order.customer.email)
      clients[i]:close()
    end
  end)
end)
