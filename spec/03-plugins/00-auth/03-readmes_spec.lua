-- The READMEs of key-auth, basic-auth and acl: every ```yaml block compiles, the password-hash
-- recipe works, and each example's curl lines get the status their comment shows from a real gw
-- running the example (its backends replaced by a mock upstream).
local helpers = require "spec.helpers"
local config = require "gw.config"
local auth = require "gw.auth"
local b64 = require("mime").b64

local PLUGINS = { "key-auth", "basic-auth", "acl" }

local function readme(name)
  return assert(helpers.read_file(helpers.repo .. "/plugins/" .. name .. "/README.md"))
end

local function blocks(text, lang) return helpers.fenced_blocks(text, lang) end

-- `curl [-i] [-H 'k: v'] [-u 'u:p'] localhost:8000/PATH   # STATUS ...` -> request + status
local function curl_lines(text)
  local out = {}
  for _, block in ipairs(blocks(text, "")) do
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
      local yamls = blocks(readme(name), "yaml")
      assert.is_true(#yamls > 0)
      for _, y in ipairs(yamls) do
        local c, errs = config.load_string(y, name .. "/README.md")
        assert(c, errs and table.concat(errs, "\n"))
      end
    end)
  end

  it("basic-auth: the password_hash recipe and the example hash verify", function()
    local text = readme("basic-auth")
    local recipe = blocks(text, "sh")[1]
    local rc, out = helpers.execute(recipe)
    assert.equal(0, rc, out)
    local hash = out:match("(sha256%$%S+)")
    assert.is_true(auth.verify_password("the password", hash))
    local example = text:match('password_hash: "(sha256%$[^"]+)"')
    assert.is_true(auth.verify_password("ci-bot-secret", example))
  end)

  for _, name in ipairs(PLUGINS) do
    describe(name .. ": the example's requests", function()
      local text = readme(name)
      local up
      lazy_setup(function()
        up = helpers.start_mock_upstream{ name = "up" }
        local yaml = blocks(text, "yaml")[1]
          :gsub("http://10%.0%.0%.%d+:%d+", "http://127.0.0.1:" .. up[1])
          :gsub("_format_version: \"3.0\"\n", '_format_version: "3.0"\ngw: { listen: ["127.0.0.1:{PROXY_PORT}"], admin_listen: "127.0.0.1:{ADMIN_PORT}", workers: 1 }\n', 1)
        helpers.start_gw{ yaml = yaml }
      end)
      lazy_teardown(helpers.stop_all)

      it("get the statuses the README shows", function()
        local lines = curl_lines(text)
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
