--- gw — the Lua API of the gateway, available to plugins as the global `gw`.
-- Hot calls (headers, path, exit) go through LuaJIT FFI into exported C functions
-- (runtime/lua/ffi.c); calls that yield (gw.sleep, reading the body) are classic C functions
-- (runtime/lua/api.c). Each public function is allowed in a set of phases; a call outside
-- them raises an error naming the function, the current phase and the allowed ones.
-- @module gw
local ffi = require "ffi"
local bit = require "bit"
local json = require "gw.json"     -- exact numbers, [] kept apart from {}
local core = require "gw.core"

-- LuaJIT's trace limits, raised for plugin chains: a side trace that leaves a handler's inner
-- loop records the rest of that handler and the API calls it inlines, and with the default
-- 4,000 IR instructions it could be refused as "trace too long", after which that path ran in
-- the interpreter on every request (bench/RESULTS.md). The machine-code area grows as needed.
require("jit.opt").start("maxtrace=4000", "maxrecord=16000", "maxirconst=2000", "maxside=200",
                         "maxsnap=2000", "maxmcode=4096")

local C = ffi.C
local band, bor, lshift = bit.band, bit.bor, bit.lshift
local ffi_string = ffi.string
local type, tostring, error, pairs, ipairs, select = type, tostring, error, pairs, ipairs, select
local concat = table.concat

ffi.cdef [[
int gw_ffi_phase(void);
int gw_ffi_req_str(int which, const char **p, size_t *n);
int gw_ffi_req_port(int peer);
int gw_ffi_set_body_limit(int64_t n);
int gw_ffi_set_consumer(const char *s, size_t n);
int gw_ffi_skip_body_filter(void);
int gw_ffi_timings(double *out);
uint64_t gw_ffi_now_us(void);
int gw_ffi_set_request_id(const char *s, size_t n);
int gw_ffi_header_count(int resp);
int gw_ffi_header_at(int resp, int i, const char **np, size_t *nn, const char **vp, size_t *vn);
int gw_ffi_get_header(int resp, const char *name, size_t nl, int from, const char **vp, size_t *vn);
int gw_ffi_header_count_name(int resp, const char *name, size_t nl);
int gw_ffi_set_header(int resp, const char *name, size_t nl, const char *v, size_t vl, int flags);
int gw_ffi_set_header_num(int resp, const char *name, size_t nl, double v, int flags);
int gw_ffi_clear_header(int resp, const char *name, size_t nl, int flags);
int gw_ffi_set_str(int which, const char *s, size_t n);
int gw_ffi_get_status(void);
int gw_ffi_set_status(int status);
int gw_ffi_exit(int status, const char *body, size_t len);
int gw_ffi_set_upstream(const char *name, size_t nl);
int gw_ffi_set_target(const char *host, size_t hl, int port);
int gw_ffi_set_timeouts(int connect_ms, int write_ms, int read_ms);
int gw_ffi_ctx_ref(void);
int gw_ffi_plugin(void);
int gw_ffi_set_plugin(int id);
int gw_ffi_enter_plugin(int id, int at);
double gw_ffi_now(void);
void gw_ffi_name_plugin(int id, const char *name);
]]

local gw = { version = "0.1.0" }
local phase_timings   -- see gw.request.get_phase_timings

-- Phases (numbers match enum gw_phase in runtime/gen.h)
local PHASES = { [0] = "init_worker", "rewrite", "access", "balancer", "header_filter", "body_filter",
  "log", "admin", "timer" }
local P = {}
for i = 0, 8 do P[PHASES[i]] = lshift(1, i) end
gw.PHASES = PHASES

local in_init_worker = false
-- The plugin whose handler runs, per request: a handler that yields (gw.sleep, reading the
-- body) lets other requests' plugins run meanwhile, so one global variable would be wrong
-- when it resumes. The request keeps the plugin's id in C (gw_req.plugin_id, one FFI store: no
-- coroutine lookup per handler); outside a request (timers) it is per coroutine, and the main
-- thread (init_worker) uses `main_plugin`.
local co_running = coroutine.running
local plugin_of = setmetatable({}, { __mode = "k" })
local main_plugin
local plugin_ids, plugin_names = {}, {}   -- name -> id, id -> name (ids from 1)
local function plugin_id(name)
  local id = plugin_ids[name]
  if not id then
    id = #plugin_names + 1
    plugin_names[id], plugin_ids[name] = name, id
    C.gw_ffi_name_plugin(id, name)   -- C keeps the name: the watchdog reports it (worker.c)
  end
  return id
end
local function current_plugin()
  local id = C.gw_ffi_plugin()
  if id >= 0 then return plugin_names[id] end
  local co = co_running()
  if co then return plugin_of[co] end
  return main_plugin
end
local function set_current_plugin(name)
  if C.gw_ffi_set_plugin(name and plugin_id(name) or 0) == 0 then return end
  local co = co_running()
  if co then plugin_of[co] = name else main_plugin = name end
end

-- gw.ctx.shared of the running request: the registry slot C keeps it in, read without a call
-- into the classic C API; made (core.ctx) on first use. nil outside a request.
local REGISTRY = debug.getregistry()
local function ctx()
  local ref = C.gw_ffi_ctx_ref()
  if ref >= 0 then return REGISTRY[ref] end
  if ref == -1 then return core.ctx() end
  return nil
end

local function phase_no()
  local ph = C.gw_ffi_phase()
  if ph >= 0 then return ph end
  return in_init_worker and 0 or 8
end

--- The current phase name ("access", ...; "timer" in a timer, "init_worker" at start).
function gw.get_phase() return PHASES[phase_no()] end

local function mask_of(...)
  local m = 0
  for i = 1, select("#", ...) do m = bor(m, P[select(i, ...)]) end
  return m
end

local function allowed_list(mask)
  local t = {}
  for i = 0, 8 do if band(mask, lshift(1, i)) ~= 0 then t[#t + 1] = PHASES[i] end end
  return concat(t, ", ")
end

-- Raises when the current phase is not in mask.
local function check_phase(fname, mask)
  local ph = phase_no()
  if band(mask, lshift(1, ph)) == 0 then
    error(fname .. ": not allowed in the " .. PHASES[ph] .. " phase (allowed in: " .. allowed_list(mask) .. ")", 3)
  end
end
gw._check_phase = check_phase

local REQ = mask_of("rewrite", "access", "balancer", "header_filter", "body_filter", "log", "admin")
local SVC = mask_of("rewrite", "access", "balancer")
local PRE = mask_of("rewrite", "access")
local RESP_READ = mask_of("header_filter", "body_filter", "log")
local RESP_WRITE = mask_of("rewrite", "access", "header_filter")
local YIELDABLE = mask_of("rewrite", "access", "timer", "log")
gw._YIELDABLE = YIELDABLE -- where a coroutine may suspend: gw.sleep, gw.http, gw.redis

local sp = ffi.new("const char *[1]")
local sn = ffi.new("size_t[1]")
local np = ffi.new("const char *[1]")
local nn = ffi.new("size_t[1]")

-- which-strings (enum in ffi.c)
local S_METHOD, S_PATH, S_RAW_QUERY, S_HOST, S_SCHEME, S_CLIENT_IP, S_ROUTE, S_SERVICE, S_REQUEST_ID,
      S_UP_PATH, S_UP_QUERY, S_UP_METHOD, S_TARGET, S_VERSION, S_URI = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14

local function req_str(which)
  if C.gw_ffi_req_str(which, sp, sn) ~= 0 then return nil end
  if sn[0] == 0 then return "" end
  return ffi_string(sp[0], sn[0])
end

local function check_string(fname, name, v)
  if type(v) ~= "string" then
    error(fname .. ": " .. name .. " must be a string, got " .. type(v), 3)
  end
end

local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function parse_args(s, max)
  local t = {}
  if not s or s == "" then return t end
  local n = 0
  for pair in s:gmatch("[^&]+") do
    n = n + 1
    if max and n > max then break end
    local k, v = pair:match("^([^=]*)=(.*)$")
    if k then k, v = unescape(k), unescape(v) else k, v = unescape(pair), true end
    local old = t[k]
    if old == nil then t[k] = v
    elseif type(old) == "table" then old[#old + 1] = v
    else t[k] = { old, v } end
  end
  return t
end

local function encode_args(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "table" then
      for _, x in ipairs(v) do out[#out + 1] = escape(k) .. "=" .. escape(x) end
    elseif v == true then out[#out + 1] = escape(k)
    elseif v ~= false then out[#out + 1] = escape(k) .. "=" .. escape(v) end
  end
  return concat(out, "&")
end
gw._encode_args = encode_args   -- gw.http encodes its query tables the same way

-- header tables answer any spelling: t["Content_Type"] finds "content-type" (one metatable for
-- all, so no closure is made per call: closures stop LuaJIT's traces)
local HEADERS_MT = { __index = function(tt, k)
  if type(k) ~= "string" then return nil end
  local lk = k:lower():gsub("_", "-")
  if lk ~= k then return rawget(tt, lk) end
end }

local function headers_of(resp, max)
  local t = setmetatable({}, HEADERS_MT)
  local n = C.gw_ffi_header_count(resp)
  if max and n > max then n = max end
  for i = 0, n - 1 do
    if C.gw_ffi_header_at(resp, i, np, nn, sp, sn) == 0 then
      local k = ffi_string(np[0], nn[0]):lower()
      local v = ffi_string(sp[0], sn[0])
      local old = rawget(t, k)
      if old == nil then t[k] = v
      elseif type(old) == "table" then old[#old + 1] = v
      else t[k] = { old, v } end
    end
  end
  return t
end

local function get_header(resp, name)
  local i = C.gw_ffi_get_header(resp, name, #name, 0, sp, sn)
  if i < 0 then return nil end
  return ffi_string(sp[0], sn[0])
end

local function header_value(fname, v)
  if type(v) == "number" then return tostring(v) end
  if type(v) == "table" then
    for i = 1, #v do v[i] = tostring(v[i]) end
    return v
  end
  if type(v) ~= "string" then error(fname .. ": header value must be a string, got " .. type(v), 3) end
  if v:find("[\r\n%z]") then error(fname .. ": header value must not contain CR, LF or NUL", 3) end
  return v
end

local function valid_name(fname, name)
  check_string(fname, "header name", name)
  if name == "" or name:find("[^%w!#$%%&'*+%-.^_`|~]") then
    error(fname .. ": invalid header name '" .. name .. "'", 3)
  end
end

-- Header names set before: C checked them then, and this table keeps each string alive for the
-- VM's life, so C skips the check and points at the string instead of copying it (flag 2). Bounded:
-- past KNOWN_MAX names (generated ones), a new name is checked and copied on every call.
local known_names, n_known, KNOWN_MAX = {}, 0, 4096
local function remember_name(name)
  if n_known < KNOWN_MAX then known_names[name] = true; n_known = n_known + 1 end
end

-- C checks the name and the value (-4 bad name, -5 bad value): the common case runs no pattern
-- here; a refused header is checked again in Lua for the exact error. A number is written by C
-- (no string made here) unless it is not an integer of up to 14 digits (-6: tostring does it).
local function set_header(resp, fname, name, value, add)
  local tv = type(value)
  if type(name) == "string" and (tv == "string" or tv == "number") then
    local known = known_names[name]
    local flags = (add and 1 or 0) + (known and 2 or 0)
    local rc
    if tv == "number" then
      rc = C.gw_ffi_set_header_num(resp, name, #name, value, flags)
      if rc == -6 then
        value = tostring(value)
        rc = C.gw_ffi_set_header(resp, name, #name, value, #value, flags)
      end
    else
      rc = C.gw_ffi_set_header(resp, name, #name, value, #value, flags)
    end
    if rc == 0 then
      if not known then remember_name(name) end
      return
    end
    if rc ~= -4 and rc ~= -5 then error(fname .. ": too many headers", 3) end
  end
  valid_name(fname, name)
  value = header_value(fname, value)
  if type(value) == "table" then
    if not add then C.gw_ffi_clear_header(resp, name, #name, 0) end
    for _, v in ipairs(value) do
      local rc = C.gw_ffi_set_header(resp, name, #name, v, #v, 1)
      if rc == -5 then error(fname .. ": header value must not contain CR, LF or NUL", 3) end
      if rc ~= 0 then error(fname .. ": too many headers", 3) end
    end
    return
  end
  if C.gw_ffi_set_header(resp, name, #name, value, #value, add and 1 or 0) ~= 0 then
    error(fname .. ": too many headers", 3)
  end
end

-- Removes every header `name` of the request (0) or the response (1); a name C checked before
-- (one of known_names) is not checked again.
local function clear_header(resp, fname, name)
  if type(name) == "string" then
    local known = known_names[name]
    local rc = C.gw_ffi_clear_header(resp, name, #name, known and 2 or 0)
    if rc ~= -4 then
      if not known and rc == 0 then remember_name(name) end
      return
    end
  end
  valid_name(fname, name)
end

---------------------------------------------------------------------------------------------------
--- gw.request: the request as the client sent it.
-- @section request
local request = {}
gw.request = request

--- @function gw.request.get_method @phases rewrite, access, header_filter, body_filter, log
function request.get_method() check_phase("gw.request.get_method", REQ) return req_str(S_METHOD) end
function request.get_scheme() check_phase("gw.request.get_scheme", REQ) return req_str(S_SCHEME) end
function request.get_host() check_phase("gw.request.get_host", REQ) return (req_str(S_HOST) or ""):lower() end
function request.get_port() check_phase("gw.request.get_port", REQ) return C.gw_ffi_req_port(0) end
function request.get_path() check_phase("gw.request.get_path", REQ) return req_str(S_PATH) end
function request.get_raw_query() check_phase("gw.request.get_raw_query", REQ) return req_str(S_RAW_QUERY) end
function request.get_path_with_query()
  check_phase("gw.request.get_path_with_query", REQ)
  local q = req_str(S_RAW_QUERY)
  return req_str(S_PATH) .. (q ~= "" and ("?" .. q) or "")
end
function request.get_http_version()
  check_phase("gw.request.get_http_version", REQ)
  return tonumber(req_str(S_VERSION))
end
function request.get_client_ip() check_phase("gw.request.get_client_ip", REQ) return req_str(S_CLIENT_IP) end
function request.get_id() check_phase("gw.request.get_id", REQ) return req_str(S_REQUEST_ID) end

--- Query arguments as a table (repeated keys give arrays, valueless keys give true).
function request.get_query(max)
  check_phase("gw.request.get_query", REQ)
  return parse_args(req_str(S_RAW_QUERY), max or 100)
end

function request.get_query_arg(name)
  check_phase("gw.request.get_query_arg", REQ)
  check_string("gw.request.get_query_arg", "name", name)
  local v = parse_args(req_str(S_RAW_QUERY), 1000)[name]
  if type(v) == "table" then return v[1] end
  return v
end

--- First value of a request header (case-insensitive, "_" matches "-"), or nil.
function request.get_header(name)
  check_phase("gw.request.get_header", REQ)
  check_string("gw.request.get_header", "name", name)
  return get_header(0, name)
end

--- How many request headers are named `name` (0 when none): duplicate checks without building
-- the whole header table.
-- @phases rewrite, access, balancer, header_filter, body_filter, log
function request.get_header_count(name)
  check_phase("gw.request.get_header_count", REQ)
  check_string("gw.request.get_header_count", "name", name)
  return C.gw_ffi_header_count_name(0, name, #name)   -- one call: a loop here is a trace of its own
end

function request.get_headers(max)
  check_phase("gw.request.get_headers", REQ)
  return headers_of(0, max or 100)
end

--- The captures of the matched route's regex path: { unnamed = {[0] = whole, "g1", ...},
-- named = { name = "..." } } (groups that did not take part are false); both empty when the
-- route matched by a prefix path or by no path.
function request.get_uri_captures()
  check_phase("gw.request.get_uri_captures", REQ)
  local caps = core.uri_captures()
  local unnamed, named = {}, {}
  if caps then
    for k, v in pairs(caps) do
      if type(k) == "number" then unnamed[k] = v else named[k] = v end
    end
  end
  return { unnamed = unnamed, named = named }
end

--- When the request's moments happened, in unix seconds (microsecond precision): { start =
-- the head was complete, upstream_start = first connect attempt, upstream_end = the upstream
-- response complete or given up } (the upstream ones nil when the request did not go upstream,
-- or not yet).
local timings_buf = ffi.new("double[3]")
-- ctx.shared table -> flat list of phase timings (kept out of gw.ctx.shared)
phase_timings = setmetatable({}, { __mode = "k" })
local function happened(x) return x ~= 0 and x or nil end
function request.get_timings()
  check_phase("gw.request.get_timings", REQ)
  C.gw_ffi_timings(timings_buf)
  return { start = timings_buf[0], upstream_start = happened(timings_buf[1]), upstream_end = happened(timings_buf[2]) }
end

--- The plugin phases this request ran so far, when its chain has a plugin asking for them
-- (handler.TRACE_PHASES = true): a list of { plugin =, phase =, start =, finish = } in unix
-- seconds, in the order they ran. Empty otherwise.
function request.get_phase_timings()
  check_phase("gw.request.get_phase_timings", REQ)
  local t = ctx()
  local rec = t and phase_timings[t]
  if not rec then return {} end
  local mono0, unix0 = tonumber(C.gw_ffi_now_us()), core.now()
  local out = {}
  for i = 1, #rec, 4 do
    if rec[i + 3] ~= 0 then     -- 0: still running (the caller's own phase)
      out[#out + 1] = { plugin = rec[i], phase = rec[i + 1],
                        start = unix0 - (mono0 - rec[i + 2]) / 1e6, finish = unix0 - (mono0 - rec[i + 3]) / 1e6 }
    end
  end
  return out
end

--- Replaces the request's id (gw.request.get_id, error log lines, the access log's $request_id):
-- 1 to 63 printable ASCII characters. A correlation plugin gives the gateway its X-Request-ID.
function request.set_id(id)
  check_phase("gw.request.set_id", PRE)
  check_string("gw.request.set_id", "id", id)
  if C.gw_ffi_set_request_id(id, #id) ~= 0 then
    error("gw.request.set_id: 1 to 63 printable ASCII characters without spaces expected", 2)
  end
end

--- Bounds this request's body to n bytes (0: no bound), in place of limits.max_body_size: a
-- body read or streamed past it ends the request with 413. Returns false when the declared
-- Content-Length (or what was read already) is over n, true otherwise.
function request.set_body_limit(n)
  check_phase("gw.request.set_body_limit", PRE)
  if type(n) ~= "number" or n < 0 or n ~= math.floor(n) then
    error("gw.request.set_body_limit: n must be an integer >= 0", 2)
  end
  return C.gw_ffi_set_body_limit(n) == 1
end

--- The whole request body as a string (reads it first when needed).
function request.get_raw_body()
  check_phase("gw.request.get_raw_body", PRE)
  return core.read_body()
end

--- The body decoded by its Content-Type: application/json or x-www-form-urlencoded.
-- @return table, or nil, err, mimetype
function request.get_body(mimetype)
  check_phase("gw.request.get_body", PRE)
  local ct = mimetype or get_header(0, "content-type") or ""
  local body, err = core.read_body()
  if not body then return nil, err end
  ct = ct:lower()
  if ct:find("application/json", 1, true) or ct:find("+json", 1, true) then
    local v, jerr = json.decode(body)
    if v == nil then return nil, "invalid JSON body: " .. tostring(jerr), "application/json" end
    return v, nil, "application/json"
  elseif ct:find("application/x-www-form-urlencoded", 1, true) then
    return parse_args(body, 1000), nil, "application/x-www-form-urlencoded"
  end
  return nil, "unsupported content type '" .. ct .. "'", ct
end

---------------------------------------------------------------------------------------------------
--- gw.service: where the request goes.
local service = { request = {} }
gw.service = service

--- Sends the request to the named upstream (or service's balancer) instead of the route's.
function service.set_upstream(name)
  check_phase("gw.service.set_upstream", SVC)
  check_string("gw.service.set_upstream", "name", name)
  if C.gw_ffi_set_upstream(name, #name) ~= 0 then return nil, "could not find an upstream named '" .. name .. "'" end
  return true
end

function service.set_target(host, port)
  check_phase("gw.service.set_target", SVC)
  check_string("gw.service.set_target", "host", host)
  if type(port) ~= "number" or port < 1 or port > 65535 or port % 1 ~= 0 then
    error("gw.service.set_target: port must be an integer between 1 and 65535", 2)
  end
  if C.gw_ffi_set_target(host, #host, port) ~= 0 then return nil, "could not resolve " .. host end
  return true
end

--- Timeouts in milliseconds for this request.
function service.set_timeouts(connect, write, read)
  check_phase("gw.service.set_timeouts", SVC)
  for _, v in ipairs({ connect, write, read }) do
    if type(v) ~= "number" or v < 1 then error("gw.service.set_timeouts: timeouts must be numbers >= 1 (ms)", 2) end
  end
  if C.gw_ffi_set_timeouts(connect, write, read) ~= 0 then return nil, "no service" end
  return true
end

-- set_header / add_header / clear_header / set_headers on the upstream request (which = 0) or the
-- response (which = 1): the same four functions, named `prefix.*` in their errors.
local function header_setters(t, prefix, which, mask)
  local n_set, n_add, n_clear, n_sets = prefix .. ".set_header", prefix .. ".add_header",
    prefix .. ".clear_header", prefix .. ".set_headers"
  function t.set_header(name, value)
    check_phase(n_set, mask)
    set_header(which, n_set, name, value, false)
  end
  function t.add_header(name, value)
    check_phase(n_add, mask)
    set_header(which, n_add, name, value, true)
  end
  function t.clear_header(name)
    check_phase(n_clear, mask)
    clear_header(which, n_clear, name)
  end
  function t.set_headers(h)
    check_phase(n_sets, mask)
    if type(h) ~= "table" then error(n_sets .. ": headers must be a table", 2) end
    for k, v in pairs(h) do set_header(which, n_sets, k, v, false) end
  end
end

local sreq = service.request

function sreq.set_method(m)
  check_phase("gw.service.request.set_method", PRE)
  check_string("gw.service.request.set_method", "method", m)
  if not m:match("^[A-Z]+$") then error("gw.service.request.set_method: invalid method '" .. m .. "'", 2) end
  C.gw_ffi_set_str(S_UP_METHOD, m, #m)
end

function sreq.set_path(p)
  check_phase("gw.service.request.set_path", PRE)
  check_string("gw.service.request.set_path", "path", p)
  if p:sub(1, 1) ~= "/" or p:find("[%s%z?#]") then
    error("gw.service.request.set_path: path must start with / and contain no spaces, ? or #", 2)
  end
  C.gw_ffi_set_str(S_UP_PATH, p, #p)
end

function sreq.set_raw_query(q)
  check_phase("gw.service.request.set_raw_query", PRE)
  check_string("gw.service.request.set_raw_query", "query", q)
  if q:find("[%s%z#]") then error("gw.service.request.set_raw_query: query must contain no spaces or #", 2) end
  C.gw_ffi_set_str(S_UP_QUERY, q, #q)
end

function sreq.set_query(t)
  check_phase("gw.service.request.set_query", PRE)
  if type(t) ~= "table" then error("gw.service.request.set_query: args must be a table", 2) end
  local q = encode_args(t)
  C.gw_ffi_set_str(S_UP_QUERY, q, #q)
end

header_setters(sreq, "gw.service.request", 0, PRE)

-- The hot two again as functions of their own: closures of one prototype share LuaJIT's traces,
-- which take their upvalues (request or response) as constants, so the other side would leave
-- the trace on every call.
function sreq.set_header(name, value)
  check_phase("gw.service.request.set_header", PRE)
  set_header(0, "gw.service.request.set_header", name, value, false)
end

function sreq.clear_header(name)
  check_phase("gw.service.request.clear_header", PRE)
  clear_header(0, "gw.service.request.clear_header", name)
end

function sreq.set_raw_body(body)
  check_phase("gw.service.request.set_raw_body", PRE)
  check_string("gw.service.request.set_raw_body", "body", body)
  core.read_body() -- the original body must be consumed first
  core.set_body(body)
end

--- Encodes a table as the new body, by mimetype (default: the request's Content-Type, else JSON).
function sreq.set_body(t, mimetype)
  check_phase("gw.service.request.set_body", PRE)
  if type(t) ~= "table" then error("gw.service.request.set_body: body must be a table", 2) end
  local ct = mimetype or get_header(0, "content-type") or "application/json"
  local body
  if ct:find("x-www-form-urlencoded", 1, true) then
    body = encode_args(t)
  else
    local err
    body, err = json.encode(t)
    if not body then return nil, err end
    if not ct:find("json", 1, true) then ct = "application/json" end
  end
  core.read_body()
  core.set_body(body)
  set_header(0, "gw.service.request.set_body", "Content-Type", ct, false)
  return true
end

---------------------------------------------------------------------------------------------------
--- gw.response
local response = {}
gw.response = response

local EXIT = setmetatable({}, { __tostring = function() return "gw.response.exit" end })

--- Ends the request with this response: body a string, or a table sent as JSON.
-- @phases rewrite, access
function response.exit(status, body, headers)
  check_phase("gw.response.exit", PRE)
  if type(status) ~= "number" or status < 100 or status > 599 or status % 1 ~= 0 then
    error("gw.response.exit: status must be an integer between 100 and 599", 2)
  end
  if headers ~= nil and type(headers) ~= "table" then error("gw.response.exit: headers must be a table", 2) end
  -- the yield below must end the handler's own coroutine, not one the plugin created
  if not core.own_co() or current_plugin() == nil then
    error("gw.response.exit: must be called from the plugin handler itself, not from a coroutine of its own", 2)
  end
  local ctype
  if type(body) == "table" then
    local err
    body, err = json.encode(body)
    if not body then error("gw.response.exit: cannot encode body: " .. tostring(err), 2) end
    ctype = "application/json; charset=utf-8"
  elseif body ~= nil and type(body) ~= "string" then
    error("gw.response.exit: body must be a string or a table", 2)
  end
  if headers then
    for k, v in pairs(headers) do set_header(1, "gw.response.exit", k, v, false) end
  end
  if ctype and not get_header(1, "content-type") then set_header(1, "gw.response.exit", "Content-Type", ctype, false) end
  body = body or ""
  local rec = phase_timings[ctx() or 0]
  if rec and rec[#rec] == 0 then rec[#rec] = tonumber(C.gw_ffi_now_us()) end   -- this phase ends here
  C.gw_ffi_exit(status, body, #body)
  set_current_plugin(nil)
  coroutine.yield(EXIT) -- never resumed: the request continues with the response
end

function response.get_status()
  check_phase("gw.response.get_status", RESP_READ)
  return C.gw_ffi_get_status()
end

function response.set_status(status)
  check_phase("gw.response.set_status", mask_of("header_filter"))
  if type(status) ~= "number" or status < 100 or status > 599 then
    error("gw.response.set_status: status must be an integer between 100 and 599", 2)
  end
  C.gw_ffi_set_status(status)
end

function response.get_header(name)
  check_phase("gw.response.get_header", RESP_READ)
  check_string("gw.response.get_header", "name", name)
  return get_header(1, name)
end

function response.get_headers(max)
  check_phase("gw.response.get_headers", RESP_READ)
  return headers_of(1, max or 100)
end

header_setters(response, "gw.response", 1, RESP_WRITE)

function response.set_header(name, value)     -- its own function: see sreq.set_header
  check_phase("gw.response.set_header", RESP_WRITE)
  set_header(1, "gw.response.set_header", name, value, false)
end

local BODY = mask_of("body_filter")

--- Called in header_filter by a plugin that implements body_filter but has nothing to do with
-- this response's body: its body_filter is skipped for this response, and when every body_filter
-- of the chain did so, the body streams to the client instead of being gathered.
-- ctx.shared table -> { plugin name -> true }
local bf_skip = setmetatable({}, { __mode = "k" })
function response.skip_body_filter()
  check_phase("gw.response.skip_body_filter", mask_of("header_filter"))
  local t = ctx()
  local set = bf_skip[t]
  if not set then set = {}; bf_skip[t] = set end
  local name = current_plugin() or ""
  if not set[name] then
    set[name] = true
    C.gw_ffi_skip_body_filter()
  end
end

--- The whole response body (body_filter only: a plugin that implements body_filter makes gw
-- gather the body before it goes out).
-- @phases body_filter
function response.get_raw_body()
  check_phase("gw.response.get_raw_body", BODY)
  return core.resp_body()
end

--- Replaces the response body; its Content-Length follows.
-- @phases body_filter
function response.set_raw_body(body)
  check_phase("gw.response.set_raw_body", BODY)
  check_string("gw.response.set_raw_body", "body", body)
  core.set_resp_body(body)
end

---------------------------------------------------------------------------------------------------
--- gw.ctx: per-request tables. gw.ctx.shared is shared by every plugin of the request;
-- gw.ctx.plugin is private to the running plugin.
-- private tables: ctx.shared table -> { plugin name -> table }, so they never show in shared
local private = setmetatable({}, { __mode = "k" })
gw.ctx = setmetatable({}, { __index = function(_, k)
  local t = ctx()
  if not t then return nil end
  if k == "shared" then return t end
  if k == "plugin" then
    local by_plugin = private[t]
    if not by_plugin then by_plugin = {} private[t] = by_plugin end
    local name = current_plugin() or ""
    local p = by_plugin[name]
    if not p then p = {} by_plugin[name] = p end
    return p
  end
end })

---------------------------------------------------------------------------------------------------
--- gw.log: error-log lines carrying the plugin name and the request id.
local LEVELS = { err = 0, warn = 1, notice = 2, info = 3, debug = 4 }
gw.log = {}
for name, lv in pairs(LEVELS) do
  gw.log[name] = function(...)
    local n = select("#", ...)
    local parts = {}
    for i = 1, n do parts[i] = tostring((select(i, ...))) end
    local msg = concat(parts)
    local cp = current_plugin()
    if cp then msg = "[" .. cp .. "] " .. msg end
    core.log(lv, msg)
  end
end
gw.log.error = gw.log.err
gw.log.warning = gw.log.warn

---------------------------------------------------------------------------------------------------
-- gw.json: lua/gw/json.lua (exact numbers, `[]` kept apart from `{}`, "/" unescaped)
gw.json = {
  encode = json.encode,
  decode = json.decode,
  null = json.null,
  array_mt = json.array_mt,
}

--- Wall-clock time in seconds (ms precision).
function gw.now() return C.gw_ffi_now() end

--- Suspends the current request (or timer) for `seconds` without blocking the worker.
function gw.sleep(seconds)
  check_phase("gw.sleep", YIELDABLE)
  if type(seconds) ~= "number" or seconds < 0 then error("gw.sleep: seconds must be a number >= 0", 2) end
  return core.sleep(seconds)
end

gw.timer = {
  --- Runs fn(premature, ...) after delay seconds, in its own coroutine.
  at = function(delay, fn, ...)
    if type(delay) ~= "number" or delay < 0 then error("gw.timer.at: delay must be a number >= 0", 2) end
    if type(fn) ~= "function" then error("gw.timer.at: callback must be a function", 2) end
    return core.timer_at(delay, fn, ...)
  end,
  every = function(interval, fn, ...)
    if type(interval) ~= "number" or interval <= 0 then error("gw.timer.every: interval must be a number > 0", 2) end
    if type(fn) ~= "function" then error("gw.timer.every: callback must be a function", 2) end
    return core.timer_every(interval, fn, ...)
  end,
}

---------------------------------------------------------------------------------------------------
--- gw.router: what matched.
local compiled_current
local by_route_name, by_service_name = {}, {}
gw.router = {
  get_route = function()
    check_phase("gw.router.get_route", REQ)
    local n = req_str(S_ROUTE)
    return n and (by_route_name[n] or { name = n }) or nil
  end,
  get_service = function()
    check_phase("gw.router.get_service", REQ)
    local n = req_str(S_SERVICE)
    return n and (by_service_name[n] or { name = n }) or nil
  end,
}

--- The client address behind trusted proxies: the TCP peer, unless it is in gw.trusted_ips; then
-- the gw.real_ip_header (X-Forwarded-For) addresses from the right, skipping trusted ones: the
-- first untrusted address, or the leftmost when all are trusted.
local trusted_for, trusted_set   -- the set of compiled_current (built on first use per generation)
local ipmod                      -- gw.ip, loaded with the first set
local function forwarded_ip()
  local peer = req_str(S_CLIENT_IP)
  local g = compiled_current and compiled_current.gw
  if not g or not g.trusted_ips or #g.trusted_ips == 0 then return peer end
  if trusted_for ~= compiled_current then
    ipmod = ipmod or require "gw.ip"
    trusted_set = ipmod.set(g.trusted_ips)
    trusted_for = compiled_current
  end
  if not trusted_set or not trusted_set:contains(peer) then return peer end
  local name = g.real_ip_header
  local list, n = {}, 0
  local from = 0
  while true do
    from = C.gw_ffi_get_header(0, name, #name, from, sp, sn)
    if from < 0 then break end
    for part in ffi.string(sp[0], sn[0]):gmatch("[^,]+") do
      n = n + 1
      list[n] = part:match("^%s*(.-)%s*$")
    end
    from = from + 1
  end
  if n == 0 then return peer end
  for i = n, 1, -1 do
    local a = list[i]
    if not ipmod.parse(a) then return peer end      -- garbage in the header: trust nothing more
    if i == 1 or not trusted_set:contains(a) then return a end
  end
  return peer
end

--- gw.client: who is calling.
gw.client = {
  get_ip = function() check_phase("gw.client.get_ip", REQ) return req_str(S_CLIENT_IP) end,
  get_forwarded_ip = function() check_phase("gw.client.get_forwarded_ip", REQ) return forwarded_ip() end,
  get_port = function() check_phase("gw.client.get_port", REQ) return C.gw_ffi_req_port(1) end,
  get_consumer = function() check_phase("gw.client.get_consumer", REQ) local t = ctx() return t and t.authenticated_consumer end,
  get_credential = function() check_phase("gw.client.get_credential", REQ) local t = ctx() return t and t.authenticated_credential end,
  authenticate = function(consumer, credential)
    check_phase("gw.client.authenticate", PRE)
    if consumer == nil and credential == nil then error("gw.client.authenticate: consumer or credential required", 2) end
    local t = ctx()
    t.authenticated_consumer = consumer
    t.authenticated_credential = credential
    local name = type(consumer) == "table" and (consumer.username or consumer.custom_id or consumer.id)
    if type(name) == "string" then C.gw_ffi_set_consumer(name, #name) end
  end,
}
gw.client.set_consumer = function(c) gw.client.authenticate(c, nil) end

--- gw.client.get_tls(): the TLS side of the client connection (runtime/tls.c), nil for plain HTTP.
ffi.cdef [[
int gw_ffi_tls_str(int which, int i, const char **p, size_t *n);
int gw_ffi_tls_reused(void);
]]
do
  local TLS_FIELDS = { "protocol", "cipher", "sni", "client_verify" }   -- which 0..3
  local CERT_FIELDS = { "client_subject", "client_issuer", "client_fingerprint", "client_serial" } -- 4..7
  local function tls_str(which, i)
    if C.gw_ffi_tls_str(which, i or 0, sp, sn) ~= 0 then return nil end
    return ffi_string(sp[0], sn[0])
  end
  gw.client.get_tls = function()
    check_phase("gw.client.get_tls", REQ)
    local reused = C.gw_ffi_tls_reused()
    if reused < 0 then return nil end
    local t = { session_reused = reused == 1 }
    for i, k in ipairs(TLS_FIELDS) do t[k] = tls_str(i - 1) end
    if t.client_verify ~= "NONE" then
      for i, k in ipairs(CERT_FIELDS) do t[k] = tls_str(i + 3) end
      local san, i = {}, 0
      while true do
        local v = tls_str(8, i)
        if not v then break end
        i = i + 1
        san[i] = v
      end
      t.client_san = san
    end
    return t
  end
end

--- gw.shared: shared-memory dicts, by name.
gw.shared = setmetatable({}, { __index = function(t, k)
  local ok, shared = pcall(require, "gw.shared")
  if not ok then return nil end
  local d = shared[k]
  if d then rawset(t, k, d) end
  return d
end })

--- gw.http: the non-blocking HTTP client (lua/gw/http.lua), loaded on first use.
gw.http = setmetatable({}, { __index = function(t, k)
  local m = require "gw.http"
  for name, v in pairs(m) do rawset(t, name, v) end
  return m[k]
end })

--- gw.metrics: plugin metrics in the Prometheus table (lua/gw/metrics.lua), loaded on first use.
gw.metrics = setmetatable({}, { __index = function(t, k)
  local m = require "gw.metrics"
  for name, v in pairs(m) do rawset(t, name, v) end
  return m[k]
end })

--- gw.redis: the non-blocking Redis client (lua/gw/redis.lua), loaded on first use.
gw.redis = setmetatable({}, { __index = function(t, k)
  local m = require "gw.redis"
  for name, v in pairs(m) do rawset(t, name, v) end
  return m[k]
end })

gw.worker = core.worker

---------------------------------------------------------------------------------------------------
-- Runtime entry points (called from C)

local traceback = debug.traceback

--- Runs phase `phase` (number) of every plugin of `chain`. Returns 0; a handler's error ends the
-- coroutine (C reports it). gw.response.exit yields the coroutine with EXIT; C treats that as the
-- end of the phase.
local BODY_FILTER_NO = 5
-- chain -> { [phase] = flat list fn, handler, conf, plugin id, name per instance that runs it },
-- made once per chain (a config generation's) and phase: the per-request loop does no lookups
local runs = setmetatable({}, { __mode = "k" })
local function run_list(chain, phase)
  local by_phase = runs[chain]
  if not by_phase then by_phase = {}; runs[chain] = by_phase end
  local name, list = PHASES[phase], {}
  for i = 1, #chain do
    local p = chain[i]
    local fn = p.phases[name] and p.handler[name]
    if fn then
      local n = #list
      list[n + 1], list[n + 2], list[n + 3], list[n + 4], list[n + 5] = fn, p.handler, p.conf, plugin_id(p.name), p.name
    end
  end
  by_phase[phase] = list
  return list
end

--- error(gw._END_HANDLER, 0) ends the running handler, not the request: the phase goes on with
-- the next plugin (C starts the runner again there). kong-compat's ngx.exit(ngx.OK) raises it.
gw._END_HANDLER = setmetatable({}, { __tostring = function() return "the handler ended itself" end })

function gw._run_phase(phase, chain, from)
  local by_phase = runs[chain]
  local list = by_phase and by_phase[phase] or run_list(chain, phase)
  local rec    -- phase timings (flat: plugin, phase, start µs, end µs) when the chain asks for them
  if chain.trace_phases then
    local t = ctx()
    rec = phase_timings[t]
    if not rec then rec = {}; phase_timings[t] = rec end
  end
  local skip = phase == BODY_FILTER_NO and bf_skip[ctx()]
  for i = from or 1, #list, 5 do
    local pname = list[i + 4]
    if not (skip and skip[pname]) then
      C.gw_ffi_enter_plugin(list[i + 3], i)
      local n
      if rec then   -- finish 0 until the handler returns; gw.response.exit (which never returns) and
                    -- gw._handler_failed fill it in
        n = #rec
        rec[n + 1], rec[n + 2], rec[n + 3], rec[n + 4] = pname, PHASES[phase], tonumber(C.gw_ffi_now_us()), 0
      end
      -- No pcall frame under the handler: an error ends the request's coroutine, and C logs it
      -- with the plugin's name and the traceback (api.c, co_resume). LuaJIT cannot compile a
      -- return through a pcall frame from a trace that starts inside the handler, so under
      -- xpcall whatever followed a handler's inner loop or a branch ran in the interpreter.
      list[i](list[i + 1], list[i + 2])
      if rec then rec[n + 4] = tonumber(C.gw_ffi_now_us()) end
      C.gw_ffi_set_plugin(0)
    end
  end
  return 0
end

--- Called by C when a handler raised (the request's coroutine is dead): its phase timing, if
-- recorded, ends now.
function gw._handler_failed()
  local rec = phase_timings[ctx() or 0]
  if rec and rec[#rec] == 0 then rec[#rec] = tonumber(C.gw_ffi_now_us()) end
end

--- init_worker of every plugin used by the generation, once per plugin.
function gw._init_worker(compiled)
  compiled_current = compiled
  by_route_name, by_service_name = {}, {}
  for _, r in ipairs(compiled.routes or {}) do if r.name then by_route_name[r.name] = r end end
  for _, s in ipairs(compiled.services or {}) do if s.name then by_service_name[s.name] = s end end
  local seen = {}
  local function visit(chain)
    for _, p in ipairs(chain or {}) do
      if not seen[p.name] then
        seen[p.name] = true
        if p.handler.init_worker then
          in_init_worker = true
          set_current_plugin(p.name)
          local ok, err = xpcall(p.handler.init_worker, traceback, p.handler)
          set_current_plugin(nil)
          in_init_worker = false
          if not ok then core.log(0, "plugin '" .. p.name .. "' failed in init_worker: " .. tostring(err)) end
        end
      end
    end
  end
  visit(compiled.global_plugins)
  for _, r in ipairs(compiled.routes or {}) do visit(r.plugins) end
end

function gw._compiled() return compiled_current end
gw._EXIT = EXIT
gw._set_current_plugin = set_current_plugin -- gw.test.context runs handlers itself

_G.gw = gw
return gw
