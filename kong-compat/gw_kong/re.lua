-- gw_kong.re — ngx.re.match / find / gmatch / sub / gsub (and ngx.re.split, ngx.re.opt) on gw's
-- PCRE2 (gw.regex). Compiled patterns are cached per (pattern, flags) in a bounded table, so the
-- "o" option is implied; "j" (JIT) is implied too (gw.regex JIT-compiles every pattern).
--
-- Options: a (anchored), i, m, s, x, u, U, D map to gw.regex's flags; j, o and J are accepted and
-- need nothing; d (DFA) is accepted and ignored (the usual matcher runs). Any other letter
-- raises, as in OpenResty; a pattern that does not compile gives nil, err. `ctx.pos` is honoured and updated; match's `res` table is reused.
local regex = require "gw.regex"

local type, tostring, tonumber = type, tostring, tonumber
local sub, find = string.sub, string.find
local concat = table.concat

local M = {}

local FLAG = { a = "a", i = "i", m = "m", s = "s", x = "x", u = "u", U = "U", D = "D",
               j = "", o = "", J = "", d = "" }

local flag_cache = {}
local function flags_of(opts)
  if opts == nil or opts == "" then return "" end
  local f = flag_cache[opts]
  if f then return f end
  local out = {}
  for i = 1, #opts do
    local c = sub(opts, i, i)
    local g = FLAG[c]
    if not g then return nil, 'unknown flag "' .. c .. '" (flags "' .. opts .. '")' end
    out[#out + 1] = g
  end
  f = concat(out)
  flag_cache[opts] = f
  return f
end

local cache, cached = {}, 0
local MAX_CACHED = 1024

--- The compiled regex for (pattern, options), or nil, err.
local function compile(pattern, opts)
  if type(pattern) ~= "string" then pattern = tostring(pattern) end
  local flags, ferr = flags_of(opts)
  if not flags then error(ferr, 3) end         -- as lua-resty-core: an unknown flag raises
  local key = flags .. "\0" .. pattern
  local re = cache[key]
  if re then return re end
  local err
  re, err = regex.compile(pattern, flags)
  if not re then return nil, "failed to compile regex \"" .. pattern .. "\": " .. tostring(err) end
  if cached >= MAX_CACHED then cache, cached = {}, 0 end
  cache[key] = re
  cached = cached + 1
  return re
end
M.compile = compile

local function subject_of(s)
  if type(s) == "string" then return s end
  if s == nil then error("bad argument #1: string expected, got nil", 3) end
  return tostring(s)
end

--- ngx.re.match(subject, regex, options?, ctx?, res?) -> captures | nil | nil, err
function M.match(subject, pattern, opts, ctx, res)
  subject = subject_of(subject)
  local re, err = compile(pattern, opts)
  if not re then return nil, err end
  local init = ctx and ctx.pos or 1
  local caps, _, to = re:exec(subject, init)
  if not caps then return nil end
  if ctx then ctx.pos = to + 1 end
  if res then
    for k in pairs(res) do res[k] = nil end
    for k, v in pairs(caps) do res[k] = v end
    return res
  end
  return caps
end

--- ngx.re.find(subject, regex, options?, ctx?, nth?) -> from, to | nil | nil, nil, err
-- With nth > 0 the positions of that capture: found by searching its text inside the match
-- (gw.regex reports the whole match's positions only).
function M.find(subject, pattern, opts, ctx, nth)
  subject = subject_of(subject)
  local re, err = compile(pattern, opts)
  if not re then return nil, nil, err end
  local init = ctx and ctx.pos or 1
  local caps, from, to = re:exec(subject, init)
  if not caps then return nil end
  if ctx then ctx.pos = to + 1 end
  if nth and nth > 0 then
    local c = caps[nth]
    if not c then return nil end
    local f = find(subject, c, from, true)
    if not f then return nil end
    return f, f + #c - 1
  end
  return from, to
end

--- ngx.re.gmatch(subject, regex, options?) -> iterator | nil, err
function M.gmatch(subject, pattern, opts)
  subject = subject_of(subject)
  local re, err = compile(pattern, opts)
  if not re then return nil, err end
  local pos, n = 1, #subject
  local done = false
  return function()
    if done or pos > n + 1 then return nil end
    local caps, from, to = re:exec(subject, pos)
    if not caps then
      done = true
      return nil
    end
    if to < from then pos = to + 2 else pos = to + 1 end   -- an empty match moves on by one
    return caps
  end
end

-- "$0", "$1", "${name}", "$$" in a replacement template
local function expand(tpl, caps)
  if not find(tpl, "$", 1, true) then return tpl end
  local out, i, n = {}, 1, #tpl
  while i <= n do
    local d = find(tpl, "$", i, true)
    if not d then out[#out + 1] = sub(tpl, i) break end
    out[#out + 1] = sub(tpl, i, d - 1)
    local c = sub(tpl, d + 1, d + 1)
    if c == "$" then
      out[#out + 1] = "$"
      i = d + 2
    elseif c == "{" then
      local close = find(tpl, "}", d + 2, true)
      if not close then error("the closing bracket in \"" .. tpl .. "\" not found", 4) end
      local name = sub(tpl, d + 2, close - 1)
      local v = caps[tonumber(name) or name]
      out[#out + 1] = v or ""
      i = close + 1
    else
      local digits = tpl:match("^%d+", d + 1)
      if not digits then error("invalid capturing variable name found in \"" .. tpl .. "\"", 4) end
      out[#out + 1] = caps[tonumber(digits)] or ""
      i = d + 1 + #digits
    end
  end
  return concat(out)
end

local function replace(subject, pattern, repl, opts, max)
  subject = subject_of(subject)
  local re, err = compile(pattern, opts)
  if not re then return nil, nil, err end
  local rt = type(repl)
  if rt ~= "string" and rt ~= "function" then
    if rt == "number" then repl, rt = tostring(repl), "string"
    else error("bad argument #3: string or function expected, got " .. rt, 3) end
  end
  local out, pos, count, n = {}, 1, 0, #subject
  while pos <= n + 1 do
    local caps, from, to = re:exec(subject, pos)
    if not caps then break end
    out[#out + 1] = sub(subject, pos, from - 1)
    local r
    if rt == "function" then
      r = repl(caps)
      if r == nil then r = "" else r = tostring(r) end
    else
      r = expand(repl, caps)
    end
    out[#out + 1] = r
    count = count + 1
    if to < from then                      -- empty match: copy one byte and move on
      if from <= n then out[#out + 1] = sub(subject, from, from) end
      pos = from + 1
    else
      pos = to + 1
    end
    if max and count >= max then break end
  end
  if count == 0 then return subject, 0 end
  if pos <= n then out[#out + 1] = sub(subject, pos) end
  return concat(out), count
end

--- ngx.re.sub(subject, regex, replace, options?) -> new, n | nil, nil, err
function M.sub(subject, pattern, repl, opts) return replace(subject, pattern, repl, opts, 1) end
--- ngx.re.gsub(subject, regex, replace, options?) -> new, n | nil, nil, err
function M.gsub(subject, pattern, repl, opts) return replace(subject, pattern, repl, opts, nil) end

--- ngx.re.split(subject, regex, options?, ctx?, max?, res?) (the lua-resty-core ngx.re module)
function M.split(subject, pattern, opts, ctx, max, res)
  subject = subject_of(subject)
  local out = res or {}
  if res then for i = #res, 1, -1 do res[i] = nil end end
  local n = #subject
  if max and max <= 0 then max = nil end
  local re, err = compile(pattern, opts)
  if not re then return nil, err end
  local pos, count = ctx and ctx.pos or 1, 0
  while pos <= n do
    if max and count == max - 1 then break end
    local caps, from, to = re:exec(subject, pos)
    if not caps then break end
    if to < from then                        -- an empty match splits between characters
      if from > n then break end
      to = from
      out[#out + 1] = sub(subject, pos, from)
      pos = from + 1
    else
      out[#out + 1] = sub(subject, pos, from - 1)
      pos = to + 1
    end
    count = count + 1
    for i = 1, #caps do out[#out + 1] = caps[i] end
  end
  out[#out + 1] = sub(subject, pos)
  -- trailing empty pieces are dropped, as in OpenResty
  while #out > 0 and out[#out] == "" and not max do out[#out] = nil end
  return out
end

--- ngx.re.opt(name, value): "jit_stack_size" and "match_limit" are accepted and ignored.
function M.opt(name, _)
  if name ~= "jit_stack_size" and name ~= "match_limit" then
    error("unrecognized option name", 2)
  end
end

return M
