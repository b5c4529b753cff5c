-- kong.timing (gw kong-compat): request timing instrumentation; inert in gw.
local function nothing() end
return setmetatable({}, { __index = function() return nothing end })
