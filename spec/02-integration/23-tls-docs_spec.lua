-- docs/tls.md: every YAML block compiles (with the certificate files it names made at test time
-- and its inline PEM placeholders replaced by real PEM), and the listener and https-only
-- examples run as documented.
local helpers = require "spec.helpers"
local PKI = require "spec.fixtures.tls"

local q = helpers.shell_quote

describe("docs/tls.md", function()
  local dir, pki, blocks

  -- the files the examples name, under DIR/certs
  lazy_setup(function()
    dir = helpers.tmpdir("tlsdocs")
    helpers.execute("mkdir -p " .. q(dir .. "/certs"))
    pki = PKI.new(dir .. "/certs")
    local ca = pki:ca("ca")
    pki:cert("default", { cn = "default.example.com", san = { "DNS:default.example.com" }, ca = ca })
    pki:cert("example.com", { cn = "example.com", ca = ca,
      san = { "DNS:example.com", "DNS:www.example.com", "DNS:internal.example.com", "DNS:partners.example.com",
              "DNS:api.example.com" } })
    pki:cert("example.com-rsa", { cn = "example.com", san = { "DNS:example.com" }, ca = ca, rsa = true })
    pki:cert("wildcard.example.com", { cn = "*.example.com", san = { "DNS:*.example.com" }, ca = ca })
    pki:ca("clients-ca")
    local up = pki:ca("upstream-ca")
    pki:cert("gw-client", { cn = "gw", client = true, ca = up })
    local text = assert(helpers.read_file(helpers.repo .. "/docs/tls.md"))
    blocks = helpers.fenced_blocks(text, "yaml")
  end)
  lazy_teardown(helpers.stop_all)

  -- an inline PEM placeholder (BEGIN, "MI...", END) replaced by the real PEM, same indentation
  local function inline_pem(yaml)
    return (yaml:gsub("( *)(%-%-%-%-%-BEGIN ([%u ]+)%-%-%-%-%-)\n *MI%w*%.%.%.\n *%-%-%-%-%-END [%u ]+%-%-%-%-%-",
      function(indent, _, kind)
        local pem = pki:read(dir .. "/certs/" .. (kind == "CERTIFICATE" and "example.com.pem" or "example.com.key"))
        pem = pem:gsub("\n$", "")
        return indent .. pem:gsub("\n", "\n" .. indent)
      end))
  end

  it("has the YAML forms", function()
    assert.is_true(#blocks >= 10, #blocks .. " blocks")
  end)

  it("every YAML block compiles", function()
    for i, yaml in ipairs(blocks) do
      local file = dir .. "/gateway-" .. i .. ".yaml"
      helpers.write_file(file, inline_pem(yaml))
      local rc, out = helpers.execute(q(helpers.gw_bin) .. " check " .. q(file))
      assert.equal(0, rc, "block " .. i .. ":\n" .. yaml .. "\n" .. out)
    end
  end)

  -- a documented block, with its listeners on free loopback ports
  local function run(pattern)
    local yaml
    for _, b in ipairs(blocks) do if b:find(pattern, 1, true) then yaml = b break end end
    assert(yaml, pattern)
    local plain, tls = helpers.get_free_port(), helpers.get_free_port()
    yaml = yaml:gsub('"0%.0%.0%.0:8000"', '"127.0.0.1:' .. plain .. '"'):gsub('"0%.0%.0%.0:8443 ssl"', '"127.0.0.1:' .. tls .. ' ssl"')
    yaml = yaml:gsub("\ngw:\n", "\ngw:\n  admin_listen: off\n  workers: 1\n")
    -- start_gw writes the file elsewhere: the certificate paths become absolute
    yaml = yaml:gsub(": certs/", ": " .. dir .. "/certs/")
    helpers.start_gw{ yaml = yaml, proxy_port = tls }
    return plain, tls
  end

  it("the HTTPS listener example serves its default certificate", function()
    local _, tls = run("ssl_cert: certs/default.pem          # relative")
    local rc, out = helpers.execute(string.format(
      "curl -sS --max-time 5 --cacert %s --resolve default.example.com:%d:127.0.0.1 https://default.example.com:%d/hi",
      q(dir .. "/certs/ca.pem"), tls, tls))
    assert.equal(0, rc, out)
    assert.equal("/hi", helpers.json_decode(out).path)
  end)

  it("the https-only example redirects and upgrades as documented", function()
    local plain, tls = run("https_redirect_status_code: 308")
    local c = helpers.http_client("127.0.0.1", plain)
    local res = assert(c:get("/shop/cart?x=1"))
    assert.res_status(308, res)
    assert.equal("https://127.0.0.1:" .. tls .. "/shop/cart?x=1", res.headers["location"])
    res = assert(c:get("/api"))
    assert.res_status(426, res)
    res = assert(c:get("/status"))
    assert.res_status(200, res)
    c:close()
  end)
end)
