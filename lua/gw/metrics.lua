--- gw.metrics — plugin metrics in the gateway's Prometheus table (runtime/metrics.c): shared by
-- every worker, summed there, shown by GET /metrics on the admin API.
--
--   local m = gw.metrics.counter("gateway_my_plugin_hits_total", "Hits, by route", { "route" })
--   m:inc(1, { route_name })
--   gw.metrics.gauge(name, help, labels):set(v, values)
--   gw.metrics.histogram(name, help, labels):observe(seconds, values)
--
-- A family is registered once (by whichever worker names it first); asking again for the same
-- name with the same type and labels returns it, anything else raises. Series are found in a
-- per-family Lua cache by their joined label values, so a call costs a table lookup and one FFI
-- call with an atomic add.
local ffi = require "ffi"
local C = ffi.C

pcall(ffi.cdef, [[
int gw_metrics_family(const char *name, int type, const char *help, const char *labels);
int gw_metrics_series(int family, const char *key, size_t keylen);
void gw_metrics_add(int series, double v);
void gw_metrics_set(int series, double v);
void gw_metrics_observe(int series, double v);
]])

local type, tostring, error, concat = type, tostring, error, table.concat
local COUNTER, GAUGE, HISTOGRAM = 1, 2, 3
local CACHE_MAX = 10000          -- series cached per family; past that, looked up in C each time

local M = {}
local families = {}              -- name -> family object (this worker)

-- one method table per kind: a counter has inc, a gauge set, a histogram observe
local Counter, Gauge, Histogram = {}, {}, {}
Counter.__index, Gauge.__index, Histogram.__index = Counter, Gauge, Histogram

local function series(self, values, fname)
  local n = self.nlabels
  local key
  if n == 0 then
    key = ""
  else
    if type(values) ~= "table" or #values ~= n then
      error(fname .. ": expected " .. n .. " label value(s) (" .. self.labels .. ")", 3)
    end
    if n == 1 then
      key = tostring(values[1])
    else
      local parts = {}
      for i = 1, n do parts[i] = tostring(values[i]) end
      key = concat(parts, "\31")
    end
  end
  local idx = self.cache[key]
  if idx then return idx end
  idx = C.gw_metrics_series(self.index, key, #key)
  if idx >= 0 and self.cached < CACHE_MAX then
    self.cache[key] = idx
    self.cached = self.cached + 1
  end
  return idx
end

local function number(v, fname)
  if type(v) ~= "number" or v ~= v then error(fname .. ": expected a number", 3) end
  return v
end

--- counter:inc([v = 1], values)
function Counter:inc(v, values)
  if type(v) == "table" then v, values = 1, v end
  v = v == nil and 1 or number(v, "inc")
  if v < 0 then error("inc: a counter only goes up", 2) end
  C.gw_metrics_add(series(self, values, "inc"), v)
end

--- gauge:set(v, values)
function Gauge:set(v, values)
  C.gw_metrics_set(series(self, values, "set"), number(v, "set"))
end

--- histogram:observe(v, values) (buckets from 1 ms to 30 s: made for durations in seconds)
function Histogram:observe(v, values)
  C.gw_metrics_observe(series(self, values, "observe"), number(v, "observe"))
end

local TYPE_NAMES = { [COUNTER] = "counter", [GAUGE] = "gauge", [HISTOGRAM] = "histogram" }
local METHODS = { [COUNTER] = Counter, [GAUGE] = Gauge, [HISTOGRAM] = Histogram }

local function family(kind, name, help, labels)
  local fname = "gw.metrics." .. TYPE_NAMES[kind]
  if type(name) ~= "string" then error(fname .. ": name must be a string", 3) end
  labels = labels or {}
  if type(labels) ~= "table" then error(fname .. ": labels must be a list of names", 3) end
  local joined = concat(labels, ",")
  local f = families[name]
  if f then
    if f.kind ~= kind or f.labels ~= joined then
      error(fname .. ": " .. name .. " is already a " .. TYPE_NAMES[f.kind] .. " with labels (" .. f.labels .. ")", 3)
    end
    return f
  end
  local idx = C.gw_metrics_family(name, kind, tostring(help or ""), joined)
  if idx < 0 then
    error(fname .. ": cannot register " .. name .. " (a valid name and label names, not le, " ..
          "the same type and labels wherever it is used, at most 256 families)", 3)
  end
  f = setmetatable({ index = idx, kind = kind, name = name, labels = joined, nlabels = #labels,
                     cache = {}, cached = 0 }, METHODS[kind])
  families[name] = f
  return f
end

--- The matched service's and route's names ("" for none): the usual first two label values.
function M.service_route()
  local svc, route = gw.router.get_service(), gw.router.get_route()
  return svc and svc.name or "", route and route.name or ""
end

function M.counter(name, help, labels) return family(COUNTER, name, help, labels) end
function M.gauge(name, help, labels) return family(GAUGE, name, help, labels) end
function M.histogram(name, help, labels) return family(HISTOGRAM, name, help, labels) end

return M
