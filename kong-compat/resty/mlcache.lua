-- resty.mlcache (gw kong-compat): per-worker caches with kong.cache's API (gw_kong.cache).
return require("gw_kong.cache").mlcache
