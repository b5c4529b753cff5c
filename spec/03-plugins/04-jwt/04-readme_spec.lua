-- plugins/jwt/README.md: its YAML compiles, its openssl recipe makes a token gw.jwt accepts, and
-- its curl lines get the statuses their comments show from a gw running the example (backends
-- replaced by a mock upstream).
local helpers = require "spec.helpers"
local jwt = require "gw.jwt"

local readme = helpers.readme("jwt")
local text = readme.text

local function blocks(lang) return helpers.fenced_blocks(text, lang) end

describe("jwt README", function()
  local token

  lazy_setup(function()
    local rc, out = helpers.execute("bash -c " .. helpers.shell_quote(blocks("sh")[1] .. '\necho "TOKEN=$TOKEN"'))
    assert.equal(0, rc, out)
    token = out:match("TOKEN=(%S+)")
  end)

  it("has YAML that compiles", function()
    assert.equal(1, #readme.yamls)
    helpers.assert_yaml_compiles(readme)
  end)

  it("makes a token with openssl that gw.jwt verifies", function()
    assert.is_string(token)
    local secret = text:match('secret: "(%x+)"')
    local claims = assert(jwt.verify(token, "HS256", secret))
    assert.equal("mobile-app-issuer", claims.iss)
    assert.equal("user-42", claims.sub)
  end)

  describe("the example's requests", function()
    lazy_setup(function()
      local up = helpers.start_mock_upstream{ name = "up" }
      helpers.start_gw{ yaml = helpers.local_gw_yaml(readme.yamls[1], { workers = 1,
        replace = { ["http://10%.0%.0%.%d+:%d+"] = "http://127.0.0.1:" .. up[1] } }) }
    end)
    lazy_teardown(helpers.stop_all)

    it("get the statuses and headers the README shows", function()
      local n = 0
      local client = helpers.proxy_client()
      for line in blocks("")[1]:gmatch("[^\n]+") do
        local cmd, status = line:match("^(curl .-)%s+#%s*(%d%d%d)")
        if cmd then
          cmd = cmd:gsub("%$TOKEN", token)
          local headers = {}
          for k, v in cmd:gmatch('%-H "([^:]+):%s*([^"]*)"') do headers[k] = v end
          local path = assert(cmd:match("localhost:8000([^%s\"]*)"))
          local res = assert(client:get(path, { headers = headers }))
          assert.equal(tonumber(status), res.status, line)
          local msg = line:match("# %d+ (%b{})")
          if msg then assert.same(helpers.json_decode(msg), helpers.json_decode(res.body), line) end
          if line:find("X-User-ID: user-42", 1, true) then
            assert.equal("user-42", assert.request(res).has.header("X-User-ID"))
            assert.equal("mobile-app", assert.request(res).has.header("X-Consumer-Username"))
          end
          n = n + 1
        end
      end
      client:close()
      assert.equal(4, n)
    end)
  end)
end)
