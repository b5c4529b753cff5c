-- gw.auth (lua/gw/auth.lua): the crypto helpers, the lookup tables built from compiled.consumers,
-- and the request-time helpers run through gw.test.context.
local auth = require "gw.auth"
local config = require "gw.config"

local CONSUMERS = [[
_format_version: "3.0"
consumers:
  - username: alice
    custom_id: a-1
    keyauth_credentials: [{ key: alice-key, id: alice-key-id }]
    basicauth_credentials: [{ username: alice-basic, password: "pa:ss wörd" }]
    acls: [{ group: admins }, { group: users }, { group: admins-2 }]
    jwt_secrets: [{ key: alice-iss, secret: s }]
  - custom_id: only-custom
    id: fixed-id
]]

describe("gw.auth", function()
  describe("constant_time_equals", function()
    it("is equality for strings", function()
      assert.is_true(auth.constant_time_equals("abc", "abc"))
      assert.is_true(auth.constant_time_equals("", ""))
      assert.is_false(auth.constant_time_equals("abc", "abd"))
      assert.is_false(auth.constant_time_equals("abc", "xbc"))
      assert.is_false(auth.constant_time_equals("abc", "ab"))
      assert.is_false(auth.constant_time_equals("ab", "abc"))
      assert.is_false(auth.constant_time_equals("abc", ""))
      assert.is_false(auth.constant_time_equals("", "abc"))
      assert.is_false(auth.constant_time_equals("abc", nil))
      assert.is_false(auth.constant_time_equals(nil, nil))
      assert.is_false(auth.constant_time_equals("1", 1))
      -- a prefix of repeated input is not equal (the cyclic read of a shorter string)
      assert.is_false(auth.constant_time_equals("abab", "ab"))
    end)

    it("reads every byte whether the first or the last one differs", function()
      -- count the bytes read: the work must not stop at the first difference. The module keeps
      -- its own reference to string.byte, so load a fresh copy while a counting one is in place.
      local reads = 0
      local secret = string.rep("s", 64)
      package.loaded["gw.auth"] = nil
      local fresh_string_byte = string.byte
      string.byte = function(...) reads = reads + 1 return fresh_string_byte(...) end  -- luacheck: ignore
      local fresh = require "gw.auth"
      string.byte = fresh_string_byte                                               -- luacheck: ignore
      package.loaded["gw.auth"] = auth
      local function reads_of(given)
        reads = 0
        fresh.constant_time_equals(secret, given)
        return reads
      end
      local first = reads_of("x" .. string.rep("s", 63))
      local last = reads_of(string.rep("s", 63) .. "x")
      local same = reads_of(secret)
      assert.is_true(first > 0)
      assert.equal(first, last)
      assert.equal(first, same)
      assert.equal(first, reads_of("short"))      -- driven by the secret's length only
    end)
  end)

  describe("passwords", function()
    it("hashes with a random salt and verifies", function()
      local h1, h2 = auth.hash_password("pw"), auth.hash_password("pw")
      assert.not_equal(h1, h2)
      assert.matches("^sha256%$%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%$%x+$", h1)
      assert.is_true(auth.verify_password("pw", h1))
      assert.is_true(auth.verify_password("pw", h2))
      assert.is_false(auth.verify_password("pw ", h1))
      assert.is_false(auth.verify_password("", h1))
      assert.is_false(auth.verify_password(nil, h1))
      assert.is_false(auth.verify_password("pw", "garbage"))
    end)

    it("compares the digests with constant_time_equals", function()
      local h = auth.hash_password("pw")
      local s = spy.on(auth, "constant_time_equals")
      auth.verify_password("nope", h)
      assert.spy(s).was.called(1)
      auth.constant_time_equals:revert()
    end)

    it("sha256 matches the known vector (FFI and pure Lua agree)", function()
      assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", auth.hex(auth.sha256("abc")))
      assert.equal(config.sha256("some text"), auth.hex(auth.sha256("some text")))
      assert.equal(16, #auth.random_bytes(16))
      assert.not_equal(auth.random_bytes(16), auth.random_bytes(16))
    end)
  end)

  describe("decode_base64", function()
    it("decodes standard base64, with or without padding", function()
      assert.equal("user:pass", auth.decode_base64("dXNlcjpwYXNz"))
      assert.equal("a", auth.decode_base64("YQ=="))
      assert.equal("a", auth.decode_base64("YQ"))
      assert.equal("ab", auth.decode_base64("YWI="))
      assert.equal("\255\254", auth.decode_base64("//4="))
      assert.equal("", auth.decode_base64(""))
    end)

    it("refuses malformed input", function()
      for _, bad in ipairs({ "Y", "YQ=", "Y===", "dXNlc*pw", "-_4=", "YQ==YQ==", "YR==", " YQ==", "é", nil, 5 }) do
        assert.is_nil(auth.decode_base64(bad), tostring(bad))
      end
    end)
  end)

  describe("lookups", function()
    local compiled
    setup(function()
      compiled = assert(config.load_string(CONSUMERS, "t.yaml"))
      auth._set_compiled(compiled)
    end)
    teardown(function() auth._set_compiled(nil) end)

    it("finds consumers by id or username", function()
      local alice = auth.find_consumer("alice")
      assert.same({ id = compiled.consumers[1].id, username = "alice", custom_id = "a-1" }, alice)
      assert.equal(alice, auth.find_consumer(compiled.consumers[1].id))
      assert.equal("only-custom", auth.find_consumer("fixed-id").custom_id)
      assert.is_nil(auth.find_consumer("only-custom"))   -- a custom_id is not a reference
      assert.is_nil(auth.find_consumer(nil))
    end)

    it("finds credentials by kind", function()
      local cred, consumer = auth.find_credential("keyauth", "alice-key")
      assert.equal("alice", consumer.username)
      assert.equal("alice-key-id", cred.id)
      assert.equal(consumer.id, cred.consumer.id)
      assert.is_nil(auth.find_credential("keyauth", "nope"))
      assert.is_nil(auth.find_credential("keyauth", nil))
      cred, consumer = auth.find_credential("jwt", "alice-iss")
      assert.same({ "HS256", "s", "alice" }, { cred.algorithm, cred.secret, consumer.username })
      cred = auth.find_credential("basicauth", "alice-basic")
      assert.equal("alice-basic", cred.username)
      assert.is_nil(cred.password)   -- the hash stays inside gw.auth
      assert.has_error(function() auth.find_credential("nope", "x") end)
    end)

    it("lists a consumer's groups", function()
      local list, set = auth.consumer_groups(auth.find_consumer("alice"))
      assert.same({ "admins", "users", "admins-2" }, list)
      assert.is_true(set.users)
      list = auth.consumer_groups(auth.find_consumer("fixed-id"))
      assert.same({}, list)
      assert.same({}, (auth.consumer_groups({ username = "not from the config" })))
      assert.same({}, (auth.consumer_groups(nil)))
    end)

    it("verifies basic-auth passwords", function()
      local consumer, cred = auth.verify_basic("alice-basic", "pa:ss wörd")
      assert.equal("alice", consumer.username)
      assert.equal("alice-basic", cred.username)
      assert.is_nil(auth.verify_basic("alice-basic", "pa:ss"))
      assert.is_nil(auth.verify_basic("alice-basic", nil))
      assert.is_nil(auth.verify_basic("nobody", "pa:ss wörd"))
      assert.is_nil(auth.verify_basic(nil, nil))
    end)

    it("builds the tables once per compiled config", function()
      assert.equal(auth.index(), auth.index())
      local other = assert(config.load_string(CONSUMERS, "t.yaml"))
      assert.not_equal(auth.index(), auth.index(other))
      assert.equal(auth.index(other), auth.index(other))
    end)

    it("sets the consumer headers and clears the ones a client sent", function()
      local ctx = gw.test.context{ headers = { ["X-Consumer-ID"] = "forged", ["X-Anonymous-Consumer"] = "true",
                                               ["X-Consumer-Custom-ID"] = "forged" } }
      local h = { access = function()
        local cred, consumer = auth.find_credential("keyauth", "alice-key")
        auth.authenticate(consumer, cred)
      end }
      ctx:run(h, "access")
      assert.equal(compiled.consumers[1].id, ctx:upstream_header("X-Consumer-ID"))
      assert.equal("a-1", ctx:upstream_header("X-Consumer-Custom-ID"))
      assert.equal("alice", ctx:upstream_header("X-Consumer-Username"))
      assert.equal("alice-key-id", ctx:upstream_header("X-Credential-Identifier"))
      assert.is_nil(ctx:upstream_header("X-Anonymous-Consumer"))
      assert.equal("alice", ctx.shared.authenticated_consumer.username)
      assert.equal("alice-key-id", ctx.shared.authenticated_credential.id)

      ctx = gw.test.context{ headers = { ["X-Consumer-Username"] = "forged", ["X-Credential-Identifier"] = "forged" } }
      ctx:run({ access = function() auth.use_anonymous("fixed-id") end }, "access")
      assert.equal("fixed-id", ctx:upstream_header("X-Consumer-ID"))
      assert.equal("only-custom", ctx:upstream_header("X-Consumer-Custom-ID"))
      assert.is_nil(ctx:upstream_header("X-Consumer-Username"))
      assert.is_nil(ctx:upstream_header("X-Credential-Identifier"))
      assert.equal("true", ctx:upstream_header("X-Anonymous-Consumer"))
    end)

    it("answers 401 with WWW-Authenticate, 403, and 500 for a vanished anonymous consumer", function()
      local ctx = gw.test.context{}
      assert.equal("exit", ctx:run({ access = function() auth.unauthorized("No way", 'Key realm="gw"') end }, "access"))
      assert.equal(401, ctx.exit_status)
      assert.equal('{"message":"No way"}', ctx.exit_body)
      assert.equal('Key realm="gw"', ctx:response_header("WWW-Authenticate"))

      ctx = gw.test.context{}
      ctx:run({ access = function() auth.forbidden() end }, "access")
      assert.equal(403, ctx.exit_status)
      assert.equal('{"message":"You cannot consume this service"}', ctx.exit_body)

      ctx = gw.test.context{}
      ctx:run({ access = function() auth.use_anonymous("gone") end }, "access")
      assert.equal(500, ctx.exit_status)
    end)
  end)

  it("strip_query_arg keeps the other arguments as sent", function()
    assert.equal("a=1&b=%20x", auth.strip_query_arg("a=1&apikey=k&b=%20x", "apikey"))
    assert.equal("a=1", auth.strip_query_arg("api%6Bey=k&a=1&apikey", "apikey"))
    assert.equal("", auth.strip_query_arg("apikey=k", "apikey"))
    assert.equal("", auth.strip_query_arg("", "apikey"))
  end)
end)
