-- request-validator README: its YAML compiles; the example runs in a real gw (ports
-- substituted) and every `$ curl` of the README's transcript gets the answer shown under it.
local helpers = require "spec.helpers"
local cjson = require "cjson"

local readme = helpers.readme("request-validator")
local text = readme.text

-- splits a shell line into words ('single quotes' only, as the README uses)
local function words(line)
  local out, i = {}, 1
  while i <= #line do
    local c = line:sub(i, i)
    if c == " " then i = i + 1
    elseif c == "'" then
      local j = assert(line:find("'", i + 1, true), "unterminated quote in " .. line)
      out[#out + 1] = line:sub(i + 1, j - 1)
      i = j + 1
    else
      local j = line:find(" ", i, true) or #line + 1
      out[#out + 1] = line:sub(i, j - 1)
      i = j
    end
  end
  return out
end

-- the transcript: { request = {method, path, headers, body}, status = N or nil, last = "..." }
local function transcript()
  local cases = {}
  for _, block in ipairs(helpers.fenced_blocks(text, "text")) do
    local cur
    for line in (block .. "\n"):gmatch("([^\n]*)\n") do
      if line:sub(1, 7) == "$ curl " then
        local w = words(line:sub(8))
        local req = { method = "GET", headers = {} }
        local k = 1
        while k <= #w do
          local a = w[k]
          if a == "-H" then
            local name, value = w[k + 1]:match("^([^:]+):%s*(.*)$")
            req.headers[name] = value
            k = k + 2
          elseif a == "-d" then
            req.body, req.method = w[k + 1], "POST"
            k = k + 2
          elseif a:sub(1, 1) == "-" then
            k = k + 1
          else
            req.path = assert(a:match("^localhost:8000(/.*)$"), a)
            k = k + 1
          end
        end
        cur = { line = line, request = req }
        cases[#cases + 1] = cur
      elseif cur and line:match("^HTTP/1%.1 %d+") then
        cur.status = tonumber(line:match("^HTTP/1%.1 (%d+)"))
      elseif cur and line ~= "" and line ~= "..." then
        cur.last = line
      end
    end
  end
  return cases
end

describe("request-validator README", function()
  it("the YAML compiles", function()
    helpers.assert_yaml_compiles(readme)
  end)

  it("the example answers as the README shows", function()
    helpers.start_gw{ yaml = helpers.local_gw_yaml(readme.yamls[1]) }
    finally(helpers.stop_all)
    local cases = transcript()
    assert.is_true(#cases >= 4)
    for _, case in ipairs(cases) do
      local c = helpers.proxy_client()
      local res = assert(c:send(case.request))
      c:close()
      local msg = case.line .. "\ngot " .. res.status .. " " .. tostring(res.body)
      if case.status then assert.equal(case.status, res.status, msg) end
      local want = assert(case.last, "no output under " .. case.line)
      if want:sub(-5) == ",...}" then
        -- the start of the echo's JSON, as written
        assert.equal(200, res.status, msg)
        assert.equal(want:sub(1, -6), res.body:sub(1, #want - 5), msg)
      else
        assert.equal(want, res.body, msg)                    -- the exact bytes
        assert.same(cjson.decode(want), cjson.decode(res.body), msg)
      end
    end
  end)

  it("the config error shown is what gw check prints", function()
    local y = readme.yamls[1]
      :gsub("name: { type: string, minLength: 2", "name: { type: strng, minLength: 2")
      :gsub("age: { type: integer, minimum: 0,", 'age: { type: integer, minimum: "0",')
    local rc, out = helpers.gw_check(y)
    assert.equal(1, rc)
    local shown = text:match("\n(gateway%.yaml:%d+:%d+: [^\n]+)")
    assert.is_string(shown)
    assert.matches(shown:gsub("^gateway%.yaml:%d+:%d+: ", ""), out, 1, true)
  end)
end)
