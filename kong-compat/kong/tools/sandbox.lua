-- kong.tools.sandbox (gw kong-compat): Kong's `untrusted_lua` setting as gw runs it: "sandbox"
-- (templates and expressions get an empty environment of their own).
local _M = {}

_M.configuration = {
  enabled = true,
  sandbox_enabled = true,
  requires = {},
  environment = {},
}

--- Compiles `code` (a Lua chunk returning a function, as Kong's serverless plugins write it) in
-- an empty environment and returns that function.
function _M.validate_function(code, opts)
  local chunk, err = loadstring(code, "=sandbox")
  if not chunk then return nil, "Error parsing function: " .. tostring(err) end
  setfenv(chunk, setmetatable({}, { __index = opts and opts.env or {} }))
  local ok, fn = pcall(chunk)
  if not ok then return nil, fn end
  if type(fn) ~= "function" then return nil, "Bad return value from function, expected function type, got " .. type(fn) end
  return fn
end

function _M.validate(code)
  local ok, err = _M.validate_function(code)
  if not ok then return nil, err end
  return true
end

_M.sandbox = function(code, opts)
  local chunk, err = loadstring(code, "=sandbox")
  if not chunk then return nil, err end
  setfenv(chunk, setmetatable({}, { __index = opts and opts.env or {} }))
  return chunk
end

return _M
