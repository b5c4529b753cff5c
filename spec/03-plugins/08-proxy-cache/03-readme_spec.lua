-- proxy-cache README: its YAML compiles, and run against a real gw (the backend replaced by the
-- mock upstream) the curl lines give what their comments say.
local helpers = require "spec.helpers"
local config = require "gw.config"

local function yaml_blocks(text) return helpers.fenced_blocks(text, "yaml") end

describe("proxy-cache README", function()
  local text = assert(helpers.read_file(helpers.repo .. "/plugins/proxy-cache/README.md"))

  it("the YAML compiles", function()
    local yamls = yaml_blocks(text)
    assert.is_true(#yamls > 0)
    for _, y in ipairs(yamls) do
      local c, errs = config.load_string(y, "proxy-cache/README.md")
      assert(c, errs and table.concat(errs, "\n"))
    end
  end)

  it("the example: Miss, Hit with Age, purge", function()
    local up = helpers.start_mock_upstream{ name = "pc-readme" }
    local y = yaml_blocks(text)[1]:gsub("127%.0%.0%.1:9001", "127.0.0.1:" .. up[1])
      :gsub("\ngw:\n", '\ngw:\n  listen: ["127.0.0.1:{PROXY_PORT}"]\n  admin_listen: "127.0.0.1:{ADMIN_PORT}"\n  workers: 1\n', 1)
    finally(helpers.stop_all)
    helpers.start_gw{ yaml = y }
    local function get()
      local c = helpers.proxy_client()
      local res = assert(c:get("/catalog/items?page=1"))
      c:close()
      assert.res_status(200, res)
      return res
    end
    assert.equal("Miss", get().headers["x-cache-status"])
    local hit = get()
    assert.equal("Hit", hit.headers["x-cache-status"])
    assert.equal("0", hit.headers["age"])
    local a = helpers.admin_client()
    assert.res_status(200, assert(a:send{ method = "DELETE", path = "/proxy-cache" }))
    a:close()
    assert.equal("Miss", get().headers["x-cache-status"])
  end)
end)
