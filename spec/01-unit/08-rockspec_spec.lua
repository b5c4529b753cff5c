-- gateway.rockspec installs every module of lua/gw: `make rock` and a plugin author's
-- `luarocks make` get the whole gw.* Lua half, not a part of it.
local helpers = require "spec.helpers"

describe("gateway.rockspec", function()
  it("lists every lua/gw/*.lua module, and only those", function()
    local text = assert(helpers.read_file(helpers.repo .. "/gateway.rockspec"))
    local listed = {}
    for mod, file in text:gmatch('%["([%w%.]+)"%]%s*=%s*"(lua/gw/[%w_%-]+%.lua)"') do listed[file] = mod end
    local p = assert(io.popen("ls " .. helpers.repo .. "/lua/gw/*.lua"))
    local n = 0
    for path in p:lines() do
      local file = path:match("(lua/gw/[^/]+%.lua)$")
      local base = file:match("([%w_%-]+)%.lua$")
      assert.equal(base == "init" and "gw" or ("gw." .. base), listed[file], file .. " is not in gateway.rockspec")
      listed[file] = nil
      n = n + 1
    end
    p:close()
    assert.is_true(n > 10)
    assert.same({}, listed)
  end)
end)
