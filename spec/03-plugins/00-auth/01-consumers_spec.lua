-- Consumers and credentials in the config (lua/gw/config.lua): what compiled.consumers holds,
-- and every error as FILE:LINE:COL: PATH: message.
local config = require "gw.config"
local auth = require "gw.auth"

local FILE = "consumers.yaml"

local function compile(text)
  return config.load_string('_format_version: "3.0"\n' .. text, FILE)
end

local function ok(text)
  local c, errs = compile(text)
  assert(c, errs and table.concat(errs, "\n"))
  return c
end

local function errors(text)
  local c, errs = compile(text)
  assert.is_nil(c)
  return errs
end

describe("consumers in the config", function()
  it("compiles credentials of every kind", function()
    local c = ok([[
consumers:
  - username: alice
    custom_id: a-1
    tags: [team-a]
    keyauth_credentials:
      - key: alice-key
      - key: alice-key-2
        id: my-key-id
    basicauth_credentials:
      - username: alice
        password: s3cret
    acls:
      - group: admins
      - group: users
    jwt_secrets:
      - key: alice-iss
        secret: hs-secret
      - key: alice-rsa
        algorithm: RS256
        rsa_public_key: "-----BEGIN PUBLIC KEY-----\n..."
  - id: 5b9a2c4e-0000-4000-8000-000000000001
    custom_id: "42"
]])
    local alice, other = c.consumers[1], c.consumers[2]
    assert.equal("alice", alice.username)
    assert.equal("a-1", alice.custom_id)
    assert.same({ "team-a" }, alice.tags)
    assert.matches("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-5%x%x%x%-[89ab]%x%x%x%-%x+$", alice.id)
    assert.equal("5b9a2c4e-0000-4000-8000-000000000001", other.id)

    assert.equal("alice-key", alice.keyauth_credentials[1].key)
    assert.matches("^%x+%-", alice.keyauth_credentials[1].id)
    assert.equal("my-key-id", alice.keyauth_credentials[2].id)

    local b = alice.basicauth_credentials[1]
    assert.equal("alice", b.username)
    assert.is_nil(b.password_hash)
    assert.matches("^sha256%$%x+%$%x+$", b.password)
    assert.not_matches("s3cret", b.password, 1, true)
    assert.is_true(auth.verify_password("s3cret", b.password))
    assert.is_false(auth.verify_password("s3cret!", b.password))

    assert.same({ "admins", "users" }, { alice.acls[1].group, alice.acls[2].group })

    -- jwt secrets pass through, algorithm defaulted
    local j1, j2 = alice.jwt_secrets[1], alice.jwt_secrets[2]
    assert.same({ "alice-iss", "HS256", "hs-secret" }, { j1.key, j1.algorithm, j1.secret })
    assert.same({ "alice-rsa", "RS256" }, { j2.key, j2.algorithm })
    assert.equal("-----BEGIN PUBLIC KEY-----\n...", j2.rsa_public_key)

    assert.same({}, other.keyauth_credentials)
    assert.same({}, other.acls)
  end)

  it("derives the same ids on every compile, and a new salt per compile", function()
    local text = "consumers:\n  - username: bob\n    keyauth_credentials: [{ key: k }]\n" ..
                 "    basicauth_credentials: [{ username: bob, password: pw }]\n"
    local a, b = ok(text), ok(text)
    assert.equal(a.consumers[1].id, b.consumers[1].id)
    assert.equal(a.consumers[1].keyauth_credentials[1].id, b.consumers[1].keyauth_credentials[1].id)
    assert.not_equal(a.consumers[1].basicauth_credentials[1].password, b.consumers[1].basicauth_credentials[1].password)
    assert.not_equal(a.consumers[1].id, ok("consumers:\n  - username: bobby\n").consumers[1].id)
  end)

  it("accepts a precomputed password_hash", function()
    local hash = auth.hash_password("pw", "salt123")
    assert.equal("sha256$salt123$" .. auth.hex(auth.sha256("salt123pw")), hash)
    local c = ok("consumers:\n  - username: u\n    basicauth_credentials:\n      - username: u\n        password_hash: \"" .. hash .. "\"\n")
    assert.equal(hash, c.consumers[1].basicauth_credentials[1].password)
  end)

  it("keeps the plain password out of compiled.consumers", function()
    local c = ok("consumers:\n  - username: u\n    basicauth_credentials: [{ username: u, password: very-secret-pw }]\n")
    assert.not_matches("very-secret-pw", config.canonical_json(c.consumers), 1, true)
  end)

  it("accepts Kong's other credential kinds and timestamps", function()
    local c = ok([[
consumers:
  - username: u
    created_at: 1700000000
    hmacauth_credentials: [{ username: u, secret: s }]
    oauth2_credentials: []
    keyauth_credentials: [{ key: k, created_at: 1700000000, tags: [t] }]
]])
    assert.equal("u", c.consumers[1].username)
  end)

  local cases = {
    { "missing credential fields", [[
consumers:
  - username: a
    keyauth_credentials:
      - id: x
      - key: ""
    basicauth_credentials:
      - password: p
      - username: a
    acls:
      - {}
]], {
      ":5:9: consumers[0].keyauth_credentials[0].key: required field missing",
      ":6:14: consumers[0].keyauth_credentials[1].key: must not be empty",
      ":8:9: consumers[0].basicauth_credentials[0].username: required field missing",
      ':9:9: consumers[0].basicauth_credentials[1]: a basic-auth credential needs "password" or "password_hash"',
      ":11:9: consumers[0].acls[0].group: required field missing",
    } },
    { "duplicate keys across consumers (the key is not shown)", [[
consumers:
  - username: a
    keyauth_credentials: [{ key: shared-secret }]
  - username: b
    keyauth_credentials:
      - key: other
      - key: shared-secret
]], {
      ":8:14: consumers[1].keyauth_credentials[1].key: duplicate key-auth key (also used by consumers[0].keyauth_credentials[0])",
    } },
    { "duplicate basic-auth usernames, jwt keys, groups and ids", [[
consumers:
  - username: a
    id: same
    basicauth_credentials: [{ username: shared, password: x }]
    jwt_secrets: [{ key: iss-1, secret: s }]
    acls: [{ group: g }, { group: g }]
  - username: b
    id: same
    basicauth_credentials: [{ username: shared, password: y }]
    jwt_secrets: [{ key: iss-1, secret: t }]
]], {
      ':7:35: consumers[0].acls[1].group: duplicate group "g" (also at consumers[0].acls[0].group)',
      ':9:9: consumers[1].id: duplicate id "same" (also used by consumers[0])',
      ':10:41: consumers[1].basicauth_credentials[0].username: duplicate basic-auth username "shared" (also used by consumers[0].basicauth_credentials[0])',
      ':11:26: consumers[1].jwt_secrets[0].key: duplicate jwt key "iss-1" (also used by consumers[0].jwt_secrets[0])',
    } },
    { "bad types, unknown fields, passwords", [[
consumers:
  - username: a
    keyauth_credential: [{ key: k }]
    keyauth_credentials: { key: k }
    basicauth_credentials:
      - username: a
        password: p
        password_hash: "sha256$s$00"
      - username: b
        password_hash: plain
      - username: c
        password: 12
    plugins: [{ name: key-auth }]
]], {
      ":4:25: consumers[0].keyauth_credential: unknown field",
      ":5:26: consumers[0].keyauth_credentials: expected an array",
      ':9:24: consumers[0].basicauth_credentials[0].password_hash: give "password" or "password_hash", not both',
      ':11:24: consumers[0].basicauth_credentials[1].password_hash: expected "sha256$SALT$HEX" (HEX: 64 hex digits of SHA-256(SALT .. password))',
      ":13:19: consumers[0].basicauth_credentials[2].password: expected a string",
      ":14:14: consumers[0].plugins: consumer-scoped plugins are not supported",
    } },
    { "jwt secrets: light checks", [[
consumers:
  - username: a
    jwt_secrets:
      - key: k1
        algorithm: none
      - key: k2
        algorithm: RS256
        secret: not-a-key
      - key: 5
]], {
      ":6:20: consumers[0].jwt_secrets[0].algorithm: expected one of: HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512, EdDSA",
      ':7:9: consumers[0].jwt_secrets[1]: algorithm RS256 needs "rsa_public_key"',
      ":10:14: consumers[0].jwt_secrets[2].key: expected a string",
    } },
  }
  for _, case in ipairs(cases) do
    it("reports " .. case[1], function()
      local expected = {}
      for i, e in ipairs(case[3]) do expected[i] = FILE .. e end
      assert.same(expected, errors(case[2]))
    end)
  end

  it("checks an auth plugin's anonymous against the consumers", function()
    local errs = errors([[
consumers:
  - username: guest
  - id: guest-id
    username: guest2
services:
  - name: s
    url: echo://
    routes: [{ name: r, paths: [/] }]
    plugins:
      - name: key-auth
        config: { anonymous: guest }
      - name: basic-auth
        config: { anonymous: guest-id }
plugins:
  - name: key-auth
    config:
      anonymous: nobody
]])
    assert.same({ FILE .. ':18:18: plugins[0].config.anonymous: no consumer with id or username "nobody"' }, errs)
  end)
end)
