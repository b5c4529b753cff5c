-- kong-compat: the unit-test style Kong plugin authors use, unchanged: a `_G.kong` mock made of
-- busted spies, the handler required as kong.plugins.NAME.handler, handler:access(conf) called
-- directly. No gw request, no kong-compat PDK: the plugin sees only the mock.
local helpers = require "spec.helpers"

local KONG_PLUGINS = helpers.repo .. "/spec/fixtures/kong-plugins"

describe("kong-greet handler (unit, Kong style)", function()
  local handler, headers, saved_path

  setup(function()
    saved_path = package.path
    package.path = KONG_PLUGINS .. "/?.lua;" .. package.path
  end)

  teardown(function()
    package.path = saved_path
    package.loaded["kong.plugins.kong-greet.handler"] = nil
    _G.kong = nil
  end)

  before_each(function()
    headers = {}
    _G.kong = {
      request = {
        get_header = spy.new(function(name) return headers[name] end),
      },
      service = { request = { set_header = spy.new(function() end) } },
      response = { exit = spy.new(function(status, body) return status, body end) },
      log = { debug = spy.new(function() end) },
    }
    package.loaded["kong.plugins.kong-greet.handler"] = nil
    handler = require "kong.plugins.kong-greet.handler"
  end)

  it("greets by the configured header", function()
    headers["X-Who"] = "bo"
    handler:access({ header = "X-Who", greeting = "hi" })
    assert.spy(kong.request.get_header).was.called_with("X-Who")
    assert.spy(kong.service.request.set_header).was.called_with("X-Greeting", "hi bo")
    assert.spy(kong.response.exit).was_not.called()
    assert.spy(kong.log.debug).was.called_with("greeted ", "bo")
  end)

  it("answers 400 without the header", function()
    local status, body = handler:access({ header = "X-Who", greeting = "hi" })
    assert.spy(kong.response.exit).was.called_with(400, { message = "missing X-Who" })
    assert.equal(400, status)
    assert.same({ message = "missing X-Who" }, body)
    assert.spy(kong.service.request.set_header).was_not.called()
  end)

  it("declares Kong's handler fields", function()
    assert.equal(800, handler.PRIORITY)
    assert.equal(require("kong.meta").version, handler.VERSION)
  end)
end)
