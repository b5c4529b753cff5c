-- gw_kong.ngx — the `ngx` table that Kong plugins see, built over gw.*.
--
-- Loadable where gw.* does not exist (the master compiling the config, `gw check`): plugin files
-- capture `ngx.var`, `ngx.re.find`, `ngx.shared.DICT` or `ngx.worker.pid()` at their top level
-- there. Everything that touches a request resolves `gw` when it is called.
--
-- Per-request state (what ngx.say printed, ngx.status set before ngx.exit, variables written)
-- lives in the request's gw.ctx.shared under a private key; ngx.ctx *is* gw.ctx.shared.
local ffi = require "ffi"
local json = require "gw.json"
local crypto = require "gw_kong.crypto"
local re = require "gw_kong.re"

local type, tostring, tonumber, pairs, ipairs, select = type, tostring, tonumber, pairs, ipairs, select
local error, rawget, rawset, setmetatable = error, rawget, rawset, setmetatable
local concat, sort = table.concat, table.sort
local floor = math.floor
local sub, gsub, lower, format, char, find = string.sub, string.gsub, string.lower, string.format, string.char, string.find
local co_running = coroutine.running

pcall(ffi.cdef, "int getpid(void);")

local ngx = {}

---------------------------------------------------------------------------------------------
-- constants

ngx.OK, ngx.ERROR, ngx.AGAIN, ngx.DONE, ngx.DECLINED = 0, -1, -2, -4, -5
ngx.null = json.null

local STATUS = {
  HTTP_CONTINUE = 100, HTTP_SWITCHING_PROTOCOLS = 101, HTTP_OK = 200, HTTP_CREATED = 201,
  HTTP_ACCEPTED = 202, HTTP_NO_CONTENT = 204, HTTP_PARTIAL_CONTENT = 206, HTTP_SPECIAL_RESPONSE = 300,
  HTTP_MOVED_PERMANENTLY = 301, HTTP_MOVED_TEMPORARILY = 302, HTTP_SEE_OTHER = 303,
  HTTP_NOT_MODIFIED = 304, HTTP_TEMPORARY_REDIRECT = 307, HTTP_PERMANENT_REDIRECT = 308,
  HTTP_BAD_REQUEST = 400, HTTP_UNAUTHORIZED = 401, HTTP_PAYMENT_REQUIRED = 402, HTTP_FORBIDDEN = 403,
  HTTP_NOT_FOUND = 404, HTTP_NOT_ALLOWED = 405, HTTP_NOT_ACCEPTABLE = 406, HTTP_REQUEST_TIMEOUT = 408,
  HTTP_CONFLICT = 409, HTTP_GONE = 410, HTTP_UPGRADE_REQUIRED = 426, HTTP_TOO_MANY_REQUESTS = 429,
  HTTP_CLOSE = 444, HTTP_ILLEGAL = 451, HTTP_INTERNAL_SERVER_ERROR = 500,
  HTTP_METHOD_NOT_IMPLEMENTED = 501, HTTP_BAD_GATEWAY = 502, HTTP_SERVICE_UNAVAILABLE = 503,
  HTTP_GATEWAY_TIMEOUT = 504, HTTP_VERSION_NOT_SUPPORTED = 505, HTTP_INSUFFICIENT_STORAGE = 507,
}
for k, v in pairs(STATUS) do ngx[k] = v end

local METHODS = {
  HTTP_GET = 2, HTTP_HEAD = 4, HTTP_POST = 8, HTTP_PUT = 16, HTTP_DELETE = 32, HTTP_MKCOL = 64,
  HTTP_COPY = 128, HTTP_MOVE = 256, HTTP_OPTIONS = 512, HTTP_PROPFIND = 1024, HTTP_PROPPATCH = 2048,
  HTTP_LOCK = 4096, HTTP_UNLOCK = 8192, HTTP_PATCH = 16384, HTTP_TRACE = 32768,
}
local METHOD_NAME = {}
for k, v in pairs(METHODS) do
  ngx[k] = v
  METHOD_NAME[v] = sub(k, 6)
end

local LEVELS = { STDERR = 0, EMERG = 1, ALERT = 2, CRIT = 3, ERR = 4, WARN = 5, NOTICE = 6, INFO = 7, DEBUG = 8 }
for k, v in pairs(LEVELS) do ngx[k] = v end

---------------------------------------------------------------------------------------------
-- helpers

local function G()
  local g = rawget(_G, "gw")
  if not g then error("this ngx.* function needs a gw worker (it was called outside one)", 3) end
  return g
end

local function phase()
  local g = rawget(_G, "gw")
  return g and g.get_phase() or "init"
end

local IN_REQUEST = { rewrite = true, access = true, balancer = true, header_filter = true,
                     body_filter = true, log = true }
local RESP_READ = { header_filter = true, body_filter = true, log = true }
local PRE = { rewrite = true, access = true }

-- the request's gw.ctx.shared, or a table private to the running coroutine outside a request
local loose_ctx = setmetatable({}, { __mode = "k" })
local main_ctx = {}
local function ctx_table()
  local g = rawget(_G, "gw")
  local t = g and g.ctx.shared
  if t then return t end
  local co = co_running()
  if not co then return main_ctx end
  t = loose_ctx[co]
  if not t then t = {} loose_ctx[co] = t end
  return t
end

local STATE = setmetatable({}, { __tostring = function() return "gw_kong.ngx state" end })
--- Per-request state of the shim (printed output, status set early, variables written).
local function state()
  local t = ctx_table()
  local s = rawget(t, STATE)
  if not s then s = {} rawset(t, STATE, s) end
  return s
end
ngx._state = state
--- The shim's per-request state if there is any (nil: nothing was printed or written).
function ngx._peek_state() return rawget(ctx_table(), STATE) end
ngx._ctx_table = ctx_table

---------------------------------------------------------------------------------------------
-- logging

local GW_LEVEL = { [0] = "err", "err", "err", "err", "err", "warn", "notice", "info", "debug" }

local function log_line(level, ...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do
    local v = select(i, ...)
    parts[i] = v == nil and "nil" or tostring(v)
  end
  local msg = concat(parts)
  local g = rawget(_G, "gw")
  local name = GW_LEVEL[level] or "notice"
  if g then return g.log[name](msg) end
  io.stderr:write("[", name, "] ", msg, "\n")
end

function ngx.log(level, ...)
  if type(level) ~= "number" then error("bad argument #1 to 'log' (number expected, got " .. type(level) .. ")", 2) end
  return log_line(level, ...)
end
ngx._log_line = log_line

---------------------------------------------------------------------------------------------
-- time

local function now()
  local g = rawget(_G, "gw")
  if g then return g.now() end
  return os.time()
end
ngx.now = now
function ngx.time() return floor(now()) end
function ngx.update_time() end
function ngx.today() return os.date("%Y-%m-%d", floor(now())) end
function ngx.localtime() return os.date("%Y-%m-%d %H:%M:%S", floor(now())) end
function ngx.utctime() return os.date("!%Y-%m-%d %H:%M:%S", floor(now())) end
function ngx.http_time(t) return os.date("!%a, %d %b %Y %H:%M:%S GMT", floor(t)) end
function ngx.cookie_time(t) return os.date("!%a, %d-%b-%y %H:%M:%S GMT", floor(t)) end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9,
                 Oct = 10, Nov = 11, Dec = 12 }
-- days since 1970-01-01 of a civil date (proleptic Gregorian)
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- "Thu, 18 Nov 2010 11:27:35 GMT" (and the RFC 850 / asctime forms) -> seconds, or nil.
function ngx.parse_http_time(s)
  if type(s) ~= "string" then return nil end
  local d, mon, y, hh, mm, ss = s:match("^%a+, (%d%d?) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d then
    d, mon, y, hh, mm, ss = s:match("^%a+, (%d%d?)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT$")
    if y then y = tonumber(y) + (tonumber(y) < 70 and 2000 or 1900) end
  end
  if not d then
    mon, d, hh, mm, ss, y = s:match("^%a+ (%a%a%a) +(%d%d?) (%d%d):(%d%d):(%d%d) (%d%d%d%d)$")
  end
  local m = mon and MONTHS[mon]
  if not m then return nil end
  return days_from_civil(tonumber(y), m, tonumber(d)) * 86400 + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
end

function ngx.sleep(s) return G().sleep(s) end

---------------------------------------------------------------------------------------------
-- encodings and digests

ngx.encode_base64 = function(s, no_padding)
  if type(s) ~= "string" then
    if s == nil then s = "" else s = tostring(s) end
  end
  return crypto.base64_encode(s, no_padding)
end
ngx.decode_base64 = function(s)
  if type(s) ~= "string" then error("string argument only", 2) end
  return crypto.base64_decode(s)
end
ngx.decode_base64mime = function(s)
  if type(s) ~= "string" then error("string argument only", 2) end
  return crypto.base64_decode((gsub(s, "[^%w%+/=]", "")))
end
function ngx.md5_bin(s) return crypto.digest("md5", tostring(s)) end
function ngx.md5(s) return crypto.hex(crypto.digest("md5", tostring(s))) end
function ngx.sha1_bin(s) return crypto.digest("sha1", tostring(s)) end
function ngx.hmac_sha1(key, s) return crypto.hmac("sha1", tostring(key), tostring(s)) end
function ngx.crc32_short(s) return crypto.crc32(tostring(s)) end
ngx.crc32_long = ngx.crc32_short

-- escape_uri: type 2 (the default) escapes a URI component (all but A-Z a-z 0-9 - . _ ~);
-- type 0 escapes a whole URI (also keeps the reserved characters)
local function escape_uri(s, kind)
  if s == nil then return "" end
  s = tostring(s)
  local pat = kind == 0 and "[^%w%-%._~!#%$&'%(%)%*%+,/:;=%?@%[%]]" or "[^%w%-%._~]"
  return (gsub(s, pat, function(c) return format("%%%02X", c:byte()) end))
end
ngx.escape_uri = escape_uri

local function unescape_uri(s)
  if s == nil then return "" end
  s = gsub(tostring(s), "+", " ")
  return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end
ngx.unescape_uri = unescape_uri

--- ngx.encode_args: keys sorted (gw's choice: a stable order), arrays repeat the key, true gives
-- the key alone, false leaves the key out.
function ngx.encode_args(t)
  if type(t) ~= "table" then error("bad argument #1 to 'encode_args' (table expected, got " .. type(t) .. ")", 2) end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v = t[k]
    if v == nil then v = t[tonumber(k)] end
    local ek = escape_uri(k)
    if type(v) == "table" then
      for _, x in ipairs(v) do
        if x == true then out[#out + 1] = ek
        elseif x ~= false then out[#out + 1] = ek .. "=" .. escape_uri(x) end
      end
    elseif v == true then out[#out + 1] = ek
    elseif v ~= false then out[#out + 1] = ek .. "=" .. escape_uri(v) end
  end
  return concat(out, "&")
end

local function decode_args(s, max)
  local t = {}
  if type(s) ~= "string" or s == "" then return t end
  max = max or 100
  local n = 0
  for pair in s:gmatch("[^&]+") do
    n = n + 1
    if max > 0 and n > max then return t, "truncated" end
    local k, v = pair:match("^([^=]*)=(.*)$")
    if k then k, v = unescape_uri(k), unescape_uri(v) else k, v = unescape_uri(pair), true end
    if k ~= "" then
      local old = t[k]
      if old == nil then t[k] = v
      elseif type(old) == "table" then old[#old + 1] = v
      else t[k] = { old, v } end
    end
  end
  return t
end
ngx.decode_args = decode_args
ngx._decode_args = decode_args

function ngx.quote_sql_str(s)
  s = gsub(tostring(s), "[%z\b\n\r\t\26\\'\"]", {
    ["\0"] = "\\0", ["\b"] = "\\b", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
    ["\26"] = "\\Z", ["\\"] = "\\\\", ["'"] = "\\'", ['"'] = '\\"' })
  return "'" .. s .. "'"
end

ngx.re = {
  match = re.match, find = re.find, gmatch = re.gmatch, sub = re.sub, gsub = re.gsub,
  split = re.split, opt = re.opt,
}

---------------------------------------------------------------------------------------------
-- the process

ngx.config = {
  subsystem = "http",
  debug = false,
  nginx_version = 1027001,
  ngx_lua_version = 10026,
  is_console = false,
  prefix = function() return (rawget(_G, "GW_HOME") or ".") .. "/" end,
  nginx_configure = function() return "" end,
}

local function compiled()
  local g = rawget(_G, "gw")
  return g and g._compiled and g._compiled()
end

ngx.worker = {
  pid = function() return ffi.C.getpid() end,
  id = function()
    local g = rawget(_G, "gw")
    return g and g.worker().id or nil
  end,
  count = function()
    local c = compiled()
    return c and c.gw and c.gw.workers or 1
  end,
  exiting = function() return false end,
}

ngx.timer = {
  at = function(delay, fn, ...) return G().timer.at(delay, fn, ...) end,
  every = function(interval, fn, ...) return G().timer.every(interval, fn, ...) end,
  running_count = function() return 0 end,
  pending_count = function() return 0 end,
}

function ngx.get_phase() return phase() end

-- ngx.shared.NAME: the gw.shared dict; where gw.shared does not exist yet (a plugin file's top
-- level, run in the master) a proxy that finds the dict when a method is called.
local proxies = {}
local function dict_proxy(name)
  local p = proxies[name]
  if p then return p end
  p = setmetatable({}, { __index = function(self, method)
    local f = function(_, ...)
      local g = rawget(_G, "gw")
      local d = g and g.shared[name]
      if not d then return nil, "no shared dict '" .. name .. "' (declare it in gw.shared_dicts)" end
      return d[method](d, ...)
    end
    rawset(self, method, f)
    return f
  end })
  proxies[name] = p
  return p
end
ngx.shared = setmetatable({}, { __index = function(_, name)
  local g = rawget(_G, "gw")
  if g then return g.shared[name] end
  return dict_proxy(name)
end })

---------------------------------------------------------------------------------------------
-- unsupported parts: clear errors instead of "attempt to index nil"

local function unsupported(what, instead)
  return function()
    error(what .. " is not supported by gw" .. (instead and (" (" .. instead .. ")") or ""), 2)
  end
end
ngx.socket = {
  tcp = unsupported("ngx.socket.tcp", "use gw.http, gw.redis or resty.http / resty.redis"),
  udp = unsupported("ngx.socket.udp"),
  stream = unsupported("ngx.socket.stream"),
  connect = unsupported("ngx.socket.connect"),
}
ngx.location = {
  capture = unsupported("ngx.location.capture", "use gw.http"),
  capture_multi = unsupported("ngx.location.capture_multi", "use gw.http.request_multi"),
}
ngx.on_abort = function() return nil, "lua_check_client_abort is off" end

-- ngx.thread: spawn runs the function to completion at once (gw suspends only the handler's own
-- coroutine), wait returns its results
local Thread = {}
ngx.thread = {
  spawn = function(fn, ...)
    local res = { pcall(fn, ...) }
    return setmetatable({ res = res }, Thread)
  end,
  wait = function(t)
    local res = t.res
    return unpack(res, 1, table.maxn(res))
  end,
  kill = function() return nil, "already terminated" end,
}

---------------------------------------------------------------------------------------------
-- output: ngx.print / ngx.say / ngx.exit / ngx.redirect / ngx.eof

local function flatten(out, v)
  local tv = type(v)
  if tv == "table" then
    for i = 1, #v do flatten(out, v[i]) end
  elseif v == nil then out[#out + 1] = "nil"
  elseif v == ngx.null then out[#out + 1] = "null"
  else out[#out + 1] = tostring(v) end
end

local function write(nl, ...)
  local s = state()
  local buf = s.out
  if not buf then buf = {} s.out = buf end
  for i = 1, select("#", ...) do flatten(buf, (select(i, ...))) end
  if nl then buf[#buf + 1] = "\n" end
  return 1
end
function ngx.print(...) return write(false, ...) end
function ngx.say(...) return write(true, ...) end
function ngx.flush() return 1 end

-- the body printed so far, and forgets it
local function take_output(s)
  local buf = s.out
  s.out = nil
  return buf and concat(buf) or nil
end

--- ngx.exit(ngx.OK) ends the handler, not the request: it raises gw's own gw._END_HANDLER, and
-- the phase goes on with the next plugin (lua/gw/init.lua, runtime/lua/api.c), so the plugin
-- wrapper of gw_kong needs no pcall of its own.
local function end_handler() error(G()._END_HANDLER, 0) end

--- Ends the request with status and body (what ngx.print/say wrote).
local function respond(status, body)
  return G().response.exit(status, body or "")
end

function ngx.exit(status)
  if type(status) ~= "number" then error("bad argument #1 to 'exit' (number expected, got " .. type(status) .. ")", 2) end
  local ph = phase()
  local s = state()
  if PRE[ph] then
    if status == 0 or status == ngx.DECLINED then
      local body = take_output(s)
      if body then return respond(s.status or 200, body) end
      end_handler()
    end
    if status < 0 then status = 500 end
    if status == 200 or status < 100 then
      return respond(s.status or 200, take_output(s))
    end
    local body = take_output(s)
    if body == nil and status >= 400 then
      -- nginx's error page, in Kong's form
      return require("gw_kong.pdk").response.error(status)
    end
    return respond(status, body)
  elseif ph == "header_filter" and status >= 100 then
    G().response.set_status(status)
    return
  elseif ph == "body_filter" or ph == "header_filter" or ph == "log" then
    end_handler()
  end
  error("ngx.exit: not supported in the " .. ph .. " phase", 2)
end

function ngx.eof()
  local s = state()
  if PRE[phase()] then return respond(s.status or 200, take_output(s)) end
  return 1
end

function ngx.redirect(uri, status)
  status = status or 302
  return G().response.exit(status, "", { Location = uri })
end

---------------------------------------------------------------------------------------------
-- ngx.var

local function header(name)
  return G().request.get_header(name)
end

local function query_arg(name)
  local v = G().request.get_query()[name]
  if type(v) == "table" then v = v[1] end
  if v == true then return "" end
  return v
end

local function cookie(name)
  local c = header("cookie")
  if not c then return nil end
  for pair in c:gmatch("[^;]+") do
    local k, v = pair:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
    if k == name then return v end
  end
end

local function binary_addr(ip)
  if not ip then return nil end
  local a, b, c, d = ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a then return char(tonumber(a), tonumber(b), tonumber(c), tonumber(d)) end
  local bytes = require("gw.ip").parse(ip)
  return bytes
end
ngx._binary_addr = binary_addr

local function timings() return G().request.get_timings() end

local VAR = {
  uri = function() return G().request.get_path() end,
  document_uri = function() return G().request.get_path() end,
  request_uri = function() return G().request.get_path_with_query() end,
  args = function() local q = G().request.get_raw_query() return q ~= "" and q or nil end,
  query_string = function() local q = G().request.get_raw_query() return q ~= "" and q or nil end,
  is_args = function() return G().request.get_raw_query() ~= "" and "?" or "" end,
  host = function() return G().request.get_host() end,
  hostname = function() return require("gw_kong.pdk").node.get_hostname() end,
  scheme = function() return G().request.get_scheme() end,
  https = function() return G().request.get_scheme() == "https" and "on" or "" end,
  request_method = function() return G().request.get_method() end,
  remote_addr = function() return G().client.get_ip() end,
  realip_remote_addr = function() return G().client.get_ip() end,
  binary_remote_addr = function() return binary_addr(G().client.get_ip()) end,
  remote_port = function() return tostring(G().client.get_port()) end,
  server_port = function() return tostring(G().request.get_port()) end,
  server_protocol = function() return "HTTP/" .. format("%.1f", G().request.get_http_version()) end,
  request_id = function() return G().request.get_id() end,
  kong_request_id = function() return G().request.get_id() end,
  content_type = function() return header("content-type") end,
  content_length = function() return header("content-length") end,
  http_version = function() return format("%.1f", G().request.get_http_version()) end,
  pid = function() return tostring(ffi.C.getpid()) end,
  msec = function() return format("%.3f", now()) end,
  time_local = function() return os.date("%d/%b/%Y:%H:%M:%S %z", floor(now())) end,
  time_iso8601 = function() return os.date("!%Y-%m-%dT%H:%M:%S+00:00", floor(now())) end,
  request_time = function() return format("%.3f", now() - timings().start) end,
  upstream_response_time = function()
    local t = timings()
    if t.upstream_start and t.upstream_end then return format("%.3f", t.upstream_end - t.upstream_start) end
  end,
  status = function()
    if RESP_READ[phase()] then return tostring(G().response.get_status()) end
  end,
  upstream_status = function()
    if RESP_READ[phase()] and timings().upstream_start then return tostring(G().response.get_status()) end
  end,
  request_body = function()
    if PRE[phase()] then local b = G().request.get_raw_body() return b ~= "" and b or nil end
  end,
}

-- variables a plugin may write (upstream_uri as Kong's nginx config defines it)
local VAR_SET = {
  upstream_uri = function(v)
    v = tostring(v)
    local path, q = v:match("^([^?]*)%??(.*)$")
    G().service.request.set_path(path ~= "" and path or "/")
    G().service.request.set_raw_query(q)
  end,
  upstream_host = function(v) G().service.request.set_header("Host", tostring(v)) end,
  request_uri = function(v) error('variable "request_uri" not changeable', 3) end,
}

ngx.var = setmetatable({}, {
  __index = function(_, k)
    if type(k) == "number" then
      -- $1..$9: captures of the route's regex path
      local caps = G().request.get_uri_captures().unnamed
      local v = caps[k]
      return v or nil
    end
    local written = rawget(state(), "vars")
    if written and written[k] ~= nil then return written[k] end
    local f = VAR[k]
    if f then return f() end
    if not IN_REQUEST[phase()] then return nil end
    local p = sub(k, 1, 5)
    if p == "http_" then return header(gsub(sub(k, 6), "_", "-")) end
    if sub(k, 1, 4) == "arg_" then return query_arg(sub(k, 5)) end
    if sub(k, 1, 7) == "cookie_" then return cookie(sub(k, 8)) end
    if sub(k, 1, 10) == "sent_http_" or sub(k, 1, 14) == "upstream_http_" then
      if RESP_READ[phase()] then
        return G().response.get_header(gsub(sub(k, find(k, "http_", 1, true) + 5), "_", "-"))
      end
      return nil
    end
    return nil
  end,
  __newindex = function(_, k, v)
    local s = state()
    local vars = s.vars
    if not vars then vars = {} s.vars = vars end
    local f = VAR_SET[k]
    if f then f(v) end
    vars[k] = v
  end,
})

---------------------------------------------------------------------------------------------
-- ngx.header (response headers)

local function header_name(k)
  if type(k) ~= "string" then return tostring(k) end
  return (gsub(k, "_", "-"))
end

ngx.header = setmetatable({}, {
  __index = function(_, k)
    if not RESP_READ[phase()] then return nil end
    local name = lower(header_name(k))
    local v = G().response.get_headers()[name]
    return v
  end,
  __newindex = function(_, k, v)
    local name = header_name(k)
    local resp = G().response
    if v == nil then return resp.clear_header(name) end
    if type(v) == "table" then
      local t = {}
      for i = 1, #v do t[i] = tostring(v[i]) end
      return resp.set_header(name, t)
    end
    return resp.set_header(name, tostring(v))
  end,
})

ngx.resp = {
  get_headers = function(max) return G().response.get_headers(max) end,
  add_header = function(k, v) return G().response.add_header(header_name(k), tostring(v)) end,
}

---------------------------------------------------------------------------------------------
-- ngx.req

local req = {}
ngx.req = req

function req.get_headers(max) return G().request.get_headers(max) end
function req.get_method() return G().request.get_method() end
function req.http_version() return G().request.get_http_version() end
function req.get_uri_args(max) return G().request.get_query(max) end
function req.start_time() return timings().start end
function req.is_internal() return false end
function req.raw_header()
  local g = G()
  local lines = { g.request.get_method() .. " " .. g.request.get_path_with_query() .. " HTTP/" ..
                  format("%.1f", g.request.get_http_version()) }
  for k, v in pairs(g.request.get_headers()) do
    if type(v) == "table" then
      for _, x in ipairs(v) do lines[#lines + 1] = k .. ": " .. x end
    else
      lines[#lines + 1] = k .. ": " .. v
    end
  end
  return concat(lines, "\r\n") .. "\r\n\r\n"
end

function req.set_method(m)
  local name = type(m) == "number" and METHOD_NAME[m] or m
  if type(name) ~= "string" then error("unsupported HTTP method: " .. tostring(m), 2) end
  return G().service.request.set_method(name)
end

function req.set_uri(uri, jump)
  if jump then error("ngx.req.set_uri: jump is not supported by gw", 2) end
  return G().service.request.set_path(uri)
end

function req.set_uri_args(args)
  local sreq = G().service.request
  if type(args) == "string" then return sreq.set_raw_query(args) end
  return sreq.set_raw_query(ngx.encode_args(args))
end

function req.set_header(name, value)
  local sreq = G().service.request
  if value == nil then return sreq.clear_header(name) end
  if type(value) == "table" then
    local t = {}
    for i = 1, #value do t[i] = tostring(value[i]) end
    return sreq.set_header(name, t)
  end
  return sreq.set_header(name, tostring(value))
end

function req.clear_header(name) return G().service.request.clear_header(name) end

function req.read_body()
  if PRE[phase()] then G().request.get_raw_body() end
end
function req.discard_body() end

function req.get_body_data()
  if not PRE[phase()] then return nil end
  local b = G().request.get_raw_body()
  if b == "" then return nil end
  return b
end
function req.get_body_file() return nil end

function req.get_post_args(max)
  local b = req.get_body_data()
  return decode_args(b, max)
end

function req.set_body_data(s) return G().service.request.set_raw_body(tostring(s)) end
function req.set_body_file() error("ngx.req.set_body_file is not supported by gw", 2) end

function req.init_body() state().new_body = {} end
function req.append_body(s)
  local st = state()
  st.new_body = st.new_body or {}
  st.new_body[#st.new_body + 1] = s
end
function req.finish_body()
  local st = state()
  local b = st.new_body and concat(st.new_body) or ""
  st.new_body = nil
  return G().service.request.set_raw_body(b)
end
req.socket = unsupported("ngx.req.socket")

---------------------------------------------------------------------------------------------
-- ngx.arg in body_filter: [1] the whole body (gw gathers it before body_filter), [2] true

ngx.arg = setmetatable({}, {
  __index = function(_, i)
    if phase() ~= "body_filter" then return nil end
    if i == 1 then return G().response.get_raw_body() end
    if i == 2 then return true end
  end,
  __newindex = function(_, i, v)
    if i == 1 and phase() == "body_filter" then
      G().response.set_raw_body(v == nil and "" or tostring(v))
    end
  end,
})

---------------------------------------------------------------------------------------------
-- dynamic fields: ngx.ctx, ngx.status, ngx.headers_sent, ngx.is_subrequest

setmetatable(ngx, {
  __index = function(_, k)
    if k == "ctx" then return ctx_table() end
    if k == "status" then
      local ph = phase()
      if RESP_READ[ph] then return G().response.get_status() end
      if IN_REQUEST[ph] then return state().status or 0 end
      return nil
    end
    if k == "headers_sent" then
      local ph = phase()
      return ph == "body_filter" or ph == "log"
    end
    if k == "is_subrequest" then return false end
    return nil
  end,
  __newindex = function(t, k, v)
    if k == "status" then
      local ph = phase()
      if ph == "header_filter" then return G().response.set_status(v) end
      if PRE[ph] then state().status = v return end
      return log_line(LEVELS.ERR, "attempt to set ngx.status after sending out response headers")
    end
    if k == "ctx" then
      local c = ctx_table()
      for key, val in pairs(v) do c[key] = val end
      return
    end
    rawset(t, k, v)
  end,
})

return ngx
