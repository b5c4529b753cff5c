-- Shared by the request-transformer and response-transformer specs (loaded with dofile; not a
-- spec itself): a table merge for header sets, and the README's shell commands run against a gw.
local helpers = require "spec.helpers"

local M = {}

--- A copy of `h` with the pairs of `extra` set on it.
function M.with(h, extra)
  local t = {}
  for k, v in pairs(h) do t[k] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
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
