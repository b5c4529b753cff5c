-- gw.jwt (runtime/lua/jwt.c) called directly: signing and verification for every supported
-- algorithm, the pinned algorithm, key kinds, strict parsing, and a fuzz loop.
local helpers = require "spec.helpers"
local jwt = require "gw.jwt"
local ffi = require "ffi"
local J = dofile(helpers.repo .. "/spec/03-plugins/04-jwt/jwt_helpers.lua")

local b64, token = J.b64, J.token
local CLAIMS = { iss = "issuer-1", sub = "alice", n = 42, list = { 1, 2 } }

local function refused(pattern, ...)
  local claims, err = jwt.verify(...)
  assert.is_nil(claims)
  assert.is_string(err)
  if pattern then assert.matches(pattern, err, 1, true) end
  return err
end

describe("gw.jwt", function()
  local K

  lazy_setup(function() K = J.keys() end)

  it("lists the supported algorithms", function()
    assert.same({ "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512" },
                jwt.algorithms)
    assert.equal(16384, jwt.MAX_TOKEN)
  end)

  describe("sign and verify", function()
    it("round-trips every algorithm with the key kind it needs", function()
      local cases = {
        { "HS256", "s3cret", "s3cret" }, { "HS384", "s3cret", "s3cret" }, { "HS512", "s3cret", "s3cret" },
        { "RS256", K.rsa.private, K.rsa.public }, { "RS384", K.rsa.private, K.rsa.public },
        { "RS512", K.rsa.private, K.rsa.public },
        { "ES256", K.ec256.private, K.ec256.public }, { "ES384", K.ec384.private, K.ec384.public },
        { "ES512", K.ec521.private, K.ec521.public },
      }
      for _, c in ipairs(cases) do
        local tok = assert(jwt.sign(CLAIMS, c[1], c[2], { kid = "k-" .. c[1] }))
        assert.matches("^[%w_-]+%.[%w_-]+%.[%w_-]+$", tok)
        local claims, header = jwt.verify(tok, c[1], c[3])
        assert.is_table(claims, c[1])
        assert.same(CLAIMS, claims)
        assert.equal(c[1], header.alg)
        assert.equal("JWT", header.typ)
        assert.equal("k-" .. c[1], header.kid)
      end
    end)

    it("decode returns header and claims without verifying", function()
      local tok = jwt.sign({ iss = "x", exp = 1700000000 }, "HS256", "k", { kid = "key-7" })
      local header, claims = jwt.decode(tok)
      assert.same({ alg = "HS256", typ = "JWT", kid = "key-7" }, header)
      assert.same({ iss = "x", exp = 1700000000 }, claims)
      -- a signature made with another key does not matter to decode
      header, claims = jwt.decode(J.with_segment(tok, 3, b64("whatever")))
      assert.equal("x", claims.iss)
    end)

    it("accepts claims as JSON text", function()
      local tok = assert(jwt.sign('{"iss":"a","nested":{"x":[true,null]}}', "HS256", "k"))
      local claims = assert(jwt.verify(tok, "HS256", "k"))
      assert.equal("a", claims.iss)
      assert.is_true(claims.nested.x[1])
    end)

    it("refuses a wrong secret, a wrong public key and a tampered token", function()
      local tok = jwt.sign(CLAIMS, "HS256", "right")
      refused("invalid signature", tok, "HS256", "wrong")
      local rtok = jwt.sign(CLAIMS, "RS256", K.rsa.private)
      refused("invalid signature", rtok, "RS256", K.rsa2.public)
      local etok = jwt.sign(CLAIMS, "ES256", K.ec256.private)
      -- tampered payload, signature kept
      for _, t in ipairs({ tok, rtok, etok }) do
        local alg = jwt.decode(t).alg
        local key = alg == "HS256" and "right" or alg == "RS256" and K.rsa.public or K.ec256.public
        assert.is_table(jwt.verify(t, alg, key))
        refused("invalid signature", J.with_segment(t, 2, b64('{"iss":"issuer-1","sub":"admin"}')), alg, key)
        -- tampered signature: one character changed
        local sig = t:match("[^.]+$")
        local c = sig:sub(5, 5) == "A" and "B" or "A"
        refused(nil, J.with_segment(t, 3, sig:sub(1, 4) .. c .. sig:sub(6)), alg, key)
        -- signature cut short, or dropped
        refused(nil, J.with_segment(t, 3, sig:sub(1, #sig - 4)), alg, key)
        refused("empty signature", J.with_segment(t, 3, ""), alg, key)
      end
    end)
  end)

  describe("the pinned algorithm", function()
    it("must equal the header's alg exactly", function()
      local tok = jwt.sign(CLAIMS, "HS256", "k")
      refused("algorithm mismatch", tok, "HS384", "k")
      refused("algorithm mismatch", tok, "HS512", "k")
      refused("algorithm mismatch", tok, "RS256", K.rsa.public)
      -- a correctly HMAC'd token whose alg is spelled "hs256": libjwt would accept it
      local lower = token({ alg = "hs256", typ = "JWT" }, CLAIMS, { key = "k" })
      refused("algorithm mismatch", lower, "HS256", "k")
      refused("unsupported algorithm", tok, "hs256", "k")
      refused("unsupported algorithm", tok, "PS256", "k")
      refused("unsupported algorithm", tok, "EdDSA", "k")
    end)

    it("refuses alg none in any letter case, with or without a signature", function()
      for _, none in ipairs({ "none", "None", "NONE", "nOnE", "NoNe" }) do
        local unsigned = token({ alg = none, typ = "JWT" }, CLAIMS, nil)
        local signed = token({ alg = none }, CLAIMS, { key = "k" })
        for _, alg in ipairs({ "HS256", "RS256" }) do
          local key = alg == "HS256" and "k" or K.rsa.public
          refused("alg none is refused", unsigned, alg, key)
          refused("alg none is refused", signed, alg, key)
        end
        refused("alg none is refused", signed, none, "k")
        local t, err = jwt.sign(CLAIMS, none, "k")
        assert.is_nil(t)
        assert.equal("alg none is refused", err)
      end
    end)

    it("never uses an RSA public key as an HMAC secret (RS256 -> HS256 confusion)", function()
      -- the attacker signs with HMAC-SHA256 keyed with the server's public key text
      for _, pub in ipairs({ K.rsa.public, K.ec256.public }) do
        local forged = token({ alg = "HS256", typ = "JWT" }, { iss = "issuer-1", sub = "admin" },
                             { key = pub })
        refused("algorithm mismatch", forged, "RS256", pub)
        refused("algorithm mismatch", forged, "ES256", pub)
        refused("a PEM key is not an HMAC secret", forged, "HS256", pub)
        -- libjwt 1.10 on its own takes the algorithm from the token and accepts the forgery
        pcall(ffi.cdef, [[
          typedef struct jwt jwt_t;
          int jwt_decode(jwt_t **jwt, const char *token, const unsigned char *key, int key_len);
          void jwt_free(jwt_t *jwt);
        ]])
        local jp = ffi.new("jwt_t *[1]")
        assert.equal(0, ffi.C.jwt_decode(jp, forged, pub, #pub))
        ffi.C.jwt_free(jp[0])
      end
      local t, err = jwt.sign(CLAIMS, "HS256", K.rsa.public)
      assert.is_nil(t)
      assert.matches("PEM key is not an HMAC secret", err, 1, true)
    end)

    it("needs the key kind of the algorithm", function()
      local rtok = jwt.sign(CLAIMS, "RS256", K.rsa.private)
      refused("needs an RSA key", rtok, "RS256", K.ec256.public)
      refused("expected a PEM public key", rtok, "RS256", "not a key")
      refused("expected a PEM public key", rtok, "RS256", K.rsa.private)   -- a private key is not a public key
      refused("empty key", rtok, "RS256", "")
      refused("at least 2048 bits", rtok, "RS256", K.rsa1024.public)
      local etok = jwt.sign(CLAIMS, "ES256", K.ec256.private)
      refused("ES256 needs a P-256 key", etok, "ES256", K.ec384.public)
      refused("needs an EC key", etok, "ES256", K.rsa.public)
      local e384 = jwt.sign(CLAIMS, "ES384", K.ec384.private)
      refused("ES384 needs a P-384 key", e384, "ES384", K.ec256.public)
      -- signing checks the same
      assert.is_nil((jwt.sign(CLAIMS, "RS256", K.ec256.private)))
      assert.is_nil((jwt.sign(CLAIMS, "RS256", K.rsa1024.private)))
      assert.is_nil((jwt.sign(CLAIMS, "ES256", K.ec384.private)))
      assert.is_nil((jwt.sign(CLAIMS, "RS256", K.rsa.public)))
      assert.is_nil((jwt.sign(CLAIMS, "HS256", "")))
    end)

    it("refuses an encrypted private key instead of prompting for a passphrase", function()
      local dir = helpers.tmpdir("jwt-enc")
      helpers.write_file(dir .. "/k.pem", K.rsa.private)
      local rc, out = helpers.execute("openssl pkey -in " .. dir .. "/k.pem -aes128 -passout pass:x -out "
                                      .. dir .. "/enc.pem </dev/null")
      assert.equal(0, rc, out)
      local t, err = jwt.sign(CLAIMS, "RS256", helpers.read_file(dir .. "/enc.pem"))
      assert.is_nil(t)
      assert.matches("unencrypted PEM private key", err, 1, true)
    end)
  end)

  describe("strict parsing", function()
    local good
    before_each(function() good = jwt.sign(CLAIMS, "HS256", "k") end)

    it("wants exactly 3 segments", function()
      local h, p, s = good:match("^([^.]+)%.([^.]+)%.([^.]+)$")
      for _, bad in ipairs({ h, h .. "." .. p, h .. "." .. p .. "." .. s .. ".", h .. "." .. p .. "." .. s .. "." .. s,
                             ".", "..", "...", "" }) do
        assert.is_nil((jwt.decode(bad)))
        refused(nil, bad, "HS256", "k")
      end
      refused("expected 3 segments", h .. "." .. p, "HS256", "k")
      refused("empty header", "." .. p .. "." .. s, "HS256", "k")
      refused("empty payload", h .. ".." .. s, "HS256", "k")
    end)

    it("refuses a JWE (5 segments) where a JWS is expected, and a JWE header", function()
      local jwe = b64('{"alg":"RSA-OAEP","enc":"A256GCM"}') .. "." .. b64(("k"):rep(256)) .. "."
                  .. b64("iv-iv-iv-iv-") .. "." .. b64("ciphertext") .. "." .. b64("tag-tag-tag-tag-")
      refused("JWE", jwe, "RS256", K.rsa.public)
      local _, err = jwt.decode(jwe)
      assert.matches("JWE", err, 1, true)
      -- three segments but an "enc" header
      refused("JWE", token({ alg = "HS256", enc = "A128GCM" }, CLAIMS, { key = "k" }), "HS256", "k")
    end)

    it("accepts base64url only: no '+', '/', '=' padding, or other bytes", function()
      -- the same claims in standard base64 with padding: what libjwt's decoder would take
      local claims = '{"iss":"issuer-1","sub":"a>b?c~~"}'   -- encodes with '+' or '/' and padding
      local std = J.std_b64(claims)
      assert.truthy(std:find("[+/=]"))
      local h = b64('{"alg":"HS256","typ":"JWT"}')
      local input = h .. "." .. std
      local tok = input .. "." .. b64(J.hmac(256, "k", input))
      refused("base64 ('+', '/' or '=') instead of base64url", tok, "HS256", "k")
      assert.is_nil((jwt.decode(tok)))
      -- padding on an otherwise valid token
      refused("instead of base64url", good .. "=", "HS256", "k")
      refused("instead of base64url", J.with_segment(good, 1, J.std_b64('{"alg":"HS256" }')), "HS256", "k")
      for _, c in ipairs({ " ", "\t", "\n", "\0", "*", "\255", "%" }) do
        refused("outside the base64url alphabet", good:sub(1, 10) .. c .. good:sub(11), "HS256", "k")
        refused(nil, c .. good, "HS256", "k")
      end
    end)

    it("accepts canonical base64url only (unused bits zero, no impossible length)", function()
      local p = b64('{"a":1}')             -- 7 bytes: 10 characters, the last carries 2 unused bits
      assert.equal(10, #p)
      local last = p:sub(-1)
      local idx = ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"):find(last, 1, true)
      local other = ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"):sub(idx + 1, idx + 1)
      local h = b64('{"alg":"HS256"}')
      local input = h .. "." .. p:sub(1, -2) .. other
      refused("not canonical base64url", input .. "." .. b64(J.hmac(256, "k", input)), "HS256", "k")
      refused("not canonical", h .. "." .. b64('{"a":1}') .. "AAA" .. "." .. b64("x"), "HS256", "k")   -- 13 characters
      assert.is_nil((jwt.base64url_decode("QUJD" .. "Q")))
      assert.is_nil((jwt.base64url_decode("QR")))       -- 'R' sets unused bits
      assert.equal("A", jwt.base64url_decode("QQ"))
    end)

    it("wants JSON objects for header and payload", function()
      local bad_json = { "[]", '["alg","HS256"]', "1", '"x"', "null", "{", '{"alg":"HS256"', "{}garbage",
                         '{"alg":NaN}', '{"exp":Infinity}', '{"exp":0x10}', '{"a":1}\0{}', "",
                         ("["):rep(100) .. ("]"):rep(100) }
      for _, j in ipairs(bad_json) do
        local as_payload = token({ alg = "HS256" }, j, { key = "k" })
        local as_header = token(j, CLAIMS, { key = "k" })
        refused(nil, as_payload, "HS256", "k")
        refused(nil, as_header, "HS256", "k")
        assert.is_nil((jwt.decode(as_header)))
        if j ~= "" then assert.is_nil((jwt.decode(as_payload))) end
      end
      refused("payload is not a JSON object", token({ alg = "HS256" }, "[1,2]", { key = "k" }), "HS256", "k")
      refused("header is not valid JSON", token('{"alg":"HS256"', CLAIMS, { key = "k" }), "HS256", "k")
    end)

    it("checks alg, typ and crit in the header", function()
      for _, alg in ipairs({ 256, true, { "HS256" }, { alg = "HS256" } }) do
        refused('no "alg" string', token({ alg = alg }, CLAIMS, { key = "k" }), "HS256", "k")
      end
      refused('no "alg" string', token({ typ = "JWT" }, CLAIMS, { key = "k" }), "HS256", "k")
      refused('"typ" is not JWT', token({ alg = "HS256", typ = "JWE" }, CLAIMS, { key = "k" }), "HS256", "k")
      refused('"typ" is not JWT', token({ alg = "HS256", typ = 1 }, CLAIMS, { key = "k" }), "HS256", "k")
      assert.is_table(jwt.verify(token({ alg = "HS256", typ = "jwt" }, CLAIMS, { key = "k" }), "HS256", "k"))
      assert.is_table(jwt.verify(token({ alg = "HS256" }, CLAIMS, { key = "k" }), "HS256", "k"))
      refused('"crit"', token({ alg = "HS256", crit = { "exp" }, exp = 1 }, CLAIMS, { key = "k" }), "HS256", "k")
    end)

    it("has a size limit", function()
      local big = jwt.sign({ pad = ("x"):rep(7000) }, "HS256", "k")
      assert.is_table(jwt.verify(big, "HS256", "k"))
      local huge = token({ alg = "HS256" }, { pad = ("x"):rep(jwt.MAX_TOKEN) }, { key = "k" })
      refused("token too large", huge, "HS256", "k")
      local _, err = jwt.decode(huge)
      assert.equal("token too large", err)
      assert.is_nil((jwt.sign({ pad = ("x"):rep(jwt.MAX_TOKEN) }, "HS256", "k")))
      refused("token too large", ("a"):rep(10 * 1024 * 1024), "HS256", "k")
    end)

    it("answers nil, err for a token that is not a string; raises on API misuse", function()
      for _, v in ipairs({ 1, true, {}, print }) do
        assert.same({ nil, "token must be a string" }, { jwt.decode(v) })
        assert.same({ nil, "token must be a string" }, { jwt.verify(v, "HS256", "k") })
      end
      assert.same({ nil, "token must be a string" }, { jwt.decode(nil) })
      assert.has_error(function() jwt.verify(good, nil, "k") end)
      assert.has_error(function() jwt.verify(good, "HS256", nil) end)
      assert.has_error(function() jwt.sign(true, "HS256", "k") end)
      assert.has_error(function() jwt.sign({}, "HS256", "k", "kid") end)
      assert.same({ nil, "claims must be a JSON object (at most 8 KiB)" }, { jwt.sign({ 1, 2 }, "HS256", "k") })
      assert.same({ nil, "claims cannot be encoded as JSON" }, { jwt.sign({ f = print }, "HS256", "k") })
      assert.same({ nil, "header must not set alg: it is the alg argument" },
                  { jwt.sign({}, "HS256", "k", { alg = "none" }) })
    end)
  end)

  it("base64url_encode / base64url_decode round-trip any bytes", function()
    math.randomseed(7)
    for n = 0, 64 do
      local t = {}
      for i = 1, n do t[i] = string.char(math.random(0, 255)) end
      local s = table.concat(t)
      local e = jwt.base64url_encode(s)
      assert.is_nil(e:find("[^%w_-]"))
      assert.equal(s, jwt.base64url_decode(e))
    end
    assert.same({ nil, "invalid base64url" }, { jwt.base64url_decode("ab+/") })
    assert.same({ nil, "invalid base64url" }, { jwt.base64url_decode("YQ==") })
  end)

  it("survives fuzzing: random and mutated tokens never crash, and never verify", function()
    math.randomseed(20260511)
    local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+/= {}\"\0\255"
    local function rnd_char() local i = math.random(1, #alphabet) return alphabet:sub(i, i) end
    local seeds = {
      { jwt.sign(CLAIMS, "HS256", "k"), "HS256", "k" },
      { jwt.sign(CLAIMS, "RS256", K.rsa.private), "RS256", K.rsa.public },
      { jwt.sign(CLAIMS, "ES256", K.ec256.private), "ES256", K.ec256.public },
    }
    local verified, rejected = 0, 0
    for i = 1, 6000 do
      local s = seeds[i % #seeds + 1]
      local tok = s[1]
      local mutated = tok
      for _ = 1, math.random(1, 4) do
        local pos = math.random(1, #mutated)
        local op = math.random(1, 4)
        if op == 1 then mutated = mutated:sub(1, pos - 1) .. rnd_char() .. mutated:sub(pos + 1)
        elseif op == 2 then mutated = mutated:sub(1, pos - 1) .. mutated:sub(pos + 1)
        elseif op == 3 then mutated = mutated:sub(1, pos) .. rnd_char() .. mutated:sub(pos + 1)
        else mutated = mutated:sub(1, pos) .. mutated:sub(pos, math.random(pos, #mutated)) .. mutated:sub(pos + 1) end
      end
      local ok, claims, err = pcall(jwt.verify, mutated, s[2], s[3])
      assert(ok, "verify raised on " .. mutated .. ": " .. tostring(claims))
      if claims then
        assert(mutated == tok, "a mutated token verified: " .. mutated)
        verified = verified + 1
      else
        assert(type(err) == "string")
        rejected = rejected + 1
      end
      local ok2, h, c = pcall(jwt.decode, mutated)
      assert(ok2, "decode raised on " .. mutated .. ": " .. tostring(h))
      assert(h == nil or (type(h) == "table" and type(c) == "table"))
      -- random garbage of random length
      local t = {}
      for j = 1, math.random(0, 200) do t[j] = rnd_char() end
      local garbage = table.concat(t)
      assert(pcall(jwt.verify, garbage, s[2], s[3]))
      assert(pcall(jwt.decode, garbage))
    end
    assert.is_true(rejected > 5000)
  end)
end)
