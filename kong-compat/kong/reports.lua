-- kong.reports (gw kong-compat): anonymous usage reports are not sent by gw; every call is inert.
local function nothing() end
return setmetatable({}, { __index = function() return nothing end })
