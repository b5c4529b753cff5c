-- resty.sha384 (gw kong-compat): incremental sha384 digests: new(), :update(s), :final(), :reset().
return require("gw_kong.crypto").resty_digest("sha384")
