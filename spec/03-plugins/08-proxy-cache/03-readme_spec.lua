-- proxy-cache README: its YAML compiles, and run against a real gw (the backend replaced by the
-- mock upstream) the curl lines give what their comments say.
local helpers = require "spec.helpers"

describe("proxy-cache README", function()
  local readme = helpers.readme("proxy-cache")

  it("the YAML compiles", function()
    helpers.assert_yaml_compiles(readme)
  end)

  it("the example: Miss, Hit with Age, purge", function()
    local up = helpers.start_mock_upstream{ name = "pc-readme" }
    finally(helpers.stop_all)
    helpers.start_gw{ yaml = helpers.local_gw_yaml(readme.yamls[1], { workers = 1,
      replace = { ["127%.0%.0%.1:9001"] = "127.0.0.1:" .. up[1] } }) }
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
