-- aggregator: a backend for frontend. The route's config lists upstream calls (method, URL,
-- headers and body as templates over the request and over earlier calls' results); the calls
-- that do not depend on each other run in parallel (one gw.http.request_multi per wave of the
-- dependency order), and one JSON response is composed from their results by a mapping. The
-- plugin answers the request itself in access: the route's service is never called.
--
-- Templates and the mapping are compiled once per conf (a weak-keyed cache); the schema's
-- custom_validator runs the same compiler (Aggregator._compile) so bad configs fail at load.
local json = require "gw.json"

local Aggregator = {
  PRIORITY = 750,
  VERSION = "1.0.0",
}

local type, pairs, ipairs, tostring, tonumber, next = type, pairs, ipairs, tostring, tonumber, next
local setmetatable, getmetatable, error = setmetatable, getmetatable, error
local find, sub, gsub, format, char = string.find, string.sub, string.gsub, string.format,
  string.char
local concat, sort = table.concat, table.sort
local huge = math.huge

local NULL = json.null
local number_mt = json.number_mt

-- JSON is gw.json's: an empty array decodes marked (json.array_mt) and encodes back as `[]`,
-- numbers keep their digits.
local decode, encode = json.decode, json.encode
Aggregator._decode, Aggregator._encode = decode, encode

---------------------------------------------------------------------------------------------
-- Templates. A string may hold references `$(ROOT.a.b)`; `$$(` is a literal `$(`.
--
-- A reference node: { k = "call" | "var" | "query" | "header" | "capture", name = ...,
--   path = { segments after the root's name }, idx = { [i] = 0-based index as a number },
--   text = "the reference as written" }.
-- A string node: { k = "str", parts = { "literal" | reference node, ... }, url = bool }.
-- Mapping nodes: { k = "const", v = value }, { k = "obj", keys, vals, merge },
--   { k = "arr", items }, { k = "each", src, var, map }.

local CALL_FIELDS = { body = true, status = true, headers = true, error = true }
local ROOTS = { calls = true, query = true, headers = true, uri_captures = true }

local function fail(path, msg) error({ path = path, msg = msg }, 0) end

local function gmatch_dots(s) return (s .. "."):gmatch("([^.]*)%.") end

local function parse_ref(expr, cx, path, scope)
  local segs = {}
  for seg in gmatch_dots(expr) do
    if not find(seg, "^[%w_%-]+$") then
      fail(path, "invalid reference $(" .. expr .. "): expected names separated by dots")
    end
    segs[#segs + 1] = seg
  end
  local root = segs[1]
  local node = { text = expr }
  local rest_from
  if root == "calls" then
    local name, field = segs[2], segs[3]
    if not name or not cx.by_name[name] then
      fail(path, "unknown call " .. (name and ('"' .. name .. '"') or "(none)") .. " in $(" .. expr .. ")")
    end
    if not field or not CALL_FIELDS[field] then
      fail(path, "$(" .. expr .. "): expected calls." .. name .. ".body, .status, .headers or .error")
    end
    node.k, node.name, rest_from = "call", name, 3
    cx.refs[name] = true
  elseif root == "query" or root == "headers" or root == "uri_captures" then
    if #segs ~= 2 then fail(path, "$(" .. expr .. "): expected " .. root .. ".NAME") end
    node.k = (root == "query" and "query") or (root == "headers" and "header") or "capture"
    node.name = segs[2]
    if node.k == "header" then node.name = node.name:lower() end
    if node.k == "capture" and find(node.name, "^%d+$") then node.num = tonumber(node.name) end
    return node
  elseif scope and scope[root] then
    node.k, node.name, rest_from = "var", root, 2
  else
    fail(path, "unknown reference $(" .. expr .. "): expected calls., query., headers., " ..
      "uri_captures." .. (scope and next(scope) and " or a $as name" or ""))
  end
  local p, idx = {}, {}
  for i = rest_from, #segs do
    p[#p + 1] = segs[i]
    if find(segs[i], "^%d+$") then idx[#p] = tonumber(segs[i]) + 1 end
  end
  node.path, node.idx = p, idx
  return node
end

-- Splits a template string into literals and reference nodes.
local function parse_string(s, cx, path, scope)
  local parts, lit = {}, {}
  local i, refs = 1, 0
  while true do
    local a = find(s, "$", i, true)
    if not a then lit[#lit + 1] = sub(s, i) break end
    lit[#lit + 1] = sub(s, i, a - 1)
    if sub(s, a, a + 2) == "$$(" then
      lit[#lit + 1] = "$("
      i = a + 3
    elseif sub(s, a + 1, a + 1) == "(" then
      local b = find(s, ")", a + 2, true)
      if not b then fail(path, "unclosed $( in " .. encode(s)) end
      local l = concat(lit)
      if l ~= "" then parts[#parts + 1] = l end
      lit = {}
      parts[#parts + 1] = parse_ref(sub(s, a + 2, b - 1), cx, path, scope)
      refs = refs + 1
      i = b + 1
    else
      lit[#lit + 1] = "$"
      i = a + 1
    end
  end
  local l = concat(lit)
  if l ~= "" then parts[#parts + 1] = l end
  return parts, refs
end

-- mode: "value" (a lone reference selects the whole value), "header" (likewise; a missing
-- value leaves the header out), "text" (always a string), "url" (always a string, each value
-- percent-encoded).
local function compile_string(s, cx, path, scope, mode)
  local parts, refs = parse_string(s, cx, path, scope)
  if refs == 0 then return { k = "const", v = parts[1] or "" } end
  if refs == 1 and #parts == 1 and (mode == "value" or mode == "header") then return parts[1] end
  return { k = "str", parts = parts, url = (mode == "url") or nil }
end

local function is_array(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  if n == 0 then return false end
  for i = 1, n do if t[i] == nil then return false end end
  return true
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

local function join(path, key) return path == "" and key or (path .. "." .. key) end

local compile_value

local EACH_KEYS = { ["$each"] = true, ["$as"] = true, ["$map"] = true }

local function compile_each(v, cx, path, scope)
  for k in pairs(v) do
    if not EACH_KEYS[k] then fail(join(path, tostring(k)), "unknown field next to $each (expected $as, $map)") end
  end
  local as = v["$as"]
  if as == nil then as = "item" end
  if type(as) ~= "string" or not find(as, "^[%a_][%w_]*$") then
    fail(join(path, "$as"), "expected a name (letters, digits, _)")
  end
  if ROOTS[as] then fail(join(path, "$as"), '"' .. as .. '" is a reserved name') end
  local src = v["$each"]
  if type(src) ~= "string" then fail(join(path, "$each"), "expected a reference such as $(calls.NAME.body)") end
  local srcn = compile_string(src, cx, join(path, "$each"), scope, "value")
  if srcn.k == "const" or srcn.k == "str" then
    fail(join(path, "$each"), "expected a single reference such as $(calls.NAME.body)")
  end
  local inner = setmetatable({ [as] = true }, { __index = scope })
  local map = v["$map"]
  if map == nil then map = "$(" .. as .. ")" end
  return { k = "each", src = srcn, var = as, map = compile_value(map, cx, join(path, "$map"), inner) }
end

function compile_value(v, cx, path, scope)
  local tv = type(v)
  if tv == "string" then return compile_string(v, cx, path, scope, "value") end
  if tv ~= "table" then
    if tv == "userdata" or tv == "nil" then return { k = "const", v = NULL } end
    if tv == "number" and (v ~= v or v == huge or v == -huge) then
      fail(path, "expected a finite number (JSON has no NaN or infinity)")
    end
    return { k = "const", v = v }
  end
  if is_array(v) then
    local items, const = {}, {}
    local all_const = true
    for i = 1, #v do
      items[i] = compile_value(v[i], cx, path .. "[" .. (i - 1) .. "]", scope)
      if items[i].k == "const" then const[i] = items[i].v else all_const = false end
    end
    if all_const then return { k = "const", v = const } end
    return { k = "arr", items = items }
  end
  if v["$each"] ~= nil then return compile_each(v, cx, path, scope) end
  local keys, vals, merge = {}, {}, nil
  local all_const, const = true, {}
  for _, k in ipairs(sorted_keys(v)) do
    local x = v[k]
    local key = tostring(k)
    local kpath = join(path, key)
    if key == "$merge" then
      merge = {}
      local list = (type(x) == "table" and is_array(x)) and x or { x }
      for i, m in ipairs(list) do
        local mp = (list == x) and (kpath .. "[" .. (i - 1) .. "]") or kpath
        if type(m) ~= "string" then fail(mp, "expected a reference such as $(calls.NAME.body)") end
        local mn = compile_string(m, cx, mp, scope, "value")
        if mn.k == "const" or mn.k == "str" then fail(mp, "expected a single reference such as $(calls.NAME.body)") end
        merge[i] = mn
      end
      all_const = false
    else
      if sub(key, 1, 1) == "$" then
        if sub(key, 1, 2) ~= "$$" then
          fail(kpath, "unknown directive (known: $merge, $each with $as and $map; write $$ for a key starting with $)")
        end
        key = sub(key, 2)
      end
      local node = compile_value(x, cx, kpath, scope)
      keys[#keys + 1], vals[#vals + 1] = key, node
      if node.k == "const" then const[key] = node.v else all_const = false end
    end
  end
  if all_const then return { k = "const", v = const } end
  return { k = "obj", keys = keys, vals = vals, merge = merge }
end

local TOKEN = "^[!#$%%&'*+.^_`|~%w%-]+$"

local function compile_headers(h, cx, path)
  if h == nil then return nil end
  local list = {}
  for _, name in ipairs(sorted_keys(h)) do
    local p = join(path, name)
    if type(name) ~= "string" or not find(name, TOKEN) then fail(p, "invalid header name") end
    if type(h[name]) ~= "string" then fail(p, "expected a string") end
    if find(h[name], "[%z\r\n]") then fail(p, "must not contain CR, LF or NUL") end
    list[#list + 1] = { name, compile_string(h[name], cx, p, nil, "header") }
  end
  return list
end

local function has_header(list, lname)
  for _, h in ipairs(list or {}) do if h[1]:lower() == lname then return true end end
  return false
end

local function compile_url(s, cx, path)
  if find(s, "[%s%c]") then fail(path, "must not contain spaces or control characters") end
  local node = compile_string(s, cx, path, nil, "url")
  if node.k == "const" then
    if not find(node.v, "^[hH][tT][tT][pP][sS]?://[^/?#]+") then fail(path, "expected an http:// or https:// URL") end
  else
    local head = node.parts[1]
    if type(head) ~= "string" or not find(head, "^[hH][tT][tT][pP][sS]?://[^/?#]+[/?#]") then
      fail(path, "the scheme and host must be written out: templates may appear only after the " ..
        "host (http://HOST/...$(...))")
    end
  end
  return node
end

-- Calls into dependency waves: a call's wave is one more than its latest dependency's.
local function schedule(calls, cx)
  local level, state = {}, {}
  local function visit(c, stack)
    if state[c] == "done" then return level[c] end
    if state[c] == "visiting" then
      local names, from = {}, nil
      for i, s in ipairs(stack) do if s == c then from = i end end
      for i = from, #stack do names[#names + 1] = stack[i].name end
      names[#names + 1] = c.name
      fail(cx.paths[c], "dependency cycle: " .. concat(names, " -> "))
    end
    state[c] = "visiting"
    stack[#stack + 1] = c
    local l = 1
    for _, d in ipairs(c.deps) do
      local dl = visit(cx.by_name[d], stack) + 1
      if dl > l then l = dl end
    end
    stack[#stack] = nil
    state[c], level[c] = "done", l
    return l
  end
  local waves = {}
  for _, c in ipairs(calls) do
    local l = visit(c, {})
    waves[l] = waves[l] or {}
    waves[l][#waves[l] + 1] = c
  end
  return waves
end

local function compile_call(cc, i, cx)
  local path = "calls[" .. (i - 1) .. "]"
  cx.refs = {}
  local c = {
    name = cc.name, index = i, method = cc.method or "GET", on_error = cc.on_error or "fail",
    fallback = cc.fallback, timeout = cc.timeout or 10000, max_body_size = cc.max_body_size or 1048576,
  }
  c.url = compile_url(cc.url, cx, path .. ".url")
  c.headers = compile_headers(cc.headers, cx, path .. ".headers")
  if cc.body ~= nil then
    if type(cc.body) == "string" then
      c.body = compile_string(cc.body, cx, path .. ".body", nil, "text")
    else
      c.body, c.body_json = compile_value(cc.body, cx, path .. ".body", nil), true
      if not has_header(c.headers, "content-type") then c.content_type = "application/json" end
    end
  end
  if cc.success_status and #cc.success_status > 0 then
    c.ok = {}
    for _, s in ipairs(cc.success_status) do c.ok[s] = true end
  end
  if c.on_error == "fallback" and cc.fallback == nil then
    fail(path .. ".fallback", "required with on_error: fallback")
  elseif c.on_error ~= "fallback" and cc.fallback ~= nil then
    fail(path .. ".fallback", "only used with on_error: fallback")
  end
  local deps, seen = {}, {}
  for j, d in ipairs(cc.depends_on or {}) do
    if not cx.by_name[d] then fail(path .. ".depends_on[" .. (j - 1) .. "]", 'unknown call "' .. tostring(d) .. '"') end
    if not seen[d] then seen[d] = true deps[#deps + 1] = d end
  end
  for _, d in ipairs(sorted_keys(cx.refs)) do
    if not seen[d] then seen[d] = true deps[#deps + 1] = d end
  end
  c.deps = deps
  return c
end

local function compile(conf)
  local cx = { by_name = {}, paths = {} }
  local calls = {}
  for i, cc in ipairs(conf.calls or {}) do
    local path = "calls[" .. (i - 1) .. "].name"
    if cx.by_name[cc.name] then fail(path, 'duplicate call name "' .. tostring(cc.name) .. '"') end
    cx.by_name[cc.name] = true
  end
  for i, cc in ipairs(conf.calls or {}) do
    local c = compile_call(cc, i, cx)
    calls[i] = c
    cx.by_name[c.name] = c
    cx.paths[c] = "calls[" .. (i - 1) .. "]"
  end
  local plan = { calls = calls, waves = schedule(calls, cx) }
  cx.refs = {}
  plan.response = compile_value(conf.response, cx, "response", {})
  plan.status = conf.response_status or 200
  plan.headers = compile_headers(conf.response_headers, cx, "response_headers") or {}
  if not has_header(plan.headers, "content-type") then
    table.insert(plan.headers, 1, { "Content-Type", { k = "const", v = "application/json; charset=utf-8" } })
  end
  local fixed = {}                           -- the response headers, when none is a template
  for _, h in ipairs(plan.headers) do
    if h[2].k ~= "const" then fixed = nil break end
    fixed[h[1]] = h[2].v
  end
  plan.fixed_headers = fixed
  return plan
end

--- Compiles a (validated) conf: the plan, or nil and "path: message".
function Aggregator._compile(conf)
  local ok, res = pcall(compile, conf)
  if ok then return res end
  if type(res) == "table" then return nil, res.path .. ": " .. res.msg end
  error(res, 0)
end

---------------------------------------------------------------------------------------------
-- Evaluation, per request. env = { calls = { NAME = { status, headers, body, error } },
-- vars = { $as name = item }, caps = captures (false when there are none) }.

local PCT = {}
for i = 0, 255 do PCT[char(i)] = format("%%%02X", i) end
local function pct(s) return (gsub(s, "[^%w%-%._~]", PCT)) end

local function unpct(s)
  if not find(s, "%", 1, true) then return s end
  return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

local function captures(env)
  local c = env.caps
  if c == nil then
    local f = gw.request.get_uri_captures
    c = f and f() or false
    env.caps = c
  end
  return c
end

local function resolve(n, env)
  local k = n.k
  local v
  if k == "call" then v = env.calls[n.name]
  elseif k == "var" then v = env.vars[n.name]
  elseif k == "query" then return gw.request.get_query_arg(n.name)
  elseif k == "header" then return gw.request.get_header(n.name)
  else                                        -- capture: the path's bytes, percent-decoded
    local c = captures(env)
    if not c then return nil end
    v = c.named and c.named[n.name]
    if v == nil and n.num and c.unnamed then v = c.unnamed[n.num] end
    if type(v) ~= "string" then return nil end
    return unpct(v)
  end
  local path, idx = n.path, n.idx
  for i = 1, #path do
    if type(v) ~= "table" or getmetatable(v) == number_mt then return nil end
    local x = v[path[i]]
    if x == nil and idx[i] then x = v[idx[i]] end
    v = x
  end
  if v == NULL then return nil end
  return v
end

local function text_of(v)
  local t = type(v)
  if t == "string" then return v
  elseif t == "number" or t == "table" then return encode(v) or "null"   -- NaN, inf: null
  elseif t == "boolean" then return v and "true" or "false"
  end
  return ""
end

-- A string node's text. In a URL, a value missing from a call's result or from the route's
-- captures gives nil and the reference (a missing query argument or header is empty).
local function interp(n, env)
  local parts, buf, url = n.parts, {}, n.url
  for i = 1, #parts do
    local p = parts[i]
    if type(p) == "string" then
      buf[i] = p
    else
      local v = resolve(p, env)
      if v == nil and url and (p.k == "call" or p.k == "capture") then return nil, p.text end
      v = text_of(v)
      buf[i] = url and pct(v) or v
    end
  end
  return concat(buf)
end

local function eval(n, env)
  local k = n.k
  if k == "const" then return n.v
  elseif k == "str" then return (interp(n, env))
  elseif k == "obj" then
    local out = {}
    local m = n.merge
    if m then
      for i = 1, #m do
        local src = eval(m[i], env)
        if json.is_object(src) then
          for key, x in pairs(src) do out[key] = x end
        end
      end
    end
    local keys, vals = n.keys, n.vals
    for i = 1, #keys do
      local x = eval(vals[i], env)
      if x == nil then x = NULL end
      out[keys[i]] = x
    end
    return out
  elseif k == "arr" then
    local out, items = {}, n.items
    for i = 1, #items do
      local x = eval(items[i], env)
      if x == nil then x = NULL end
      out[i] = x
    end
    return out
  elseif k == "each" then
    local src = eval(n.src, env)
    if not json.is_array(src) then return nil end
    if src[1] == nil then return json.array() end
    local vars, name, map = env.vars, n.var, n.map
    local saved = vars[name]
    local out = {}
    for i = 1, #src do
      vars[name] = src[i]
      local x = eval(map, env)
      if x == nil then x = NULL end
      out[i] = x
    end
    vars[name] = saved
    return out
  end
  return resolve(n, env)
end
Aggregator._eval = eval

---------------------------------------------------------------------------------------------
-- Running the calls

local plans = setmetatable({}, { __mode = "k" })

local function plan_of(conf)
  local p = plans[conf]
  if not p then
    local err
    p, err = Aggregator._compile(conf)
    if not p then error("invalid aggregator config: " .. err) end
    plans[conf] = p
  end
  return p
end

local BAD_VALUE = "[%z\r\n]"

local function header_value(node, env)
  if node.k == "const" then return node.v end
  if node.k == "str" then return (interp(node, env)) end
  local v = resolve(node, env)
  if v == nil then return nil end
  return text_of(v)
end

-- The request table for a call, or nil and why it could not be built.
local function build_request(c, env)
  local url, missing
  if c.url.k == "const" then url = c.url.v else url, missing = interp(c.url, env) end
  if not url then return nil, "no value for $(" .. missing .. ")" end
  local req = { method = c.method, url = url, timeout = c.timeout, max_body_size = c.max_body_size }
  local hs = c.headers
  if hs or c.content_type then
    local h = {}
    for i = 1, (hs and #hs or 0) do
      local name = hs[i][1]
      local v = header_value(hs[i][2], env)
      if v ~= nil then
        if find(v, BAD_VALUE) then return nil, "header " .. name .. ": the value contains CR, LF or NUL" end
        h[name] = v
      end
    end
    if c.content_type then h["Content-Type"] = c.content_type end
    req.headers = h
  end
  if c.body then
    if c.body_json then
      local body, err = encode(eval(c.body, env))
      if not body then return nil, "body: " .. err end
      req.body = body
    elseif c.body.k == "const" then req.body = c.body.v
    else req.body = (interp(c.body, env)) end
  end
  return req
end

local function is_timeout(reason) return reason == "timeout" or (find(reason, "timeout$") ~= nil) end

-- The record of a call from its response (or failure): record, and on failure the message and
-- the status the client gets under on_error: fail.
local function settle(c, res, reason)
  local msg, status
  local rec = { status = res and res.status or nil, headers = res and res.headers or nil }
  if not res then
    if reason == nil or reason == "" then reason = "unknown error" end
    if is_timeout(reason) then msg, status = "upstream call timed out", 504
    elseif find(reason, "^response body too large") then msg, status = "upstream call response too large", 502
    elseif find(reason, "^no value for ") or find(reason, "^header ") or find(reason, "^body: ") then
      msg, status = "upstream call could not be made: " .. reason, 502
    else msg, status = "upstream call failed", 502 end
  else
    local st = res.status
    if (c.ok and c.ok[st]) or (not c.ok and st >= 200 and st < 300) then
      local body = res.body
      if body == "" and (st == 204 or st == 304 or c.method == "HEAD") then
        return rec
      end
      local v = decode(body)
      if v ~= nil then
        rec.body = v
        return rec
      end
      msg, status, reason = "upstream call answered with a body that is not JSON", 502, "not JSON"
    else
      msg, status, reason = "upstream call answered with status " .. st, 502, "status " .. st
    end
  end
  rec.error = msg
  if c.on_error == "fallback" then rec.body = c.fallback end
  return rec, msg, status, reason
end

local function run_wave(wave, env)
  local reqs, idx, n = {}, {}, 0
  local failed
  for i = 1, #wave do
    local c = wave[i]
    local req, why = build_request(c, env)
    if req then
      n = n + 1
      reqs[n], idx[n] = req, c
    else
      local rec, msg, status, reason = settle(c, nil, why)
      env.calls[c.name] = rec
      failed = failed or {}
      failed[#failed + 1] = { c, msg, status, reason }
    end
  end
  if n > 0 then
    local res, errs = gw.http.request_multi(reqs)
    for j = 1, n do
      local c = idx[j]
      local rec, msg, status, reason = settle(c, res[j] or nil, errs[j])
      env.calls[c.name] = rec
      if msg then
        failed = failed or {}
        failed[#failed + 1] = { c, msg, status, reason }
      end
    end
  end
  if not failed then return nil end
  local stop
  for _, f in ipairs(failed) do
    local c = f[1]
    if c.on_error == "fail" then
      gw.log.warn("call ", c.name, " failed (", f[4], "): answering ", f[3])
      if not stop or c.index < stop[1].index then stop = f end
    else
      gw.log.info("call ", c.name, " failed (", f[4], "): ", c.on_error, " used instead")
    end
  end
  return stop
end

function Aggregator:access(conf)
  local plan = plan_of(conf)
  local env = { calls = {}, vars = {}, caps = nil }
  local waves = plan.waves
  for w = 1, #waves do
    local stop = run_wave(waves[w], env)
    if stop then
      return gw.response.exit(stop[3], { message = stop[2], call = stop[1].name })
    end
  end
  local body, err = encode(eval(plan.response, env))
  if not body then
    gw.log.err("the response mapping gave a value JSON cannot hold: ", err)
    return gw.response.exit(500, { message = "the response could not be composed" })
  end
  local headers = plan.fixed_headers
  if not headers then
    headers = {}
    local hs = plan.headers
    for i = 1, #hs do
      local v = header_value(hs[i][2], env)
      if v ~= nil then
        if find(v, BAD_VALUE) then
          gw.log.warn("response header ", hs[i][1], " left out: the value contains CR, LF or NUL")
        else
          headers[hs[i][1]] = v
        end
      end
    end
  end
  return gw.response.exit(plan.status, body, headers)
end

return Aggregator
