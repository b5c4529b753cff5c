-- Shared by the request-transformer and response-transformer specs (loaded with dofile; not a
-- spec itself): a table merge for header sets, and the README checks (YAML blocks that compile,
-- the first one started on free ports, shell commands run against it).
local helpers = require "spec.helpers"
local config = require "gw.config"

local M = {}

--- A copy of `h` with the pairs of `extra` set on it.
function M.with(h, extra)
  local t = {}
  for k, v in pairs(h) do t[k] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

--- The plugin's README text and its ```yaml blocks, each checked to compile as a whole config.
function M.readme(plugin)
  local text = assert(helpers.read_file(helpers.repo .. "/plugins/" .. plugin .. "/README.md"))
  local yamls = helpers.fenced_blocks(text, "yaml")
  assert(#yamls > 0, plugin .. "/README.md has no yaml block")
  for _, y in ipairs(yamls) do
    local c, errs = config.load_string(y, plugin .. "/README.md")
    assert(c, errs and table.concat(errs, "\n"))
  end
  return text, yamls
end

--- Starts gw on a README config (its `gw:` section gets free listen ports); returns the proxy port.
function M.start(yaml)
  local y, n = yaml:gsub("\ngw:\n", '\ngw:\n  listen: ["127.0.0.1:{PROXY_PORT}"]\n  admin_listen: "127.0.0.1:{ADMIN_PORT}"\n', 1)
  assert(n == 1, "the README's config has no gw: section")
  return helpers.start_gw{ yaml = y }.proxy_port
end

--- The first ```text block of `text` that starts with "$ curl".
function M.curl_block(text)
  for _, b in ipairs(helpers.fenced_blocks(text, "text")) do
    if b:find("^%$ curl") then return b end
  end
  error("no curl session in the README")
end

--- Runs a README shell command with localhost:8000 pointed at `port`; returns its output.
function M.run(command, port)
  local p = assert(io.popen(command:gsub("localhost:8000", "127.0.0.1:" .. port) .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  return out
end

return M
