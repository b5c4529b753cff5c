--- gw.scaffold — `gw new-plugin NAME [--dir DIR]`: a plugin whose specs pass as generated.
-- Writes DIR/NAME/{handler.lua, schema.lua, README.md, spec/01-unit_spec.lua,
-- spec/02-integration_spec.lua}. Run its specs with `gw test DIR/NAME/spec`.
local M = {}

local function write(path, text)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  f:write(text)
  f:close()
  return true
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local HANDLER = [[
-- {{NAME}}: adds a header to the request sent upstream and one to the response.
-- Phases a handler may implement: init_worker, rewrite, access, header_filter, body_filter, log.
local {{CLASS}} = {
  PRIORITY = 1000,  -- higher runs first
  VERSION = "0.1.0",
}

function {{CLASS}}:access(conf)
  gw.service.request.set_header(conf.request_header, conf.value)
end

function {{CLASS}}:header_filter(conf)
  gw.response.set_header(conf.response_header, conf.value)
end

return {{CLASS}}
]]

local SCHEMA = [[
return {
  name = "{{NAME}}",
  fields = {
    { request_header = { type = "string", default = "X-{{CLASS}}", required = true,
                         match = "^[%w%-]+$", description = "header added to the upstream request" } },
    { response_header = { type = "string", default = "X-{{CLASS}}-Response", required = true,
                          match = "^[%w%-]+$", description = "header added to the response" } },
    { value = { type = "string", default = "on", description = "value of both headers" } },
  },
}
]]

local README = [[
# {{NAME}}

Adds `request_header: value` to the request sent upstream and `response_header: value` to the
response.

| field | type | default | |
|---|---|---|---|
| request_header | string | X-{{CLASS}} | header added to the upstream request |
| response_header | string | X-{{CLASS}}-Response | header added to the response |
| value | string | on | value of both headers |

    services:
      - name: example
        url: http://127.0.0.1:9000
        routes: [{ paths: ["/"] }]
        plugins:
          - name: {{NAME}}
            config: { value: "hello" }

Load it with `gw.plugins_path: ["{{DIR}}"]` in the gateway config. Test it with
`gw test {{DIR}}/{{NAME}}/spec`.
]]

local UNIT = [[
-- Unit specs: the schema, and the handler called directly on a test request context.
local helpers = require "spec.helpers"

-- the directory that holds this plugin's folder (…/<dir>/{{NAME}}/spec/this file)
local PLUGIN_DIR = debug.getinfo(1, "S").source:sub(2):match("^(.*)/{{NAME_PAT}}/spec/[^/]+$") or "."

describe("{{NAME}} (unit)", function()
  it("fills defaults from its schema", function()
    local conf = assert(helpers.validate_plugin_config("{{NAME}}", {}, { PLUGIN_DIR }))
    assert.equal("X-{{CLASS}}", conf.request_header)
    assert.equal("on", conf.value)
  end)

  it("rejects a bad header name with the gateway's message", function()
    local conf, errs = helpers.validate_plugin_config("{{NAME}}", { request_header = "bad header" }, { PLUGIN_DIR })
    assert.is_nil(conf)
    assert.matches("plugins%[0%]%.config%.request_header: ", errs[1])
  end)

  it("sets the upstream request header in access", function()
    local handler = dofile(PLUGIN_DIR .. "/{{NAME}}/handler.lua")
    local ctx = gw.test.context{ method = "GET", path = "/hello", headers = { host = "example.com" } }
    ctx:run(handler, "access", { request_header = "X-Test", response_header = "X-Test-Response", value = "yes" })
    assert.equal("yes", ctx:upstream_header("X-Test"))
    assert.is_nil(ctx.exit_status)
  end)
end)
]]

local INTEGRATION = [[
-- Integration specs: a real gw loading the plugin from its own directory, a real upstream.
local helpers = require "spec.helpers"

local PLUGIN_DIR = debug.getinfo(1, "S").source:sub(2):match("^(.*)/{{NAME_PAT}}/spec/[^/]+$") or "."

describe("{{NAME}} (integration)", function()
  local client

  lazy_setup(function()
    local ports = helpers.start_mock_upstream{ name = "{{NAME}}-upstream" }
    helpers.start_gw{
      plugins_path = { PLUGIN_DIR },
      config = {
        services = { {
          name = "upstream",
          url = "http://127.0.0.1:" .. ports[1],
          routes = { { paths = { "/" } } },
          plugins = { { name = "{{NAME}}", config = { value = "hello" } } },
        } },
      },
    }
  end)
  lazy_teardown(helpers.stop_all)
  before_each(function() client = helpers.proxy_client() end)
  after_each(function() client:close() end)

  it("adds its header to the upstream request and to the response", function()
    local res = client:get("/anything")
    assert.res_status(200, res)
    assert.equal("hello", assert.request(res).has.header("X-{{CLASS}}"))
    assert.equal("hello", assert.response(res).has.header("X-{{CLASS}}-Response"))
  end)
end)
]]

local function render(t, vars)
  return (t:gsub("{{([%u_]+)}}", function(k) return vars[k] end))
end

--- Creates the plugin; returns the plugin folder or nil, err.
function M.new_plugin(name, dir)
  if type(name) ~= "string" or not name:match("^[a-z][a-z0-9%-]*$") then
    return nil, "plugin name must be lowercase letters, digits and '-', starting with a letter"
  end
  dir = dir or "plugins"
  local root = dir .. "/" .. name
  if exists(root .. "/handler.lua") then return nil, root .. " already has a handler.lua" end
  local class = name:gsub("^%l", string.upper):gsub("%-(%w)", function(c) return c:upper() end)
  local abs = dir
  if abs:sub(1, 1) ~= "/" then
    local ok, lfs = pcall(require, "lfs")
    abs = (ok and lfs.currentdir() or os.getenv("PWD") or ".") .. "/" .. dir
  end
  local vars = { NAME = name, CLASS = class, DIR = abs, NAME_PAT = name:gsub("%-", "%%-") }
  local ok = os.execute("mkdir -p '" .. root:gsub("'", "'\\''") .. "/spec'")
  if ok ~= 0 and ok ~= true then return nil, "cannot create " .. root end
  for file, t in pairs({ ["handler.lua"] = HANDLER, ["schema.lua"] = SCHEMA, ["README.md"] = README,
                         ["spec/01-unit_spec.lua"] = UNIT, ["spec/02-integration_spec.lua"] = INTEGRATION }) do
    local wok, err = write(root .. "/" .. file, render(t, vars))
    if not wok then return nil, err end
  end
  return root
end

return M
