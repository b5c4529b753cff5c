-- bench/reload_loop.lua PORT OUTFILE: for 3 s, request an existing route in a loop on fresh and
-- kept-alive connections; write the slowest request's seconds to OUTFILE.
package.path = "spec/?.lua;" .. package.path
local helpers = require "spec.helpers"
local socket = require "socket"
local port, out = tonumber(arg[1]), arg[2]
local worst = 0
local stop = socket.gettime() + 3
local c = helpers.http_client("127.0.0.1", port)
local n = 0
while socket.gettime() < stop do
  n = n + 1
  if n % 10 == 0 then c:close() c = helpers.http_client("127.0.0.1", port) end
  local t0 = socket.gettime()
  local r = c:get("/s500/r3")
  local dt = socket.gettime() - t0
  if not r or r.status ~= 200 then dt = 99 end
  if dt > worst then worst = dt end
end
local f = io.open(out, "w") f:write(tostring(worst)) f:close()
