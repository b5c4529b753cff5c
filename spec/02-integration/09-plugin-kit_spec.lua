-- The plugin development kit end to end: `gw new-plugin` outside the repo, its generated specs
-- passing under `gw test`, a broken edit making them fail, and `luarocks make` installing the
-- Lua modules and spec helpers that the scaffolded plugin's specs then use.
local helpers = require "spec.helpers"

local gw = helpers.gw_bin

local function sh(cmd)
  return helpers.execute(cmd)
end

describe("plugin kit", function()
  local dir

  lazy_setup(function()
    dir = helpers.tmpdir("kit")
  end)
  lazy_teardown(helpers.stop_all)

  it("gw new-plugin writes a plugin whose unit and integration specs pass as generated", function()
    local rc, out = sh(gw .. " new-plugin hello-world --dir " .. dir)
    assert.equal(0, rc, out)
    for _, f in ipairs({ "handler.lua", "schema.lua", "README.md", "spec/01-unit_spec.lua", "spec/02-integration_spec.lua" }) do
      assert.truthy(helpers.read_file(dir .. "/hello-world/" .. f), f)
    end
    rc, out = sh("cd / && " .. gw .. " test " .. dir .. "/hello-world/spec")
    assert.equal(0, rc, out)
    assert.matches("4 successes / 0 failures / 0 errors", out, 1, true)
  end)

  it("refuses to overwrite an existing plugin and bad names", function()
    local rc, out = sh(gw .. " new-plugin hello-world --dir " .. dir)
    assert.equal(1, rc)
    assert.matches("already has a handler.lua", out, 1, true)
    rc, out = sh(gw .. " new-plugin Bad_Name --dir " .. dir)
    assert.equal(1, rc)
    assert.matches("plugin name must be", out, 1, true)
  end)

  it("the generated specs catch a broken handler", function()
    local rc = sh(gw .. " new-plugin broken-one --dir " .. dir)
    assert.equal(0, rc)
    local h = dir .. "/broken-one/handler.lua"
    local src = helpers.read_file(h)
    helpers.write_file(h, (src:gsub("conf%.value%)", '"wrong")')))
    local out
    rc, out = sh(gw .. " test " .. dir .. "/broken-one/spec")
    assert.not_equal(0, rc)
    assert.matches("[1-9] failures?", out)
  end)

  it("luarocks make installs the modules and helpers; the plugin's specs run against them", function()
    if os.execute("command -v luarocks >/dev/null 2>&1") ~= 0 and os.execute("command -v luarocks >/dev/null 2>&1") ~= true then
      pending("luarocks is not installed (make deps installs it)")
      return
    end
    local tree = dir .. "/tree"
    local rc, out = sh("cd " .. helpers.repo .. " && make -s rock ROCK_TREE=" .. tree .. " 2>&1")
    assert.equal(0, rc, out)
    local share = tree .. "/share/lua/5.1"
    for _, f in ipairs({ "gw/init.lua", "gw/config.lua", "gw/test.lua", "spec/helpers.lua" }) do
      assert.truthy(helpers.read_file(share .. "/" .. f), f)
    end
    local env = "LUA_PATH='" .. share .. "/?.lua;" .. share .. "/?/init.lua;;' "
    helpers.write_file(dir .. "/which.lua", 'print(package.searchpath("spec.helpers", package.path))')
    rc, out = sh(env .. gw .. " lua " .. dir .. "/which.lua")
    assert.equal(share .. "/spec/helpers.lua", (out:gsub("%s+$", "")))
    rc, out = sh("cd / && " .. env .. gw .. " test " .. dir .. "/hello-world/spec")
    assert.equal(0, rc, out)
    assert.matches("4 successes / 0 failures / 0 errors", out, 1, true)
  end)
end)
