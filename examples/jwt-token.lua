-- Prints an HS256 token for examples/jwt.yaml's consumer, valid for an hour:
--   bin/gw lua examples/jwt-token.lua [SUB]
local jwt = require "gw.jwt"
print((assert(jwt.sign({ iss = "web-app", sub = arg and arg[1] or "user-42", exp = os.time() + 3600 },
                       "HS256", "change-me: a long random JWT_SECRET"))))
