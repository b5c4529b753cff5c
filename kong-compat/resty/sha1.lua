-- resty.sha1 (gw kong-compat): incremental sha1 digests: new(), :update(s), :final(), :reset().
return require("gw_kong.crypto").resty_digest("sha1")
