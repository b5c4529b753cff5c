--- gw.test — unit-testing a plugin handler without a server.
-- `gw.test.context{ method=, path=, headers=, body=, client_ip= }` builds a request; `ctx:run`
-- calls a handler's phase method on it through the real gw.* API (FFI functions, phase checks,
-- gw.sleep on the event loop). Afterwards the context shows what the handler changed.
-- @module gw.test
local C = require "gw.test_c"
local gw = require "gw"

local M = {}

local PHASE_NO = {}
for i = 0, 8 do PHASE_NO[gw.PHASES[i]] = i end

local Ctx = {}
Ctx.__index = Ctx

local function refresh(self)
  local st = C.state(self._c)
  self.upstream = st.upstream           -- {method, path, query, headers, body, target, upstream, service}
  self.response = st.response           -- {status, headers, body}
  self.shared = st.shared               -- gw.ctx.shared
  self.exit_status = st.exited and st.response.status or nil
  self.exit_body = st.exited and st.response.body or nil
end

--- Runs `handler[phase](handler, conf)` as the gateway would.
-- @return true, or "exit" when the handler called gw.response.exit; raises on a handler error
function Ctx:run(handler, phase, conf)
  local no = PHASE_NO[phase]
  if not no then error("gw.test.context:run: unknown phase '" .. tostring(phase) .. "'", 2) end
  local fn = handler[phase]
  if type(fn) ~= "function" then error("gw.test.context:run: the handler has no " .. phase .. " method", 2) end
  local name = self.plugin_name or "test"
  local function invoke(h, c)
    gw._set_current_plugin(name)
    return fn(h, c)
  end
  local res, err = C.run(self._c, no, invoke, handler, conf or {})
  refresh(self)
  if not res then error(err, 2) end
  return res == "exit" and "exit" or true
end

--- Sets the upstream response a header_filter/body_filter/log handler will see (`body`: what
-- gw.response.get_raw_body() returns in body_filter).
function Ctx:set_response(status, headers, body)
  C.set_response(self._c, status, headers or {}, body)
  refresh(self)
end

local function lookup(t, name)
  if not t then return nil end
  local v = t[name:lower()]
  if type(v) == "table" then return v[1] end
  return v
end

--- First value of a header of the upstream request (case-insensitive).
function Ctx:upstream_header(name) return lookup(self.upstream.headers, name) end
--- First value of a response header (case-insensitive).
function Ctx:response_header(name) return lookup(self.response.headers, name) end

--- Every value of a response header, as a list ({} when there is none).
function Ctx:response_headers(name)
  local v = self.response.headers and self.response.headers[name:lower()]
  if type(v) == "table" then return v end
  return { v }
end

function M.context(spec)
  if spec ~= nil and type(spec) ~= "table" then error("gw.test.context: expected a table", 2) end
  local self = setmetatable({ _c = C.new(spec or {}), plugin_name = spec and spec.plugin }, Ctx)
  refresh(self)
  return self
end

gw.test = M
return M
