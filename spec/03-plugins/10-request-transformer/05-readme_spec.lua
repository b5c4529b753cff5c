-- request-transformer README: its YAML compiles, and run against a real gw the curl session it
-- shows gives what it shows (the body compared as JSON: key order is not kept).
local helpers = require "spec.helpers"
local config = require "gw.config"
local cjson = require "cjson"

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
  local text = assert(helpers.read_file(helpers.repo .. "/plugins/request-transformer/README.md"))
  local yamls = helpers.fenced_blocks(text, "yaml")

  it("the YAML compiles", function()
    assert.is_true(#yamls > 0)
    for _, y in ipairs(yamls) do
      local c, errs = config.load_string(y, "request-transformer/README.md")
      assert(c, errs and table.concat(errs, "\n"))
    end
  end)

  describe("the example, run", function()
    local port

    lazy_setup(function()
      local y, n = yamls[1]:gsub("\ngw:\n", '\ngw:\n  listen: ["127.0.0.1:{PROXY_PORT}"]\n  admin_listen: "127.0.0.1:{ADMIN_PORT}"\n', 1)
      assert.equal(1, n)
      port = helpers.start_gw{ yaml = y }.proxy_port
    end)
    lazy_teardown(helpers.stop_all)

    it("the curl session prints what the README shows", function()
      local block
      for _, b in ipairs(helpers.fenced_blocks(text, "text")) do
        if b:find("^%$ curl") then block = b break end
      end
      assert.truthy(block)
      local steps = session(block)
      assert.equal(2, #steps)
      for _, step in ipairs(steps) do
        local command = table.concat(step.cmd, " "):gsub("localhost:8000", "127.0.0.1:" .. port)
        local p = assert(io.popen(command .. " 2>&1"))
        local out = p:read("*a")
        p:close()
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
