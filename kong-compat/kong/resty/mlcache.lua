-- kong.resty.mlcache (gw kong-compat): Kong's copy of resty.mlcache, as gw_kong.cache.
return require("gw_kong.cache").mlcache
