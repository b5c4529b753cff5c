-- ngx.re (gw kong-compat): the lua-resty-core module (split, opt) over gw_kong.re.
local re = require "gw_kong.re"
return { split = re.split, opt = re.opt }
