-- Shared by the jwt specs (loaded with dofile; not a spec itself): keys generated with
-- `openssl genpkey` into a temp dir once per run, and builders for hand-made (hostile) tokens.
local helpers = require "spec.helpers"
local jwt = require "gw.jwt"
local ffi = require "ffi"

local M = {}
local b64 = jwt.base64url_encode
M.b64 = b64

local keys
--- { rsa = {private=, public=}, rsa2 = ..., rsa1024 = ..., ec256 = ..., ec384 = ..., ec521 = ... }
function M.keys()
  if keys then return keys end
  local dir = helpers.tmpdir("jwt-keys")
  local function gen(name, opts)
    local priv, pub = dir .. "/" .. name .. ".pem", dir .. "/" .. name .. ".pub"
    local rc, out = helpers.execute(("openssl genpkey %s -out %s && openssl pkey -in %s -pubout -out %s")
      :format(opts, helpers.shell_quote(priv), helpers.shell_quote(priv), helpers.shell_quote(pub)))
    assert(rc == 0, "openssl genpkey " .. opts .. ": " .. out)
    return { private = assert(helpers.read_file(priv)), public = assert(helpers.read_file(pub)) }
  end
  keys = {
    rsa = gen("rsa", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048"),
    rsa2 = gen("rsa2", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048"),
    rsa1024 = gen("rsa1024", "-algorithm RSA -pkeyopt rsa_keygen_bits:1024"),
    ec256 = gen("ec256", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256"),
    ec384 = gen("ec384", "-algorithm EC -pkeyopt ec_paramgen_curve:P-384"),
    ec521 = gen("ec521", "-algorithm EC -pkeyopt ec_paramgen_curve:P-521"),
  }
  return keys
end

pcall(ffi.cdef, [[
const void *EVP_sha256(void);
const void *EVP_sha384(void);
const void *EVP_sha512(void);
unsigned char *HMAC(const void *evp_md, const void *key, int key_len, const unsigned char *d,
                    size_t n, unsigned char *md, unsigned int *md_len);
]])

--- HMAC-SHA-256/384/512 of data with key (libcrypto through FFI): raw bytes.
function M.hmac(bits, key, data)
  local md = bits == 384 and ffi.C.EVP_sha384() or bits == 512 and ffi.C.EVP_sha512() or ffi.C.EVP_sha256()
  local out, n = ffi.new("unsigned char[64]"), ffi.new("unsigned int[1]")
  ffi.C.HMAC(md, key, #key, data, #data, out, n)
  return ffi.string(out, n[0])
end

--- A token from parts: header and claims are tables (JSON-encoded) or raw JSON strings;
-- sign: nil (empty signature), a string (raw signature bytes), or {hmac = bits, key = key}.
function M.token(header, claims, sign)
  local cjson = require "cjson"
  local h = type(header) == "string" and header or cjson.encode(header)
  local c = type(claims) == "string" and claims or cjson.encode(claims)
  local input = b64(h) .. "." .. b64(c)
  local sig = ""
  if type(sign) == "table" then sig = M.hmac(sign.hmac or 256, sign.key, input)
  elseif type(sign) == "string" then sig = sign end
  return input .. "." .. b64(sig)
end

--- Replaces one segment (1..3) of a token.
function M.with_segment(token, i, seg)
  local parts = {}
  for p in (token .. "."):gmatch("([^.]*)%.") do parts[#parts + 1] = p end
  parts[i] = seg
  return table.concat(parts, ".")
end

--- Standard base64 (with '+', '/' and '=' padding) of a string: what a careless issuer sends.
function M.std_b64(s)
  local u = b64(s):gsub("-", "+"):gsub("_", "/")
  return u .. string.rep("=", (4 - #u % 4) % 4)
end

return M
