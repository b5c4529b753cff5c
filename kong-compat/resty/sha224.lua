-- resty.sha224 (gw kong-compat): incremental sha224 digests: new(), :update(s), :final(), :reset().
return require("gw_kong.crypto").resty_digest("sha224")
