-- cors README: its YAML compiles, and run against a real gw it answers as the README says (the
-- curl session shown in the README is run as written, against gw's port).
local helpers = require "spec.helpers"

describe("cors README", function()
  local readme = helpers.readme("cors")
  local text = readme.text

  it("the YAML compiles", function()
    helpers.assert_yaml_compiles(readme)
  end)

  describe("the example, run", function()
    local port, client

    lazy_setup(function()
      port = helpers.start_gw{ yaml = helpers.local_gw_yaml(readme.yamls[1]) }.proxy_port
    end)
    lazy_teardown(helpers.stop_all)
    before_each(function() client = helpers.proxy_client() end)
    after_each(function() client:close() end)

    it("the curl session prints what the README shows", function()
      local block
      for _, b in ipairs(helpers.fenced_blocks(text, "text")) do
        if b:find("^%$ curl") then block = b break end
      end
      assert.truthy(block)
      -- the command: from "$ " through its continuation lines
      local cmd, expected, in_cmd = {}, {}, true
      for line in (block .. "\n"):gmatch("([^\n]*)\n") do
        if in_cmd then
          local part = line:gsub("^%$ ", ""):gsub("^%s+", "")
          cmd[#cmd + 1] = part:gsub("\\$", "")
          in_cmd = line:sub(-1) == "\\"
        elseif line ~= "" then
          expected[#expected + 1] = line
        end
      end
      local command = table.concat(cmd, " "):gsub("localhost:8000", "127.0.0.1:" .. port)
      assert.matches("OPTIONS", command, 1, true)
      local p = assert(io.popen(command .. " 2>&1"))
      local out = p:read("*a")
      p:close()
      local got = {}
      for line in out:gmatch("([^\r\n]+)") do got[line] = true end
      assert.is_true(#expected >= 6)
      for _, line in ipairs(expected) do
        assert.is_true(got[line] == true, "missing line: " .. line .. "\nin:\n" .. out)
      end
    end)

    it("the same preflight from another origin: 204 with only Vary", function()
      local res = assert(client:send{ method = "OPTIONS", path = "/api/orders", headers = {
        Origin = "https://evil.example.com", ["Access-Control-Request-Method"] = "POST" } })
      assert.res_status(204, res)
      assert.is_nil(res.headers["access-control-allow-origin"])
      assert.is_nil(res.headers["access-control-allow-methods"])
      assert.equal("Origin, Access-Control-Request-Headers", res.headers["vary"])
    end)

    it("catalog: subdomains of example.org and localhost ports, GET and HEAD only", function()
      for _, origin in ipairs({ "https://example.org", "https://shop.eu.example.org", "http://localhost:5173" }) do
        local res = assert(client:send{ method = "OPTIONS", path = "/catalog/items", headers = {
          Origin = origin, ["Access-Control-Request-Method"] = "GET" } })
        assert.res_status(204, res)
        assert.equal(origin, res.headers["access-control-allow-origin"])
        assert.equal("GET,HEAD", res.headers["access-control-allow-methods"])
        assert.equal("Accept,Content-Type,X-Request-Id", res.headers["access-control-allow-headers"])
        assert.equal("600", res.headers["access-control-max-age"])
        assert.is_nil(res.headers["access-control-allow-credentials"])
      end
      local res = assert(client:send{ method = "OPTIONS", path = "/catalog/items", headers = {
        Origin = "https://example.org", ["Access-Control-Request-Method"] = "POST" } })
      assert.res_status(204, res)
      assert.is_nil(res.headers["access-control-allow-origin"])
      for _, origin in ipairs({ "https://example.org.evil.net", "https://evilexample.org", "http://example.org" }) do
        res = assert(client:get("/catalog/items", { headers = { Origin = origin } }))
        assert.res_status(200, res)
        assert.is_nil(res.headers["access-control-allow-origin"], origin)
      end
      res = assert(client:get("/catalog/items", { headers = { Origin = "https://shop.example.org" } }))
      assert.res_status(200, res)
      assert.equal("https://shop.example.org", res.headers["access-control-allow-origin"])
      assert.equal("X-Request-Id,X-Total-Count", res.headers["access-control-expose-headers"])
      assert.equal("Origin", res.headers["vary"])
    end)
  end)
end)
