-- response-transformer README: its YAML compiles, and run against a real gw the curl command it
-- shows prints the status and headers it shows, and a JSON body with the fields it shows.
local helpers = require "spec.helpers"
local cjson = require "cjson"
local H = dofile(helpers.repo .. "/spec/03-plugins/10-request-transformer/transformer_helpers.lua")

describe("response-transformer README", function()
  local readme = helpers.readme("response-transformer")
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

    it("the curl command prints what the README shows", function()
      local command, rest = H.curl_block(text):match("^%$ ([^\n]+)\n(.*)$")
      local shown_head, shown_body = rest:match("^(.-)\n\n(.-)\n?$")
      local out = H.run(command, port)
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
