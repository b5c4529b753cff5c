-- resty.sha512 (gw kong-compat): incremental sha512 digests: new(), :update(s), :final(), :reset().
return require("gw_kong.crypto").resty_digest("sha512")
