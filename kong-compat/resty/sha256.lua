-- resty.sha256 (gw kong-compat): incremental sha256 digests: new(), :update(s), :final(), :reset().
return require("gw_kong.crypto").resty_digest("sha256")
