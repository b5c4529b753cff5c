--- gw.auth — what the authentication plugins (key-auth, basic-auth, acl, ...) share.
--
-- Consumers and their credentials come from the config's `consumers` section, compiled by
-- lua/gw/config.lua (which also hashes basic-auth passwords through this module). Each worker
-- builds lookup tables (credential -> consumer) once per generation, the first time a request
-- needs them, from gw._compiled().
--
--   auth.find_consumer(ref)                 -> consumer | nil     (ref: a consumer id or username)
--   auth.find_credential(kind, key)         -> credential, consumer | nil
--        kind "keyauth" (by key), "basicauth" (by username), "jwt" (by key)
--   auth.consumer_groups(consumer)          -> { "group", ... }, { group = true }   (acls)
--   auth.verify_basic(username, password)   -> consumer, credential | nil  (constant time)
--   auth.authenticate(consumer, credential [, identifier])
--        gw.client.authenticate + the X-Consumer-* headers sent upstream
--   auth.use_anonymous(ref)                  the configured anonymous consumer, X-Anonymous-Consumer
--   auth.unauthorized(message, challenge)    401 {"message":...} with WWW-Authenticate: challenge
--   auth.forbidden(message)                  403 {"message":...}
--   auth.constant_time_equals(a, b), auth.hash_password(pw [, salt]), auth.verify_password(pw, hash)
--   auth.decode_base64(s), auth.sha256(s) (raw digest), auth.random_bytes(n), auth.hex(s)
--
-- This module is also loaded by the config compiler in the master and by `gw check`, where the
-- `gw` API does not exist: only the request-time functions touch the global `gw`.
-- @module gw.auth
local ffi = require "ffi"
local bit = require "bit"

local M = {}

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local byte, char, format = string.byte, string.char, string.format
local band, bor, bxor, lshift, rshift = bit.band, bit.bor, bit.bxor, bit.lshift, bit.rshift
local concat = table.concat

---------------------------------------------------------------------------------------------
-- Crypto: OpenSSL's libcrypto through FFI when the process has it (bin/gw links it), else pure
-- Lua (gw.config.sha256, /dev/urandom).

pcall(ffi.cdef, [[
int RAND_bytes(unsigned char *buf, int num);
unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
]])

local function has_symbol(name)
  local ok, v = pcall(function() return ffi.C[name] end)
  return ok and v ~= nil
end

local HAVE_SHA256 = has_symbol("SHA256")
local HAVE_RAND = has_symbol("RAND_bytes")

--- Lowercase hex of a byte string.
function M.hex(s)
  return (s:gsub(".", function(c) return format("%02x", byte(c)) end))
end

local function unhex(h)
  return (h:gsub("%x%x", function(x) return char(tonumber(x, 16)) end))
end

local digest_buf = HAVE_SHA256 and ffi.new("unsigned char[32]")

--- SHA-256 of s, as 32 raw bytes.
function M.sha256(s)
  if HAVE_SHA256 then
    ffi.C.SHA256(s, #s, digest_buf)
    return ffi.string(digest_buf, 32)
  end
  return unhex(require("gw.config").sha256(s))
end

--- n cryptographically random bytes.
function M.random_bytes(n)
  if HAVE_RAND then
    local buf = ffi.new("unsigned char[?]", n)
    if ffi.C.RAND_bytes(buf, n) == 1 then return ffi.string(buf, n) end
  end
  local f = assert(io.open("/dev/urandom", "rb"))
  local s = f:read(n)
  f:close()
  assert(s and #s == n, "cannot read /dev/urandom")
  return s
end

--- Compares two strings in time that depends only on the length of `known` (the secret side),
-- never on where they differ. Non-strings compare unequal.
function M.constant_time_equals(known, given)
  if type(known) ~= "string" or type(given) ~= "string" then return false end
  local n, m = #known, #given
  if m == 0 then return n == 0 end
  local diff = bxor(n, m)
  for i = 1, n do
    -- when the lengths differ, keep reading `given` cyclically: same work, result stays false
    diff = bor(diff, bxor(byte(known, i), byte(given, (i - 1) % m + 1)))
  end
  return diff == 0
end

local HASH_PREFIX = "sha256$"

--- "sha256$SALT$HEX" where HEX = hex(SHA-256(SALT .. password)); SALT defaults to 32 random hex
-- characters. The same form is accepted as `password_hash` in the config.
function M.hash_password(password, salt)
  salt = salt or M.hex(M.random_bytes(16))
  return HASH_PREFIX .. salt .. "$" .. M.hex(M.sha256(salt .. password))
end

--- Parses a stored hash: salt, hex digest | nil, err.
function M.parse_password_hash(h)
  if type(h) ~= "string" then return nil, "expected a string" end
  local salt, digest = h:match("^sha256%$([^$]+)%$(%x+)$")
  if not salt or #digest ~= 64 then
    return nil, 'expected "sha256$SALT$HEX" (HEX: 64 hex digits of SHA-256(SALT .. password))'
  end
  return salt, digest:lower()
end

--- true when `password` matches the stored hash; the digests are compared in constant time.
function M.verify_password(password, stored)
  local salt, digest = M.parse_password_hash(stored)
  if not salt or type(password) ~= "string" then return false end
  return M.constant_time_equals(digest, M.hex(M.sha256(salt .. password)))
end

--- A stable UUID-shaped identifier derived from a string (consumer and credential ids that the
-- config does not give: the same config gives the same ids in every worker and after reloads).
function M.uuid_from(s)
  local h = M.hex(M.sha256("gw-id:" .. s))
  local v = tonumber(h:sub(17, 17), 16) % 4 + 1
  local variant = ("89ab"):sub(v, v)
  return h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-5" .. h:sub(14, 16) .. "-" .. variant .. h:sub(18, 20)
         .. "-" .. h:sub(21, 32)
end

---------------------------------------------------------------------------------------------
-- base64 (RFC 4648 standard alphabet; padding optional; anything else -> nil)

local B64 = {}
do
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  for i = 1, 64 do B64[byte(alphabet, i)] = i - 1 end
end

--- Decodes standard base64; nil for malformed input (bad characters, bad length or padding).
function M.decode_base64(s)
  if type(s) ~= "string" then return nil end
  local n = #s
  if n % 4 == 0 and n > 0 then
    if s:sub(-2) == "==" then n = n - 2 elseif s:sub(-1) == "=" then n = n - 1 end
  end
  if n % 4 == 1 then return nil end
  local out, acc, bits = {}, 0, 0
  for i = 1, n do
    local v = B64[byte(s, i)]
    if not v then return nil end
    acc = bor(lshift(acc, 6), v)
    bits = bits + 6
    if bits >= 8 then
      bits = bits - 8
      out[#out + 1] = char(band(rshift(acc, bits), 0xff))
      acc = band(acc, lshift(1, bits) - 1)
    end
  end
  if acc ~= 0 then return nil end      -- non-canonical trailing bits
  return concat(out)
end

---------------------------------------------------------------------------------------------
-- Lookup tables, built once per compiled config (generation) and worker.

local indexes = setmetatable({}, { __mode = "k" })
local EMPTY = { consumers = {} }

-- a password hash to verify against when the username is unknown, so that a miss costs the same
-- as a wrong password
local DUMMY_HASH = M.hash_password("gw-no-such-user", "00000000000000000000000000000000")

local function build(compiled)
  local idx = { by_id = {}, by_username = {}, by_custom_id = {}, keyauth = {}, basicauth = {}, jwt = {}, groups = {} }
  for _, c in ipairs(compiled.consumers or {}) do
    local consumer = { id = c.id, username = c.username, custom_id = c.custom_id, tags = c.tags }
    local ref = { id = c.id }
    idx.by_id[c.id] = consumer
    if c.username then idx.by_username[c.username] = consumer end
    if c.custom_id then idx.by_custom_id[c.custom_id] = consumer end
    for _, k in ipairs(c.keyauth_credentials or {}) do
      idx.keyauth[k.key] = { { id = k.id, key = k.key, tags = k.tags, consumer = ref }, consumer }
    end
    for _, b in ipairs(c.basicauth_credentials or {}) do
      idx.basicauth[b.username] = { { id = b.id, username = b.username, tags = b.tags, consumer = ref },
                                    consumer, b.password }
    end
    for _, j in ipairs(c.jwt_secrets or {}) do
      if type(j.key) == "string" then
        idx.jwt[j.key] = { { id = j.id, key = j.key, algorithm = j.algorithm, secret = j.secret,
                             rsa_public_key = j.rsa_public_key, tags = j.tags, consumer = ref }, consumer }
      end
    end
    local list, set = {}, {}
    for _, a in ipairs(c.acls or {}) do
      if not set[a.group] then
        set[a.group] = true
        list[#list + 1] = a.group
      end
    end
    idx.groups[c.id] = { list, set }
  end
  return idx
end

-- Tests may point the module at a compiled config of their own (nil: back to gw._compiled()).
function M._set_compiled(compiled) M._compiled = compiled end

--- The lookup tables of the running generation (or of `compiled`).
function M.index(compiled)
  compiled = compiled or M._compiled
  if not compiled then
    local g = rawget(_G, "gw")
    compiled = g and g._compiled and g._compiled() or EMPTY
  end
  local idx = indexes[compiled]
  if not idx then
    idx = build(compiled)
    indexes[compiled] = idx
  end
  return idx
end

--- A consumer by id, else by username.
function M.find_consumer(ref)
  if type(ref) ~= "string" then return nil end
  local idx = M.index()
  return idx.by_id[ref] or idx.by_username[ref]
end

--- A consumer named by a token's claim (sub, client_id, ...): by username, else by custom_id.
function M.find_consumer_by_claim(value)
  if type(value) ~= "string" then return nil end
  local idx = M.index()
  return idx.by_username[value] or idx.by_custom_id[value]
end

--- The credential of a kind by its key ("keyauth": key, "basicauth": username, "jwt": key), and
-- its consumer.
function M.find_credential(kind, key)
  local t = M.index()[kind]
  if not t then error("gw.auth.find_credential: unknown kind '" .. tostring(kind) .. "'", 2) end
  local e = type(key) == "string" and t[key]
  if not e then return nil end
  return e[1], e[2]
end

--- The groups (acls) of a consumer: a list and a set.
function M.consumer_groups(consumer)
  local g = type(consumer) == "table" and consumer.id and M.index().groups[consumer.id]
  if not g then return {}, {} end
  return g[1], g[2]
end

--- Checks a basic-auth username and password: consumer, credential, or nil. Costs one hash and
-- one constant-time compare whether or not the username exists.
function M.verify_basic(username, password)
  local e = type(username) == "string" and M.index().basicauth[username]
  if not e then
    M.verify_password(password or "", DUMMY_HASH)
    return nil
  end
  if not M.verify_password(password, e[3]) then return nil end
  return e[2], e[1]
end

---------------------------------------------------------------------------------------------
-- Request time (rewrite / access)

M.HEADERS = {
  consumer_id = "X-Consumer-ID",
  custom_id = "X-Consumer-Custom-ID",
  username = "X-Consumer-Username",
  credential = "X-Credential-Identifier",
  anonymous = "X-Anonymous-Consumer",
  groups = "X-Consumer-Groups",
}
local H = M.HEADERS

--- Sets (or clears, so a client cannot send its own) the headers that tell the upstream who
-- called: X-Consumer-ID, X-Consumer-Custom-ID, X-Consumer-Username, X-Credential-Identifier, and
-- X-Anonymous-Consumer: true when there is no credential (the anonymous consumer).
local NO_CONSUMER = {}

-- Each header set or cleared at its own call site (no shared helper branching on the value: a
-- branch taken both ways in one small function sends LuaJIT's trace back to the interpreter).
function M.set_consumer_headers(consumer, credential, identifier)
  consumer = type(consumer) == "table" and consumer or NO_CONSUMER
  local req = gw.service.request
  local id, custom_id, username = consumer.id, consumer.custom_id, consumer.username
  if id ~= nil then req.set_header(H.consumer_id, tostring(id)) else req.clear_header(H.consumer_id) end
  if custom_id ~= nil then req.set_header(H.custom_id, tostring(custom_id)) else req.clear_header(H.custom_id) end
  if username ~= nil then req.set_header(H.username, tostring(username)) else req.clear_header(H.username) end
  if credential ~= nil then
    if identifier == nil and type(credential) == "table" then identifier = credential.id end
    if identifier then req.set_header(H.credential, tostring(identifier)) else req.clear_header(H.credential) end
    req.clear_header(H.anonymous)
  else
    req.clear_header(H.credential)
    req.set_header(H.anonymous, "true")
  end
end

--- gw.client.authenticate(consumer, credential) and the upstream headers. `identifier` is what
-- X-Credential-Identifier carries (default: credential.id).
function M.authenticate(consumer, credential, identifier)
  gw.client.authenticate(consumer, credential)
  M.set_consumer_headers(consumer, credential, identifier)
end

--- Ends the request: 401 {"message": message} with WWW-Authenticate: challenge.
function M.unauthorized(message, challenge)
  return gw.response.exit(401, { message = message or "Unauthorized" },
                          challenge and { ["WWW-Authenticate"] = challenge } or nil)
end

--- Ends the request: 403 {"message": message}.
function M.forbidden(message)
  return gw.response.exit(403, { message = message or "You cannot consume this service" })
end

--- Authenticates the request as the anonymous consumer `ref` (an id or username). The config
-- compiler refuses an `anonymous` that names no consumer, so a miss here means the consumers
-- changed under the plugin: logged, 500.
function M.use_anonymous(ref)
  local consumer = M.find_consumer(ref)
  if not consumer then
    gw.log.err("anonymous consumer '", tostring(ref), "' not found")
    return gw.response.exit(500, { message = "An unexpected error occurred" })
  end
  M.authenticate(consumer, nil)
  return true
end

--- true when an earlier plugin of the request already authenticated it with a credential (with
-- `anonymous` set, a later auth plugin then leaves the request alone: the plugins act as "or").
function M.already_authenticated()
  return gw.client.get_credential() ~= nil
end

--- Decodes a URL-encoded query component ("+" is a space).
function M.url_unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

--- A raw query string without the arguments named `name` (compared after decoding); the other
-- arguments keep their exact encoding and order.
function M.strip_query_arg(raw, name)
  if not raw or raw == "" then return "" end
  local out = {}
  for pair in raw:gmatch("[^&]+") do
    local k = pair:match("^([^=]*)")
    if M.url_unescape(k) ~= name then out[#out + 1] = pair end
  end
  return concat(out, "&")
end

return M
