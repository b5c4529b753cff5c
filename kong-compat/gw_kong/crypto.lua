-- gw_kong.crypto — digests, HMAC, base64, CRC-32 and random bytes for the ngx.* and resty.*
-- shims: OpenSSL's libcrypto through FFI (bin/gw links it), usable in the master and the workers.
--
--   crypto.digest(alg, s) -> raw digest        alg: "md5", "sha1", "sha224", "sha256", "sha384", "sha512"
--   crypto.hmac(alg, key, s) -> raw MAC
--   crypto.new_digest(alg) -> object with :update(s), :final() -> raw digest, :reset()
--   crypto.resty_digest(alg) -> the module table of resty.<alg> (lua-resty-string's API)
--   crypto.hex(s), crypto.base64_encode(s [, no_padding]), crypto.base64_decode(s) -> s | nil
--   crypto.base64url_encode(s), crypto.base64url_decode(s), crypto.crc32(s), crypto.random_bytes(n)
local ffi = require "ffi"
local bit = require "bit"

local C = ffi.C
local byte, char, format, gsub = string.byte, string.char, string.format, string.gsub
local band, bxor, rshift = bit.band, bit.bxor, bit.rshift

pcall(ffi.cdef, [[
typedef struct evp_md_st EVP_MD;
typedef struct evp_md_ctx_st EVP_MD_CTX;
const EVP_MD *EVP_md5(void);
const EVP_MD *EVP_sha1(void);
const EVP_MD *EVP_sha224(void);
const EVP_MD *EVP_sha256(void);
const EVP_MD *EVP_sha384(void);
const EVP_MD *EVP_sha512(void);
EVP_MD_CTX *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
int EVP_DigestInit_ex(EVP_MD_CTX *ctx, const EVP_MD *type, void *impl);
int EVP_DigestUpdate(EVP_MD_CTX *ctx, const void *d, size_t cnt);
int EVP_DigestFinal_ex(EVP_MD_CTX *ctx, unsigned char *md, unsigned int *s);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *d,
                    size_t n, unsigned char *md, unsigned int *md_len);
int RAND_bytes(unsigned char *buf, int num);
]])

local M = {}

local MDS = {
  md5 = C.EVP_md5, sha1 = C.EVP_sha1, sha224 = C.EVP_sha224, sha256 = C.EVP_sha256,
  sha384 = C.EVP_sha384, sha512 = C.EVP_sha512,
}
M.SIZES = { md5 = 16, sha1 = 20, sha224 = 28, sha256 = 32, sha384 = 48, sha512 = 64 }

local function md_of(alg)
  local f = MDS[alg]
  if not f then error("unsupported digest '" .. tostring(alg) .. "'", 3) end
  return f()
end

local out_buf = ffi.new("unsigned char[64]")
local out_len = ffi.new("unsigned int[1]")
local shared_ctx

--- The raw digest of s.
function M.digest(alg, s)
  local md = md_of(alg)
  shared_ctx = shared_ctx or ffi.gc(C.EVP_MD_CTX_new(), C.EVP_MD_CTX_free)
  C.EVP_DigestInit_ex(shared_ctx, md, nil)
  C.EVP_DigestUpdate(shared_ctx, s, #s)
  C.EVP_DigestFinal_ex(shared_ctx, out_buf, out_len)
  return ffi.string(out_buf, out_len[0])
end

--- The raw HMAC of s under key.
function M.hmac(alg, key, s)
  local md = md_of(alg)
  C.HMAC(md, key, #key, s, #s, out_buf, out_len)
  return ffi.string(out_buf, out_len[0])
end

-- incremental digests (resty.sha256 and friends)
local Digest = {}
Digest.__index = Digest

function Digest:update(s)
  s = tostring(s)
  return C.EVP_DigestUpdate(self._ctx, s, #s) == 1
end

function Digest:final()
  local buf = ffi.new("unsigned char[64]")
  local n = ffi.new("unsigned int[1]")
  if C.EVP_DigestFinal_ex(self._ctx, buf, n) ~= 1 then return nil end
  return ffi.string(buf, n[0])
end

function Digest:reset()
  return C.EVP_DigestInit_ex(self._ctx, self._md, nil) == 1
end

function M.new_digest(alg)
  local md = md_of(alg)
  local ctx = ffi.gc(C.EVP_MD_CTX_new(), C.EVP_MD_CTX_free)
  if C.EVP_DigestInit_ex(ctx, md, nil) ~= 1 then return nil end
  return setmetatable({ _ctx = ctx, _md = md }, Digest)
end

--- The class of a lua-resty-string digest module (resty.sha256 and friends).
local resty_classes = {}
function M.resty_digest(alg)
  local cls = resty_classes[alg]
  if cls then return cls end
  cls = { _VERSION = "0.11", digest_len = M.SIZES[alg] }
  local mt = { __index = cls }
  function cls.new(_)
    local d = M.new_digest(alg)
    if not d then return nil end
    return setmetatable({ d = d }, mt)
  end
  function cls:update(s) return self.d:update(s) end
  function cls:final() return self.d:final() end
  function cls:reset() return self.d:reset() end
  resty_classes[alg] = cls
  return cls
end

function M.hex(s)
  return (gsub(s, ".", function(c) return format("%02x", byte(c)) end))
end

function M.random_bytes(n)
  local buf = ffi.new("unsigned char[?]", n)
  if C.RAND_bytes(buf, n) == 1 then return ffi.string(buf, n) end
  local f = assert(io.open("/dev/urandom", "rb"))
  local s = f:read(n)
  f:close()
  return s
end

---------------------------------------------------------------------------------------------
-- base64 (RFC 4648), the standard and the URL-safe alphabets

local STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local function encoder(alphabet)
  local enc = {}
  for i = 0, 63 do enc[i] = alphabet:sub(i + 1, i + 1) end
  return function(s, no_padding)
    local out, n = {}, #s
    for i = 1, n - 2, 3 do
      local a, b, c = byte(s, i, i + 2)
      local v = a * 65536 + b * 256 + c
      out[#out + 1] = enc[rshift(v, 18)] .. enc[band(rshift(v, 12), 63)] .. enc[band(rshift(v, 6), 63)] .. enc[band(v, 63)]
    end
    local rest = n % 3
    if rest == 1 then
      local a = byte(s, n)
      out[#out + 1] = enc[rshift(a, 2)] .. enc[band(a, 3) * 16] .. (no_padding and "" or "==")
    elseif rest == 2 then
      local a, b = byte(s, n - 1, n)
      local v = a * 256 + b
      out[#out + 1] = enc[rshift(v, 10)] .. enc[band(rshift(v, 4), 63)] .. enc[band(v, 15) * 4] .. (no_padding and "" or "=")
    end
    return table.concat(out)
  end
end

local function decoder(alphabet)
  local dec = {}
  for i = 1, 64 do dec[byte(alphabet, i)] = i - 1 end
  return function(s)
    if type(s) ~= "string" then return nil end
    local n = #s
    while n > 0 and byte(s, n) == 61 do n = n - 1 end        -- "=" padding
    if #s - n > 2 or n % 4 == 1 then return nil end
    local out, acc, bits = {}, 0, 0
    for i = 1, n do
      local v = dec[byte(s, i)]
      if not v then return nil end
      acc = acc * 64 + v
      bits = bits + 6
      if bits >= 8 then
        bits = bits - 8
        local b = rshift(acc, bits)
        out[#out + 1] = char(b)
        acc = acc - b * 2 ^ bits
      end
    end
    return table.concat(out)
  end
end

M.base64_encode = encoder(STD)
M.base64_decode = decoder(STD)
local url_encode = encoder(URL)
M.base64url_encode = function(s) return url_encode(s, true) end
M.base64url_decode = decoder(URL)

---------------------------------------------------------------------------------------------
-- CRC-32 (IEEE 802.3, as zlib and nginx compute it)

local CRC = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if band(c, 1) == 1 then c = bxor(rshift(c, 1), 0xEDB88320) else c = rshift(c, 1) end
  end
  CRC[i] = c
end

function M.crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do
    c = bxor(CRC[band(bxor(c, byte(s, i)), 0xFF)], rshift(c, 8))
  end
  c = bxor(c, 0xFFFFFFFF)
  if c < 0 then c = c + 4294967296 end
  return c
end

return M
