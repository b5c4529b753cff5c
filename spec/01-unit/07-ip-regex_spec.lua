-- gw.ip (addresses, CIDR sets) and gw.regex (check, match, compiled objects with captures).
local ip = require "gw.ip"
local regex = require "gw.regex"

describe("gw.ip", function()
  it("parses IPv4 and IPv6 to 16 bytes, IPv4 as ::ffff:a.b.c.d", function()
    assert.equal(16, #ip.parse("10.0.0.1"))
    assert.equal(ip.parse("::ffff:10.0.0.1"), ip.parse("10.0.0.1"))
    assert.equal(ip.parse("2001:db8::1"), ip.parse("2001:0db8:0:0:0:0:0:1"))
  end)

  it("refuses what is not an address", function()
    for _, s in ipairs{ "", "1.2.3", "1.2.3.256", "10.0.0.1 ", "::g", "1.2.3.4/8", string.rep("1", 60) } do
      assert.is_nil(ip.parse(s), s)
    end
    assert.is_nil(ip.parse(nil))
  end)

  it("matches CIDRs of every length, both families", function()
    local s = assert(ip.set{ "10.0.0.0/8", "192.168.1.7", "172.16.0.0/12", "2001:db8::/32", "::1", "100.64.0.0/10" })
    local yes = { "10.255.0.1", "192.168.1.7", "172.31.255.255", "2001:db8:ffff::1", "::1", "::ffff:10.1.1.1", "100.127.0.1" }
    local no = { "11.0.0.1", "192.168.1.8", "172.32.0.1", "2001:db9::", "::2", "100.128.0.1", "junk" }
    for _, a in ipairs(yes) do assert.is_true(s:contains(a), a) end
    for _, a in ipairs(no) do assert.is_false(s:contains(a), a) end
  end)

  it("keeps IPv4 and IPv6 everything-sets apart", function()
    assert.is_true(ip.set{ "0.0.0.0/0" }:contains("8.8.8.8"))
    assert.is_false(ip.set{ "0.0.0.0/0" }:contains("2001:db8::1"))
    assert.is_true(ip.set{ "::/0" }:contains("2001:db8::1"))
  end)

  it("says which entry is wrong", function()
    local s, err = ip.set{ "10.0.0.0/8", "10.0.0.0/33" }
    assert.is_nil(s)
    assert.equal("[2]: invalid prefix length /33 for IPv4 in '10.0.0.0/33'", err)
    assert.matches("invalid prefix length /129", select(2, ip.set{ "::/129" }))
    assert.matches("invalid IP address or CIDR 'x/8'", select(2, ip.set{ "x/8" }))
    assert.is_true(ip.set{}.empty)
  end)
end)

describe("gw.regex", function()
  it("check and match as before", function()
    assert.is_true(regex.check("^/a+$"))
    local ok, err = regex.check("(")
    assert.is_nil(ok)
    assert.matches("at offset 1", err)
    assert.is_true(regex.match("b+", "abbbc"))
    assert.is_false(regex.match("^b", "abc"))
  end)

  it("compile gives an object whose exec returns numbered and named captures", function()
    local re = assert(regex.compile("/orders/(?<id>\\d+)(/items)?", "a"))
    local c = re:exec("/orders/42/items/9")
    assert.equal("/orders/42/items", c[0])
    assert.equal("42", c[1])
    assert.equal("/items", c[2])
    assert.equal("42", c.id)
    c = re:exec("/orders/5")
    assert.equal(false, c[2])
    assert.is_nil(re:exec("x/orders/5"))       -- anchored
    assert.is_true(re:match("/orders/1"))
    assert.is_false(re:match("/order/1"))
  end)

  it("flag i is caseless; an unknown flag or a bad pattern is an error", function()
    assert.is_true(regex.compile("^abc$", "i"):match("ABC"))
    assert.is_false(regex.compile("^abc$"):match("ABC"))
    assert.has_error(function() regex.compile("a", "z") end, "gw.regex.compile: unknown flag 'z' (known: a, i, m, s, x, u, U, D)")
    assert.is_true(regex.compile("^b$", "m"):match("a\nb"))
    assert.is_true(regex.compile("a.b", "s"):match("a\nb"))
    assert.is_true(regex.compile("a b  # comment", "x"):match("ab"))
    assert.equal("aa", regex.compile("a+", "U"):exec("aaa", 1)[0] .. "a")
    local re, err = regex.compile("a(")
    assert.is_nil(re)
    assert.matches("missing closing parenthesis at offset 2", err)
  end)

  it("exec from a position gives the match's first and last byte", function()
    local re = regex.compile("(\\d+)")
    local c, from, to = re:exec("ab12cd345")
    assert.same({ "12", 3, 4 }, { c[1], from, to })
    c, from, to = re:exec("ab12cd345", to + 1)
    assert.same({ "345", 7, 9 }, { c[1], from, to })
    assert.is_nil(re:exec("ab12cd345", to + 1))
    assert.is_nil(re:exec("ab", 10))
    local _, f2, t2 = regex.compile("x*"):exec("abc", 2)     -- an empty match: to = from - 1
    assert.same({ 2, 1 }, { f2, t2 })
  end)

  it("objects are collected with their compiled code", function()
    for _ = 1, 2000 do regex.compile("^x(\\d+)y$"):exec("x12y") end
    collectgarbage()
    collectgarbage()
    assert.is_true(regex.compile("^x(\\d+)y$"):exec("x12y")[1] == "12")
  end)
end)
