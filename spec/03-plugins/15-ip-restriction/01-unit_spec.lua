-- ip-restriction handler on gw.test.context: deny first, then allow; IPv4 and IPv6; the refusal.
local helpers = require "spec.helpers"
local handler = dofile(helpers.repo .. "/plugins/ip-restriction/handler.lua")

local function validate(name, conf)
  local c, errs = helpers.validate_plugin_config(name, conf)
  return c, errs and table.concat(errs, "\n")
end

local function run(conf, client_ip)
  local c = assert(validate("ip-restriction", conf))
  local ctx = gw.test.context{ client_ip = client_ip }
  local r = ctx:run(handler, "access", c)
  return r == "exit" and ctx.exit_status or 200, ctx.exit_body
end

describe("ip-restriction (unit)", function()
  it("allow: only the listed addresses and ranges pass", function()
    local conf = { allow = { "10.0.0.0/8", "192.168.1.7", "2001:db8::/32" } }
    assert.equal(200, run(conf, "10.20.30.40"))
    assert.equal(200, run(conf, "192.168.1.7"))
    assert.equal(200, run(conf, "2001:db8:1::9"))
    assert.equal(403, run(conf, "192.168.1.8"))
    assert.equal(403, run(conf, "2001:db9::1"))
    assert.equal(403, run(conf, "127.0.0.1"))
  end)

  it("deny: the listed addresses are refused, the rest pass", function()
    local conf = { deny = { "198.51.100.0/24", "::1" } }
    assert.equal(403, run(conf, "198.51.100.200"))
    assert.equal(403, run(conf, "::1"))
    assert.equal(200, run(conf, "198.51.101.1"))
  end)

  it("deny wins over allow", function()
    local conf = { allow = { "10.0.0.0/8" }, deny = { "10.0.0.66" } }
    assert.equal(200, run(conf, "10.0.0.65"))
    assert.equal(403, run(conf, "10.0.0.66"))
  end)

  it("answers with the configured status and message", function()
    local status, body = run({ deny = { "0.0.0.0/0" }, status = 451, message = "not here" }, "1.2.3.4")
    assert.equal(451, status)
    assert.same({ message = "not here" }, require("cjson").decode(body))
    local _, body2 = run({ deny = { "0.0.0.0/0" } }, "1.2.3.4")
    assert.same({ message = "Your IP address is not allowed" }, require("cjson").decode(body2))
  end)

  it("config errors name the field and the entry", function()
    local _, err = validate("ip-restriction", {})
    assert.matches("at least one of allow, deny is required", err)
    _, err = validate("ip-restriction", { allow = { "10.0.0.0/8", "10.0.0.0/33" } })
    assert.matches("allow%[1%]: invalid prefix length /33", err)
    _, err = validate("ip-restriction", { deny = { "example.com" } })
    assert.matches("deny%[0%]: invalid IP address or CIDR 'example.com'", err)
    _, err = validate("ip-restriction", { deny = {} })
    assert.matches("deny: length must be at least 1", err)
    _, err = validate("ip-restriction", { deny = { "1.2.3.4" }, status = 200 })
    assert.matches("status", err)
  end)
end)
