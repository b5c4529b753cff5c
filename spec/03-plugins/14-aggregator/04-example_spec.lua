-- examples/aggregation.yaml, run as written against the bff fixture's three backends (their
-- ports and gw's listeners substituted): the seed's getOrderDetails, composed by gw.
local helpers = require "spec.helpers"
local cjson = require "cjson"

local bff = dofile(helpers.repo .. "/spec/03-plugins/14-aggregator/bff.lua")

describe("examples/aggregation.yaml", function()
  local ports, client

  lazy_setup(function()
    ports = bff.start{ "orders", "customers", "inventory" }
    helpers.start_gw{ yaml = bff.substitute_ports(helpers.example_yaml("aggregation.yaml"), ports) }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("composes order + customer + items as getOrderDetails does", function()
    local res = assert(client:get("/api/orders/42/details"))
    assert.equal(200, res.status)
    assert.same({ order = {
      id = "42", customerId = "cust-42", status = "shipped", total = 99.5, reference = 1234567890123456,
      customer = { name = "Ada cust-42", email = "cust-42@example.com" },
      items = {
        { sku = "sku-1", name = "Widget", quantity = 2, inventory = 7, availableQuantity = 7 },
        { sku = "sku-2", name = "Gadget", quantity = 1, inventory = 0, availableQuantity = 0 },
      },
    } }, cjson.decode(res.body))
  end)

  it("each call went to its own backend", function()
    bff.counts(ports.orders, true)
    bff.counts(ports.customers, true)
    bff.counts(ports.inventory, true)
    assert.equal(200, assert(client:get("/api/orders/7/details")).status)
    assert.same({ ["/orders/7"] = 1 }, bff.counts(ports.orders))
    assert.same({ ["/customers/cust-7"] = 1 }, bff.counts(ports.customers))
    assert.same({ ["/orders/7/items"] = 1 }, bff.counts(ports.inventory))
  end)

  it("only GET on that path; an unknown order is a 502 naming the call", function()
    assert.equal(404, assert(client:send{ method = "POST", path = "/api/orders/42/details" }).status)
    assert.equal(404, assert(client:get("/api/orders/42")).status)
    local res = assert(client:get("/api/orders/missing/details"))
    assert.equal(502, res.status)
    assert.same({ message = "upstream call answered with status 404", call = "order" }, cjson.decode(res.body))
  end)
end)
