-- response-transformer README: its YAML compiles, and run against a real gw the curl command it
-- shows prints the status and headers it shows, and a JSON body with the fields it shows.
local helpers = require "spec.helpers"
local config = require "gw.config"
local cjson = require "cjson"

describe("response-transformer README", function()
  local text = assert(helpers.read_file(helpers.repo .. "/plugins/response-transformer/README.md"))
  local yamls = helpers.fenced_blocks(text, "yaml")

  it("the YAML compiles", function()
    assert.is_true(#yamls > 0)
    for _, y in ipairs(yamls) do
      local c, errs = config.load_string(y, "response-transformer/README.md")
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

    it("the curl command prints what the README shows", function()
      local block
      for _, b in ipairs(helpers.fenced_blocks(text, "text")) do
        if b:find("^%$ curl") then block = b break end
      end
      assert.truthy(block)
      local command, rest = block:match("^%$ ([^\n]+)\n(.*)$")
      local shown_head, shown_body = rest:match("^(.-)\n\n(.-)\n?$")
      local p = assert(io.popen(command:gsub("localhost:8000", "127.0.0.1:" .. port) .. " 2>&1"))
      local out = p:read("*a")
      p:close()
      local head, body = out:match("^(.-)\r\n\r\n(.*)$")
      local lines = {}
      for l in (head .. "\r\n"):gmatch("([^\r\n]*)\r\n") do lines[#lines + 1] = l end
      -- each line shown is a line of the answer ("..." stands for what differs)
      for l in shown_head:gmatch("[^\n]+") do
        local pat = "^" .. l:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"):gsub("%%%.%%%.%%%.", ".*") .. "$"
        local found = false
        for _, got in ipairs(lines) do if got:find(pat) then found = true end end
        assert.is_true(found, l .. " in\n" .. head)
      end
      local j = cjson.decode(body)
      local checked = 0
      for k, v in shown_body:gmatch('"([%w_]+)":([^,}]+)') do
        if v ~= "..." then
          assert.equal(cjson.decode(v), j[k], k)
          checked = checked + 1
        end
      end
      assert.equal(6, checked)
      -- and what the text under it says
      assert.is_nil(j.client_ip)
      assert.is_nil(j.body_size)
      assert.is_nil(j.headers["user-agent"])
      assert.equal("*/*", j.headers.accept)
    end)

    it("the files service has header rules only: the echo arrives untouched, with the header", function()
      local c = helpers.proxy_client()
      local res = assert(c:get("/files/a", { headers = { ["User-Agent"] = "t" } }))
      c:close()
      local j = cjson.decode(assert.res_status(200, res))
      assert.equal("nosniff", res.headers["x-content-type-options"])
      assert.equal("127.0.0.1", j.client_ip)
      assert.equal("t", j.headers["user-agent"])
    end)
  end)
end)
