-- aggregator README: its YAML compiles, and its example run against a real gw and the bff
-- fixture (the three backends' ports substituted) answers as the README says.
local helpers = require "spec.helpers"
local cjson = require "cjson"

local bff = dofile(helpers.repo .. "/spec/03-plugins/14-aggregator/bff.lua")

describe("aggregator README", function()
  local readme = helpers.readme("aggregator")

  it("the YAML compiles", function()
    helpers.assert_yaml_compiles(readme)
  end)

  describe("the example", function()
    local client

    lazy_setup(function()
      local ports = bff.start{ "orders", "customers", "inventory" }
      helpers.start_gw{ yaml = helpers.local_gw_yaml(bff.substitute_ports(readme.yamls[1], ports), { workers = 1 }) }
    end)
    lazy_teardown(helpers.stop_all)
    before_each(function() client = helpers.proxy_client() end)
    after_each(function() client:close() end)

    local function get(path) return bff.get(client, path) end

    it("composes the order details, with the configured headers", function()
      local status, body, res = get("/api/orders/42/details?lang=en")
      assert.equal(200, status)
      local o = body.order
      assert.equal("42", o.id)
      assert.same({ name = "Ada cust-42", email = "cust-42@example.com" }, o.customer)
      assert.equal(7, o.items[1].availableQuantity)
      assert.equal(cjson.null, o.itemsError)
      assert.equal("private, max-age=10", res.headers["cache-control"])
      assert.equal("shipped", res.headers["x-order-status"])
    end)

    it("a failing customer service gives the fallback customer", function()
      local status, body = get("/api/orders/x-down/details")
      assert.equal(200, status)
      assert.same({ name = "unknown customer", email = cjson.null }, body.order.customer)
      assert.equal(2, #body.order.items)
    end)

    it("failing items are null, with the reason in itemsError", function()
      local status, body = get("/api/orders/no-items/details")
      assert.equal(200, status)
      assert.equal(cjson.null, body.order.items)
      assert.equal("upstream call answered with status 500", body.order.itemsError)
      assert.equal("Ada cust-no-items", body.order.customer.name)
    end)

    it("a missing order fails the request", function()
      local status, body = get("/api/orders/missing/details")
      assert.equal(502, status)
      assert.same({ message = "upstream call answered with status 404", call = "order" }, body)
    end)
  end)
end)
