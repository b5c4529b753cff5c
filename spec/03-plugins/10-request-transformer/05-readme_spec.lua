-- request-transformer README: its YAML compiles, and run against a real gw the curl session it
-- shows gives what it shows (the body compared as JSON: key order is not kept).
local helpers = require "spec.helpers"
local cjson = require "cjson"
local H = dofile(helpers.repo .. "/spec/03-plugins/10-request-transformer/transformer_helpers.lua")

-- the "$ curl" commands of a ```text block (with their continuation lines) and the lines after each
local function session(block)
  local steps, cur, in_cmd = {}, nil, false
  for line in (block .. "\n"):gmatch("([^\n]*)\n") do
    if line:find("^%$ ") then
      cur = { cmd = {}, out = {} }
      steps[#steps + 1] = cur
      in_cmd = true
    end
    if in_cmd then
      cur.cmd[#cur.cmd + 1] = (line:gsub("^%$ ", ""):gsub("^%s+", ""):gsub("\\$", ""))
      in_cmd = line:sub(-1) == "\\"
    elseif cur and line ~= "" then
      cur.out[#cur.out + 1] = line
    end
  end
  return steps
end

describe("request-transformer README", function()
  local readme = helpers.readme("request-transformer")
  local text = readme.text

  it("the YAML compiles", function()
    helpers.assert_yaml_compiles(readme)
  end)

  describe("the example, run", function()
    local port

    lazy_setup(function()
      port = helpers.start_gw{ yaml = helpers.local_gw_yaml(readme.yamls[1]) }.proxy_port
    end)
    lazy_teardown(helpers.stop_all)

    it("the curl session prints what the README shows", function()
      local steps = session(H.curl_block(text))
      assert.equal(2, #steps)
      for _, step in ipairs(steps) do
        local out = H.run(table.concat(step.cmd, " "), port)
        local echo = cjson.decode(out)
        local shown = table.concat(step.out, "\n")
        -- every "key":"value" the README shows is in the answer (outside the body)
        local checked = 0
        for k, v in shown:gmatch('"([%w_-]+)":"([^"\\]*)"') do
          if k ~= "body" then
            assert.equal(v, echo[k] or echo.headers[k], k)
            checked = checked + 1
          end
        end
        assert.is_true(checked >= 4, shown)
        -- the body the README shows, as JSON
        local body = shown:match('"body":("[^\n]-[^\\]")')
        assert.equal(step == steps[1], body ~= nil)
        if body then
          assert.same(cjson.decode(cjson.decode(body)), cjson.decode(echo.body))
          assert.matches('"items":[]', echo.body, 1, true)
        end
      end
    end)
  end)
end)
