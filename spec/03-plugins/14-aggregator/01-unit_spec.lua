-- aggregator unit specs: the template compiler, the dependency waves, the mapping, the JSON
-- codec, and the handler on gw.test.context requests against the bff fixture.
local helpers = require "spec.helpers"
local cjson = require "cjson"

local handler = dofile(helpers.repo .. "/plugins/aggregator/handler.lua")
local bff = dofile(helpers.repo .. "/spec/03-plugins/14-aggregator/bff.lua")

local compile, eval, decode, encode = handler._compile, handler._eval, handler._decode, handler._encode

local function plan_of(calls, response)
  return assert(compile({ calls = calls, response = response or "x" }))
end

local function wave_names(plan)
  local out = {}
  for i, w in ipairs(plan.waves) do
    local n = {}
    for _, c in ipairs(w) do n[#n + 1] = c.name end
    out[i] = table.concat(n, ",")
  end
  return out
end

-- evaluates `response` over calls whose bodies are given as JSON texts
local function map(response, bodies, calls)
  local cs = calls or {}
  if not calls then
    for name in pairs(bodies) do cs[#cs + 1] = { name = name, url = "http://h/" .. name } end
    table.sort(cs, function(a, b) return a.name < b.name end)
  end
  local plan = plan_of(cs, response)
  local env = { calls = {}, vars = {} }
  for name, text in pairs(bodies) do env.calls[name] = { status = 200, body = assert(decode(text)) } end
  return cjson.decode(encode(eval(plan.response, env))), encode(eval(plan.response, env))
end

describe("aggregator compiler", function()
  it("groups independent calls into one wave and dependents into the next", function()
    local plan = plan_of{
      { name = "order", url = "http://o/orders/$(uri_captures.id)" },
      { name = "customer", url = "http://c/customers/$(calls.order.body.customerId)" },
      { name = "items", url = "http://i/orders/$(uri_captures.id)/items" },
      { name = "audit", url = "http://a/", depends_on = { "customer", "items" } },
    }
    assert.same({ "order,items", "customer", "audit" }, wave_names(plan))
    assert.same({ "order" }, plan.calls[2].deps)
    assert.same({ "customer", "items" }, plan.calls[4].deps)
  end)

  it("infers dependencies from headers and bodies too", function()
    local plan = plan_of{
      { name = "a", url = "http://a/" },
      { name = "b", url = "http://b/", headers = { ["X-Token"] = "$(calls.a.body.token)" } },
      { name = "c", url = "http://c/", method = "POST", body = { ids = "$(calls.b.body.ids)" } },
    }
    assert.same({ "a", "b", "c" }, wave_names(plan))
  end)

  it("reports cycles, unknown calls and bad references with their path", function()
    local function err(calls, response)
      local ok, e = compile({ calls = calls, response = response or "x" })
      assert.is_nil(ok)
      return e
    end
    assert.equal("calls[0]: dependency cycle: a -> b -> a", err{
      { name = "a", url = "http://a/$(calls.b.body.x)" }, { name = "b", url = "http://b/", depends_on = { "a" } } })
    assert.equal("calls[0]: dependency cycle: a -> a", err{ { name = "a", url = "http://a/", depends_on = { "a" } } })
    assert.equal('calls[0].url: unknown call "nope" in $(calls.nope.body)',
      err{ { name = "a", url = "http://a/$(calls.nope.body)" } })
    assert.equal('calls[1].depends_on[0]: unknown call "zz"',
      err{ { name = "a", url = "http://a/" }, { name = "b", url = "http://b/", depends_on = { "zz" } } })
    assert.equal('calls[1].name: duplicate call name "a"',
      err{ { name = "a", url = "http://a/" }, { name = "a", url = "http://b/" } })
    assert.matches("calls[1].url: $(calls.a.bodyy): expected calls.a.body", err{
      { name = "a", url = "http://a/" }, { name = "b", url = "http://b/$(calls.a.bodyy)" } }, 1, true)
    assert.matches("calls[0].url: unknown reference $(order.id)", err{ { name = "a", url = "http://a/$(order.id)" } }, 1, true)
    assert.matches("calls[0].url: $(query.a.b): expected query.NAME", err{ { name = "a", url = "http://a/$(query.a.b)" } }, 1, true)
    assert.matches("calls[0].url: unclosed $(", err{ { name = "a", url = "http://a/$(query.a" } }, 1, true)
    assert.matches("calls[0].url: invalid reference $(query..a)", err{ { name = "a", url = "http://a/$(query..a)" } }, 1, true)
    assert.matches("calls[0].url: the scheme and host must be written out",
      err{ { name = "a", url = "http://$(query.host)/x" } }, 1, true)
    assert.matches("calls[0].url: the scheme and host must be written out",
      err{ { name = "a", url = "$(query.url)" } }, 1, true)
    assert.matches("calls[0].url: expected an http:// or https:// URL", err{ { name = "a", url = "ftp://a/" } }, 1, true)
    assert.matches("calls[0].url: must not contain spaces", err{ { name = "a", url = "http://a/b c" } }, 1, true)
    assert.matches("calls[0].headers.X Y: invalid header name",
      err{ { name = "a", url = "http://a/", headers = { ["X Y"] = "1" } } }, 1, true)
    assert.matches("calls[0].headers.X: must not contain CR, LF or NUL",
      err{ { name = "a", url = "http://a/", headers = { X = "a\r\nB: c" } } }, 1, true)
    assert.matches("calls[0].fallback: required with on_error: fallback",
      err{ { name = "a", url = "http://a/", on_error = "fallback" } }, 1, true)
    assert.matches("calls[0].fallback: only used with on_error: fallback",
      err{ { name = "a", url = "http://a/", fallback = 1 } }, 1, true)
  end)

  it("checks the mapping: directives, $each, loop names", function()
    local function err(response)
      local ok, e = compile({ calls = { { name = "a", url = "http://a/" } }, response = response })
      assert.is_nil(ok)
      return e
    end
    assert.matches("response.x.$spread: unknown directive", err{ x = { ["$spread"] = "$(calls.a.body)" } }, 1, true)
    assert.matches("response.x.$merge: expected a single reference", err{ x = { ["$merge"] = "a $(calls.a.body)" } }, 1, true)
    assert.matches("response.x.$merge[1]: expected a reference", err{ x = { ["$merge"] = { "$(calls.a.body)", 3 } } }, 1, true)
    assert.matches("response.$each: expected a single reference", err{ ["$each"] = "literal" }, 1, true)
    assert.matches("response.$as: \"calls\" is a reserved name", err{ ["$each"] = "$(calls.a.body)", ["$as"] = "calls" }, 1, true)
    assert.matches("response.$as: expected a name", err{ ["$each"] = "$(calls.a.body)", ["$as"] = "a.b" }, 1, true)
    assert.matches("response.extra: unknown field next to $each", err{ ["$each"] = "$(calls.a.body)", extra = 1 }, 1, true)
    -- a loop name is known inside its $map only
    assert.matches("response.after: unknown reference $(item)",
      err{ list = { ["$each"] = "$(calls.a.body)" }, after = "$(item)" }, 1, true)
    assert.matches("response.list.$map.y: unknown reference $(it.x)",
      err{ list = { ["$each"] = "$(calls.a.body)", ["$map"] = { y = "$(it.x)" } } }, 1, true)
  end)

  it("folds literal parts of the mapping into constants", function()
    local plan = plan_of({ { name = "a", url = "http://a/" } }, { fixed = { a = 1, b = { "x", true } }, v = "$(calls.a.status)" })
    assert.equal("obj", plan.response.k)
    local fixed
    for i, k in ipairs(plan.response.keys) do if k == "fixed" then fixed = plan.response.vals[i] end end
    assert.equal("const", fixed.k)
    assert.same({ a = 1, b = { "x", true } }, fixed.v)
  end)
end)

describe("aggregator mapping", function()
  local seed = bff.SEED_RESPONSE

  it("composes the seed's getOrderDetails: spread order, picked customer, mapped items", function()
    local out = map(seed, {
      order = '{"id":"42","customerId":"c-1","status":"shipped"}',
      customer = '{"name":"Ada","email":"ada@example.com","phone":"555"}',
      items = '[{"sku":"s1","inventory":7},{"sku":"s2","inventory":0}]',
    })
    assert.same({ order = {
      id = "42", customerId = "c-1", status = "shipped",
      customer = { name = "Ada", email = "ada@example.com" },
      items = { { sku = "s1", inventory = 7, availableQuantity = 7 },
                { sku = "s2", inventory = 0, availableQuantity = 0 } },
    } }, out)
  end)

  it("keeps an empty list a list and a missing value null", function()
    local out, text = map(seed, { order = '{"id":"1","tags":[ ]}', customer = "null", items = "[]" })
    assert.matches('"items":[]', text, 1, true)
    assert.matches('"tags":[]', text, 1, true)
    assert.equal(cjson.null, out.order.customer.name)
  end)

  it("explicit keys win over merged ones; several sources merge in order", function()
    local out = map({ ["$merge"] = { "$(calls.a.body)", "$(calls.b.body)" }, id = "mine" },
      { a = '{"id":"a","x":1,"y":1}', b = '{"y":2,"z":[1]}' })
    assert.same({ id = "mine", x = 1, y = 2, z = { 1 } }, out)
  end)

  it("merging null, a list or a scalar adds nothing", function()
    local out = map({ ["$merge"] = { "$(calls.a.body)", "$(calls.b.body)", "$(calls.c.body)" }, k = 1 },
      { a = "null", b = "[1,2]", c = '"s"' })
    assert.same({ k = 1 }, out)
  end)

  it("selects whole values, indexes lists from 0, interpolates strings", function()
    local out = map({
      whole = "$(calls.a.body.list)",
      second = "$(calls.a.body.list.1.n)",
      status = "$(calls.a.status)",
      text = "order $(calls.a.body.id) has $(calls.a.body.count) items, flag $(calls.a.body.flag), $(calls.a.body.nothing)",
      obj = "obj=$(calls.a.body.obj)",
      missing = "$(calls.a.body.no.such.path)",
      escaped = "$$(calls.a.body.id) costs $5",
      ["$$literal"] = "dollar key",
    }, { a = '{"id":"o-1","count":3,"flag":true,"list":[{"n":"x"},{"n":"y"}],"obj":{"k":[]}}' })
    assert.same({ { n = "x" }, { n = "y" } }, out.whole)
    assert.equal("y", out.second)
    assert.equal(200, out.status)
    assert.equal("order o-1 has 3 items, flag true, ", out.text)
    assert.equal('obj={"k":[]}', out.obj)
    assert.equal(cjson.null, out.missing)
    assert.equal("$(calls.a.body.id) costs $5", out.escaped)
    assert.equal("dollar key", out["$literal"])
  end)

  it("nests $each loops, the inner one seeing the outer item", function()
    local out = map({ ["$each"] = "$(calls.a.body)", ["$as"] = "o",
      ["$map"] = { id = "$(o.id)", lines = { ["$each"] = "$(o.lines)", ["$as"] = "l",
                                             ["$map"] = "$(o.id)-$(l)" } } },
      { a = '[{"id":"a","lines":[1,2]},{"id":"b","lines":[]}]' })
    assert.same({ { id = "a", lines = { "a-1", "a-2" } }, { id = "b", lines = {} } }, out)
  end)

  it("$each over null or an object gives null; the default $map is the item", function()
    local out = map({ n = { ["$each"] = "$(calls.a.body.none)" }, o = { ["$each"] = "$(calls.a.body.obj)" },
                      same = { ["$each"] = "$(calls.a.body.l)" } }, { a = '{"obj":{"x":1},"l":[1,null,"s"]}' })
    assert.equal(cjson.null, out.n)
    assert.equal(cjson.null, out.o)
    assert.same({ 1, cjson.null, "s" }, out.same)
  end)
end)

describe("aggregator JSON", function()
  it("keeps 16-digit integers and short floats exact", function()
    assert.equal('[1234567890123456,0.1,-3,1e+300,2.5]', encode(decode("[1234567890123456,0.1,-3,1e300,2.5]")))
    assert.equal("[0.30000000000000004]", encode({ 0.1 + 0.2 }))
  end)

  it("escapes strings and tells [] from {}", function()
    assert.equal('{"s":"a\\"b\\\\c\\n\\u0001\\u0000é/"}', encode({ s = 'a"b\\c\n\1\0é/' }))
    local v = decode('{"a":[],"b":{},"c":"[]","d":[ \n],"e":"x\\"[]"}')
    assert.same({ a = "[]", b = "{}", c = '"[]"', d = "[]", e = '"x\\"[]"' },
      { a = encode(v.a), b = encode(v.b), c = encode(v.c), d = encode(v.d), e = encode(v.e) })
  end)

  it("refuses what is not JSON", function()
    for _, s in ipairs{ "", "<html>", "{", '{"a":[]', "[1,]" } do
      assert.is_nil(decode(s), s)
    end
  end)
end)

describe("aggregator handler (gw.test.context)", function()
  local ports

  lazy_setup(function() ports = bff.start{ "all" } end)
  lazy_teardown(helpers.stop_all)

  local function run(conf, opts)
    local ctx = gw.test.context(opts or { path = "/api/orders/42/details",
                                          route_path = "~/api/orders/(?<orderId>[^/]+)/details$" })
    local full = assert(helpers.validate_plugin_config("aggregator", conf))
    assert.equal("exit", ctx:run(handler, "access", full))
    return ctx.exit_status, cjson.decode(ctx.exit_body), ctx
  end

  local function base() return "http://127.0.0.1:" .. ports.all end

  it("answers the seed's order details from three calls", function()
    local status, body, ctx = run{
      calls = {
        { name = "order", url = base() .. "/orders/$(uri_captures.orderId)" },
        { name = "customer", url = base() .. "/customers/$(calls.order.body.customerId)" },
        { name = "items", url = base() .. "/orders/$(uri_captures.orderId)/items" },
      },
      response = { order = { ["$merge"] = "$(calls.order.body)",
        customer = { name = "$(calls.customer.body.name)", email = "$(calls.customer.body.email)" },
        items = { ["$each"] = "$(calls.items.body)", ["$map"] = { ["$merge"] = "$(item)", availableQuantity = "$(item.inventory)" } } } },
    }
    assert.equal(200, status)
    assert.equal("application/json; charset=utf-8", ctx:response_header("Content-Type"))
    assert.equal("42", body.order.id)
    assert.equal("cust-42", body.order.customerId)
    assert.same({ name = "Ada cust-42", email = "cust-42@example.com" }, body.order.customer)
    assert.equal(2, #body.order.items)
    assert.equal(7, body.order.items[1].availableQuantity)
    assert.equal("sku-1", body.order.items[1].sku)
  end)

  it("fails the request with the call's name: 502 on a bad status, 504 on a timeout", function()
    local status, body = run{ calls = { { name = "o", url = base() .. "/orders/x?status=500" } }, response = "$(calls.o.body)" }
    assert.equal(502, status)
    assert.same({ message = "upstream call answered with status 500", call = "o" }, body)
    status, body = run{ calls = { { name = "slow", url = base() .. "/orders/x?delay_ms=1000", timeout = 100 } }, response = 1 }
    assert.equal(504, status)
    assert.same({ message = "upstream call timed out", call = "slow" }, body)
  end)

  it("null and fallback policies stand in for a failed call; error tells why", function()
    local status, body = run{
      calls = {
        { name = "a", url = base() .. "/echo?raw=oops", on_error = "null" },
        { name = "b", url = base() .. "/orders/x?status=503", on_error = "fallback", fallback = { name = "n/a" } },
      },
      response = { a = "$(calls.a.body)", a_err = "$(calls.a.error)", b = "$(calls.b.body.name)", b_status = "$(calls.b.status)" },
    }
    assert.equal(200, status)
    assert.equal(cjson.null, body.a)
    assert.equal("upstream call answered with a body that is not JSON", body.a_err)
    assert.equal("n/a", body.b)
    assert.equal(503, body.b_status)
  end)

  it("sends headers and bodies built from the request; percent-encodes URL values", function()
    local status, body = run({
      calls = { { name = "e", method = "POST", url = base() .. "/echo/$(uri_captures.orderId)?q=$(query.q)",
                  headers = { ["X-User"] = "$(headers.x-user)", ["X-Absent"] = "$(headers.x-none)", ["X-Fixed"] = "v" },
                  body = { id = "$(uri_captures.orderId)", q = "$(query.q)" } } },
      response = "$(calls.e.body)",
    }, { path = "/api/orders/a%2Fb c/details?q=x%26y%3Dz", headers = { ["X-User"] = "ann" },
         route_path = "~/api/orders/(?<orderId>[^/]+)/details$" })
    assert.equal(200, status)
    assert.equal("/echo/a%2Fb%20c", body.rawpath)
    assert.equal("q=x%26y%3Dz", body.rawquery)
    assert.equal("ann", body.headers["x-user"])
    assert.equal("v", body.headers["x-fixed"])
    assert.is_nil(body.headers["x-absent"])
    assert.equal("application/json", body.headers["content-type"])
    assert.same({ id = "a/b c", q = "x&y=z" }, cjson.decode(body.body))
  end)

  it("a header value with CR or LF from a result: the call fails, a response header is left out", function()
    local raw = base() .. "/echo?raw=%7B%22t%22%3A%22a%5Cr%5CnEvil%3A%201%22%7D"   -- {"t":"a\r\nEvil: 1"}
    local status, body, ctx = run{
      calls = { { name = "src", url = raw },
                { name = "use", url = base() .. "/echo", headers = { ["X-T"] = "$(calls.src.body.t)" }, on_error = "null" } },
      response = { use = "$(calls.use.body)", why = "$(calls.use.error)" },
      response_headers = { ["X-T"] = "$(calls.src.body.t)", ["X-Ok"] = "fine" },
    }
    assert.equal(200, status)
    assert.same({ use = cjson.null,
                  why = "upstream call could not be made: header X-T: the value contains CR, LF or NUL" }, body)
    assert.is_nil(ctx:response_header("X-T"))
    assert.is_nil(ctx:response_header("Evil"))
    assert.equal("fine", ctx:response_header("X-Ok"))
  end)

  it("numbered captures; a missing capture fails the call, a missing query argument is empty", function()
    local conf = {
      calls = { { name = "e", url = base() .. "/echo/$(uri_captures.1)/$(uri_captures.2)?all=$(uri_captures.0)&q=$(query.q)" } },
      response = { path = "$(calls.e.body.rawpath)", query = "$(calls.e.body.rawquery)" },
    }
    local status, body = run(conf, { path = "/v/7/x", route_path = "~/v/(\\d+)/(\\w+)$" })
    assert.equal(200, status)
    assert.same({ path = "/echo/7/x", query = "all=%2Fv%2F7%2Fx&q=" }, body)
    -- a prefix route has no captures
    status, body = run(conf, { path = "/v/7/x" })
    assert.equal(502, status)
    assert.same({ message = "upstream call could not be made: no value for $(uri_captures.1)", call = "e" }, body)
  end)
end)
