-- The READMEs of key-auth, basic-auth and acl: every ```yaml block compiles, the password-hash
-- recipe works, and each example's curl lines get the status their comment shows from a real gw
-- running the example (its backends replaced by a mock upstream).
local helpers = require "spec.helpers"
local auth = require "gw.auth"
local b64 = require("mime").b64

local PLUGINS = { "key-auth", "basic-auth", "acl" }

-- `curl [-i] [-H 'k: v'] [-u 'u:p'] localhost:8000/PATH   # STATUS ...` -> request + status
local function curl_lines(text)
  local out = {}
  for _, block in ipairs(helpers.fenced_blocks(text, "")) do
    for line in block:gmatch("[^\n]+") do
      local cmd, status = line:match("^(curl .-)%s+#%s*(%d%d%d)")
      if cmd then
        local headers = {}
        for k, v in cmd:gmatch("%-H '([^:]+):%s*([^']*)'") do headers[k] = v end
        local user = cmd:match("%-u '([^']*)'")
        if user then headers.Authorization = "Basic " .. b64(user) end
        out[#out + 1] = { line = line, path = cmd:match("localhost:8000(%S*)"), headers = headers,
                          status = tonumber(status) }
      end
    end
  end
  return out
end

describe("auth plugin READMEs", function()
  for _, name in ipairs(PLUGINS) do
    it(name .. ": the YAML compiles", function()
      helpers.assert_yaml_compiles(helpers.readme(name))
    end)
  end

  it("basic-auth: the password_hash recipe and the example hash verify", function()
    local text = helpers.readme("basic-auth").text
    local recipe = helpers.fenced_blocks(text, "sh")[1]
    local rc, out = helpers.execute(recipe)
    assert.equal(0, rc, out)
    local hash = out:match("(sha256%$%S+)")
    assert.is_true(auth.verify_password("the password", hash))
    local example = text:match('password_hash: "(sha256%$[^"]+)"')
    assert.is_true(auth.verify_password("ci-bot-secret", example))
  end)

  for _, name in ipairs(PLUGINS) do
    describe(name .. ": the example's requests", function()
      local readme = helpers.readme(name)
      lazy_setup(function()
        local up = helpers.start_mock_upstream{ name = "up" }
        helpers.start_gw{ yaml = helpers.local_gw_yaml(readme.yamls[1], { workers = 1,
          replace = { ["http://10%.0%.0%.%d+:%d+"] = "http://127.0.0.1:" .. up[1] } }) }
      end)
      lazy_teardown(helpers.stop_all)

      it("get the statuses the README shows", function()
        local lines = curl_lines(readme.text)
        assert.is_true(#lines >= 3)
        local client = helpers.proxy_client()
        for _, l in ipairs(lines) do
          local res = assert(client:get(l.path, { headers = l.headers }))
          assert.equal(l.status, res.status, l.line)
        end
        client:close()
      end)
    end)
  end
end)
