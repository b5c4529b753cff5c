-- resty.md5 (gw kong-compat): incremental md5 digests: new(), :update(s), :final(), :reset().
return require("gw_kong.crypto").resty_digest("md5")
