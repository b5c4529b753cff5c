-- gw.shared (lua/gw/shared.lua over runtime/shared.c): one process only; sharing across
-- workers is covered by the integration specs.
local socket = require "socket"

local shared_c = require "gw.shared_c"
assert(shared_c.create("test", 1024 * 1024))
assert(shared_c.create("tiny", 16 * 1024))
assert(shared_c.create("tiny2", "16k"))
assert(shared_c.create("big", "4m"))
assert(shared_c.create("churn", "16m"))
assert(shared_c.create("churn_small", "64k"))
local shared = require "gw.shared"

local function sleep(s) socket.sleep(s) end

local function empty(d)
  d:flush_all()
  d:flush_expired()
end

describe("gw.shared", function()
  local d
  before_each(function()
    d = shared.test
    empty(d)
  end)

  describe("module", function()
    it("returns nil for unknown dicts", function()
      assert.is_nil(shared.nope)
      assert.is_nil(shared["no such dict"])
      assert.is_nil(shared[1])
    end)

    it("returns one object per dict, by field or index", function()
      assert.is_table(shared.test)
      assert.equal(shared.test, shared["test"])
      assert.not_equal(shared.test, shared.tiny)
    end)

    it("creating an existing dict again keeps it", function()
      d:set("kept", 1)
      assert.is_true(shared_c.create("test", "64k"))
      assert.equal(1, shared.test:get("kept"))
      assert.equal(1024 * 1024, shared.test:capacity())
    end)

    it("rejects bad create arguments", function()
      assert.has_error(function() shared_c.create("x", "12q") end)
      assert.has_error(function() shared_c.create("x", -1) end)
      local ok, err = shared_c.create(string.rep("n", 100), 65536)
      assert.is_nil(ok)
      assert.matches("name", err)
    end)
  end)

  describe("get/set", function()
    it("stores every value type", function()
      local values = { "", "hello", "with\0nul\255bytes", string.rep("x", 5000),
                       0, 1, -1, 3.25, -1e300, 2^53, math.huge, -math.huge, true, false }
      for i, v in ipairs(values) do
        assert.same({ true, nil, false }, { d:set("k" .. i, v) })
      end
      for i, v in ipairs(values) do
        local got, flags = d:get("k" .. i)
        assert.equal(type(v), type(got))
        assert.equal(v, got)
        assert.is_nil(flags)
      end
    end)

    it("stores NaN", function()
      assert.is_true(d:set("nan", 0 / 0))
      local v = d:get("nan")
      assert.is_number(v)
      assert.is_true(v ~= v)
    end)

    it("returns nil for missing keys", function()
      assert.is_nil(d:get("missing"))
      assert.equal(1, select("#", d:get("missing")))
    end)

    it("keeps flags", function()
      d:set("f", "v", 0, 42)
      assert.same({ "v", 42 }, { d:get("f") })
      d:set("f", 7, 0, 4294967295)
      assert.same({ 7, 4294967295 }, { d:get("f") })
      d:set("f", true)
      assert.same({ true }, { d:get("f") })
    end)

    it("overwrites across types and sizes", function()
      local seq = { "short", 12, string.rep("a", 3000), false, "x", string.rep("b", 10), 1.5 }
      for _, v in ipairs(seq) do
        assert.is_true(d:set("k", v))
        assert.equal(v, d:get("k"))
      end
      assert.is_true(shared_c.check("test"))
    end)

    it("set with nil deletes, and delete removes", function()
      d:set("a", 1)
      d:set("b", 2)
      assert.same({ true, nil, false }, { d:set("a", nil) })
      assert.is_nil(d:get("a"))
      assert.is_true(d:delete("b"))
      assert.is_nil(d:get("b"))
      assert.is_true(d:delete("never there"))
    end)

    it("coerces number keys to strings", function()
      d:set(1, "one")
      assert.equal("one", d:get("1"))
      assert.equal("one", d:get(1))
    end)

    it("reports empty and too long keys", function()
      assert.same({ nil, "empty key" }, { d:get("") })
      assert.same({ false, "empty key", false }, { d:set("", 1) })
      local long = string.rep("k", 65536)
      assert.same({ false, "key too long", false }, { d:set(long, 1) })
      local max = string.rep("k", 65535)
      assert.is_true(d:set(max, "m"))
      assert.equal("m", d:get(max))
    end)

    it("round-trips values of many sizes", function()
      local b = shared.big
      empty(b)
      for _, n in ipairs({ 0, 1, 7, 8, 9, 4095, 4096, 4097, 65536, 1024 * 1024 - 1,
                           1024 * 1024 + 5, 3 * 1024 * 1024 }) do
        local v = string.rep(string.char(n % 251), n)
        assert.is_true(b:set("v", v))
        local got = b:get("v")
        assert.equal(n, #got)
        assert.is_true(got == v)
      end
      assert.is_true(shared_c.check("big"))
    end)

    it("fails with no memory for values larger than the dict, evicting nothing", function()
      local t = shared.tiny
      empty(t)
      t:set("keep", "me")
      assert.same({ false, "no memory", false }, { t:set("huge", string.rep("x", 20000)) })
      assert.equal("me", t:get("keep"))
    end)
  end)

  describe("misuse", function()
    it("raises with the method name", function()
      assert.has_error(function() d:set({}, 1) end, "gw.shared.DICT:set: key must be a string")
      assert.has_error(function() d:get(true) end, "gw.shared.DICT:get: key must be a string")
      assert.has_error(function() d:set("k", {}) end,
        "gw.shared.DICT:set: value must be a string, number, boolean or nil")
      assert.has_error(function() d:set("k", 1, -1) end,
        "gw.shared.DICT:set: exptime must be a non-negative number")
      assert.has_error(function() d:add("k", 1, "x") end,
        "gw.shared.DICT:add: exptime must be a non-negative number")
      assert.has_error(function() d:set("k", 1, 0, 1.5) end)
      assert.has_error(function() d:set("k", 1, 0, -1) end)
      assert.has_error(function() d.get("k") end,
        "gw.shared.DICT:get: expecting a dict as self (call it with ':')")
      assert.has_error(function() d:incr("k", "1") end, "gw.shared.DICT:incr: value must be a number")
      assert.has_error(function() d:incr("k", 1, "0") end, "gw.shared.DICT:incr: init must be a number")
      assert.has_error(function() d:incr("k", 1, nil, 5) end, "gw.shared.DICT:incr: init_ttl needs init")
      assert.has_error(function() d:expire("k") end)
      assert.has_error(function() d:get_keys("all") end)
    end)

    it("points the error at the caller", function()
      local ok, err = pcall(function() d:set({}, 1) end)
      assert.is_false(ok)
      assert.matches("05%-shared_spec%.lua:%d+: gw%.shared%.DICT:set:", err)
    end)
  end)

  describe("ttl", function()
    it("expires items", function()
      assert.is_true(d:set("k", "v", 0.05))
      assert.equal("v", d:get("k"))
      local ttl = d:ttl("k")
      assert.is_true(ttl > 0 and ttl <= 0.05)
      sleep(0.08)
      assert.is_nil(d:get("k"))
      assert.same({ nil, "not found" }, { d:ttl("k") })
    end)

    it("get_stale returns expired items", function()
      d:set("k", "v", 0.05, 3)
      assert.same({ "v", 3, false }, { d:get_stale("k") })
      sleep(0.08)
      assert.same({ "v", 3, true }, { d:get_stale("k") })
      assert.is_nil(d:get_stale("missing"))
    end)

    it("0 means never", function()
      d:set("k", "v")
      assert.equal(0, d:ttl("k"))
      d:set("k", "v", 0)
      assert.equal(0, d:ttl("k"))
    end)

    it("set replaces the ttl", function()
      d:set("k", "v", 0.05)
      d:set("k", "w")
      sleep(0.08)
      assert.equal("w", d:get("k"))
    end)

    it("expire changes it", function()
      d:set("k", "v")
      assert.is_true(d:expire("k", 0.05))
      assert.is_true(d:ttl("k") > 0)
      sleep(0.08)
      assert.is_nil(d:get("k"))
      assert.same({ nil, "not found" }, { d:expire("k", 1) })
      assert.same({ nil, "not found" }, { d:expire("missing", 1) })
      d:set("j", "v", 0.05)
      assert.is_true(d:expire("j", 0))
      sleep(0.08)
      assert.equal("v", d:get("j"))
      assert.equal(0, d:ttl("j"))
    end)
  end)

  describe("add/replace/safe_*", function()
    it("add fails on live keys only", function()
      assert.same({ true, nil, false }, { d:add("k", 1) })
      assert.same({ false, "exists", false }, { d:add("k", 2) })
      assert.equal(1, d:get("k"))
      d:set("e", 1, 0.05)
      sleep(0.08)
      assert.is_true(d:add("e", 2))
      assert.equal(2, d:get("e"))
    end)

    it("replace needs a live key", function()
      assert.same({ false, "not found", false }, { d:replace("k", 1) })
      assert.is_nil(d:get("k"))
      d:set("k", 1)
      assert.same({ true, nil, false }, { d:replace("k", "two", 0, 9) })
      assert.same({ "two", 9 }, { d:get("k") })
      d:set("e", 1, 0.05)
      sleep(0.08)
      assert.same({ false, "not found", false }, { d:replace("e", 2) })
    end)

    it("refuses nil values for add and replace", function()
      d:set("k", 1)
      local ok, err = d:add("n", nil)
      assert.is_false(ok)
      assert.equal("attempt to add or replace nil values", err)
      ok, err = d:replace("k", nil)
      assert.is_false(ok)
      assert.equal("attempt to add or replace nil values", err)
      assert.equal(1, d:get("k"))
    end)

    it("safe_set and safe_add fail with no memory instead of evicting", function()
      local t = shared.tiny
      empty(t)
      local i = 0
      while true do
        i = i + 1
        local ok, err, forcible = t:safe_set("k" .. i, string.rep("v", 500))
        assert.is_false(forcible)
        if not ok then
          assert.equal("no memory", err)
          break
        end
      end
      assert.is_true(i > 5)
      assert.same({ false, "no memory", false }, { t:safe_add("other", string.rep("v", 500)) })
      for j = 1, i - 1 do
        assert.equal(string.rep("v", 500), t:get("k" .. j))
      end
      assert.same({ false, "exists", false }, { t:safe_add("k1", 1) })
      -- plain set evicts instead
      local ok, err, forcible = t:set("other", string.rep("v", 500))
      assert.is_true(ok)
      assert.is_nil(err)
      assert.is_true(forcible)
      assert.is_true(shared_c.check("tiny"))
    end)
  end)

  describe("incr", function()
    it("fails on missing keys without init", function()
      assert.same({ nil, "not found" }, { d:incr("n", 1) })
      assert.is_nil(d:get("n"))
    end)

    it("creates with init", function()
      assert.same({ 15, nil, false }, { d:incr("n", 5, 10) })
      assert.equal(15, d:get("n"))
      assert.equal(0, d:ttl("n"))
      assert.same({ 14 }, { d:incr("n", -1) })
      assert.same({ 16.5, nil, false }, { d:incr("n", 2.5, 100) })  -- init unused when present
    end)

    it("refuses non-numbers", function()
      d:set("s", "12")
      assert.same({ nil, "not a number" }, { d:incr("s", 1) })
      d:set("b", true)
      assert.same({ nil, "not a number" }, { d:incr("b", 1, 0) })
      assert.equal("12", d:get("s"))
    end)

    it("applies init_ttl only on creation and keeps the ttl after", function()
      assert.equal(1, d:incr("n", 1, 0, 0.05))
      local ttl = d:ttl("n")
      assert.is_true(ttl > 0 and ttl <= 0.05)
      assert.equal(2, d:incr("n", 1, 0, 10))
      assert.is_true(d:ttl("n") <= 0.05)
      sleep(0.08)
      assert.is_nil(d:get("n"))
      assert.same({ nil, "not found" }, { d:incr("n", 1) })
      assert.equal(101, d:incr("n", 1, 100))
      assert.equal(0, d:ttl("n"))
    end)

    it("keeps the ttl of an item set with one", function()
      d:set("n", 1, 0.05)
      assert.equal(2, d:incr("n", 1))
      sleep(0.08)
      assert.is_nil(d:get("n"))
    end)
  end)

  describe("eviction", function()
    it("evicts least recently used items and says so", function()
      local t = shared.tiny
      empty(t)
      local v = string.rep("x", 1000)
      local i, forcible = 0, false
      while not forcible do
        i = i + 1
        local ok, err
        ok, err, forcible = t:set("k" .. i, v)
        assert.is_nil(err)
        assert.is_true(ok)
        if i % 3 == 0 then assert.equal(v, t:get("k1")) end -- keep k1 hot
      end
      assert.is_true(i > 5)
      assert.equal(v, t:get("k1"))
      assert.is_nil(t:get("k2"))
      assert.equal(v, t:get("k" .. i))
      assert.equal(v, t:get("k" .. (i - 1)))
      assert.is_true(shared_c.check("tiny"))
    end)

    it("is not forcible when only expired items go", function()
      local t = shared.tiny2
      empty(t)
      local v = string.rep("x", 1000)
      local n = 0
      while true do
        local _, _, forcible = t:set(string.format("old%04d", n), v, 0.05)
        if forcible then break end
        n = n + 1
      end
      empty(t)
      for i = 1, n do assert.is_false(select(3, t:set(string.format("old%04d", i), v, 0.05))) end
      sleep(0.08)
      for i = 1, n do
        local ok, err, forcible = t:set(string.format("new%04d", i), v)
        assert.is_true(ok, err)
        assert.is_false(forcible)
      end
      assert.is_true(shared_c.check("tiny2"))
    end)

    it("incr evicts too", function()
      local t = shared.tiny
      empty(t)
      local forcible, i = false, 0
      while not forcible do
        i = i + 1
        local v, err
        v, err, forcible = t:incr("counter:" .. i, 1, 0)
        assert.is_nil(err)
        assert.equal(1, v)
      end
      assert.is_nil(t:get("counter:1"))
      assert.equal(1, t:get("counter:" .. i))
    end)
  end)

  describe("get_keys", function()
    it("lists live keys, most recent first", function()
      d:set("a", 1)
      d:set("b", 2)
      d:set("c", 3)
      d:set("gone", 4, 0.05)
      d:get("a")
      sleep(0.08)
      assert.same({ "a", "c", "b" }, d:get_keys())
      assert.same({ "a", "c" }, d:get_keys(2))
      assert.same({ "a", "c", "b" }, d:get_keys(0))
    end)

    it("defaults to 1024 keys, 0 means all", function()
      for i = 1, 1500 do d:set("key" .. i, i) end
      assert.equal(1024, #d:get_keys())
      local all = d:get_keys(0)
      assert.equal(1500, #all)
      local seen = {}
      for _, k in ipairs(all) do seen[k] = true end
      for i = 1, 1500 do assert.is_true(seen["key" .. i]) end
    end)

    it("handles long keys beyond the copy buffer", function()
      local k1, k2 = string.rep("a", 60000), string.rep("b", 300) .. "\0z"
      d:set(k1, 1)
      d:set(k2, 2)
      assert.same({ k2, k1 }, d:get_keys())
    end)
  end)

  describe("flush", function()
    it("flush_all expires everything, flush_expired frees it", function()
      local before = d:free_space()
      for i = 1, 10 do d:set("k" .. i, string.rep("v", 100)) end
      assert.is_true(d:free_space() < before)
      d:flush_all()
      assert.same({ string.rep("v", 100), nil, true }, { d:get_stale("k1") })
      assert.same({}, d:get_keys(0))
      -- a plain get also frees up to two expired items from the cold end (as OpenResty)
      assert.is_nil(d:get("k10"))
      assert.is_nil(d:get_stale("k1"))
      assert.equal(3, d:flush_expired(3))
      assert.equal(5, d:flush_expired())
      assert.equal(0, d:flush_expired())
      assert.equal(before, d:free_space())
      assert.is_true(shared_c.check("test"))
    end)
  end)

  describe("capacity and free_space", function()
    it("reports sizes in bytes", function()
      assert.equal(1024 * 1024, d:capacity())
      assert.equal(16 * 1024, shared.tiny:capacity())
      local free = d:free_space()
      assert.is_true(free > 0.9 * d:capacity() and free < d:capacity())
      d:set("v", string.rep("x", 100000))
      assert.is_true(d:free_space() <= free - 100000)
      d:delete("v")
      assert.equal(free, d:free_space())
    end)
  end)

  describe("consistency under churn", function()
    local rnd = math.random
    local function rkey(nkeys)
      local i = rnd(nkeys)
      -- key lengths from 1 to ~300 bytes, stable per index
      return (string.rep(string.char(65 + i % 26), i % 300)) .. i
    end
    local function rvalue()
      local r = rnd(100)
      if r <= 10 then return rnd(1000) - 500 end
      if r <= 15 then return rnd(2) == 1 end
      local n = r <= 98 and rnd(0, 2000) or rnd(10000, 60000)
      return string.rep(string.char(rnd(0, 255)), n)
    end

    it("matches a Lua table model over 20k random operations", function()
      math.randomseed(12345)
      local c = shared.churn
      empty(c)
      local model, nkeys = {}, 2000
      for op = 1, 20000 do
        local k, r = rkey(nkeys), rnd(100)
        if r <= 35 then
          local v = rvalue()
          assert.same({ true, nil, false }, { c:set(k, v) })
          model[k] = v
        elseif r <= 65 then
          assert.equal(model[k], c:get(k))
        elseif r <= 75 then
          c:delete(k)
          model[k] = nil
        elseif r <= 82 then
          local v = rvalue()
          local ok, err = c:add(k, v)
          if model[k] ~= nil then
            assert.same({ false, "exists" }, { ok, err })
          else
            assert.is_true(ok)
            model[k] = v
          end
        elseif r <= 89 then
          local v = rvalue()
          local ok, err = c:replace(k, v)
          if model[k] == nil then
            assert.same({ false, "not found" }, { ok, err })
          else
            assert.is_true(ok)
            model[k] = v
          end
        else
          local v, err = c:incr(k, 3, 1)
          if model[k] == nil or type(model[k]) == "number" then
            model[k] = (model[k] or 1) + 3
            assert.equal(model[k], v)
          else
            assert.same({ nil, "not a number" }, { v, err })
          end
        end
        if op % 2000 == 0 then assert(shared_c.check("churn")) end
      end
      local n = 0
      for k, v in pairs(model) do
        n = n + 1
        assert.equal(v, c:get(k))
      end
      assert.equal(n, #c:get_keys(0))
      assert(shared_c.check("churn"))
      empty(c)
      assert(shared_c.check("churn"))
    end)

    it("never corrupts or returns wrong values while evicting", function()
      math.randomseed(777)
      local c = shared.churn_small
      empty(c)
      local model, evictions = {}, 0
      for op = 1, 20000 do
        local k, r = rkey(400), rnd(100)
        if r <= 45 then
          local v = rvalue()
          local ok, err, forcible = c:set(k, v)
          if ok then
            model[k] = v
          else
            assert.equal("no memory", err)  -- only values larger than the dict
            model[k] = nil
          end
          if forcible then evictions = evictions + 1 end
        elseif r <= 80 then
          local v = c:get(k)
          if v ~= nil then assert.equal(model[k], v) end
        elseif r <= 90 then
          c:delete(k)
          model[k] = nil
        else
          local v = c:incr(k, 1, 0, rnd(2) == 1 and 0.001 or nil)
          if v ~= nil then
            local old = c:get(k)
            if old ~= nil then assert.equal(v, old) end
            model[k] = v
          end
        end
        if op % 1000 == 0 then assert(shared_c.check("churn_small")) end
      end
      assert.is_true(evictions > 100)
      assert(shared_c.check("churn_small"))
      empty(c)
      assert.is_true(c:free_space() > 0.9 * c:capacity())
    end)
  end)
end)
