-- kong.plugins.base_plugin (gw kong-compat): the base class of Kong 2.x plugins. Its phase
-- methods only log at debug level; gw_kong.wrap does not count them as phases the plugin
-- implements, so a plugin runs only in the phases it overrides.
local Object = require "kong.vendor.classic"
local ngx = require "gw_kong.ngx"

local BasePlugin = Object:extend()

function BasePlugin:new(name)
  self._name = name
end

local function phase(name)
  return function(self)
    ngx.log(ngx.DEBUG, 'executing plugin "', self._name, '": ', name)
  end
end

for _, p in ipairs({ "init_worker", "certificate", "rewrite", "access", "response", "header_filter",
                     "body_filter", "log" }) do
  BasePlugin[p] = phase(p)
end

return BasePlugin
