-- The TLS parts of the config: every error with its position and a message that names the
-- certificate (gw check), an expired certificate accepted with a warning, the compiled layout the
-- C core reads (lua/gw/config.lua compile_tls), relative file paths, and a reload refused for a
-- bad certificate. Certificates are made at test time (spec/fixtures/tls.lua).
local helpers = require "spec.helpers"
local PKI = require "spec.fixtures.tls"
local config = require "gw.config"

describe("tls config", function()
  local pki, dir, ca

  lazy_setup(function()
    dir = helpers.tmpdir("tlscfg")
    pki = PKI.new(dir)
    ca = pki:ca("ca")
    pki:cert("a", { cn = "a.test", san = { "DNS:a.test" }, ca = ca })
    pki:cert("b", { cn = "b.test", san = { "DNS:b.test" }, ca = ca })
    pki:cert("rsa", { cn = "a.test", san = { "DNS:a.test" }, ca = ca, rsa = true })
    pki:cert("old", { cn = "old.test", ca = ca, days = -1 })
    helpers.execute("openssl pkey -in " .. dir .. "/a.key -aes256 -passout pass:x -out " .. dir .. "/enc.key")
    helpers.write_file(dir .. "/junk.pem", "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n")
  end)
  lazy_teardown(helpers.stop_all)

  local function check(yaml)
    helpers.write_file(dir .. "/gateway.yaml", yaml)
    local rc, out = helpers.execute(helpers.shell_quote(helpers.gw_bin) .. " check " .. dir .. "/gateway.yaml")
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = (line:gsub("^" .. dir:gsub("%p", "%%%0") .. "/", "")) end
    return rc, lines
  end

  it("reports each error at its position, naming the certificate", function()
    local rc, lines = check([[
_format_version: "3.0"
gw:
  listen: ["127.0.0.1:8000 http2", "127.0.0.1:8443 ssl"]
  ssl_protocols: "TLSv1.1 TLSv1.3"
  ssl_ciphers: "NOPE"
  ssl_ciphersuites: "TLS_NOPE"
  ssl_cert: a.pem
certificates:
  - cert: a.pem
    key: b.key
    snis: [a.test, "a.*", "*.*.x", 10.0.0.1]
  - cert: missing.pem
    key: a.key
  - cert: junk.pem
    key: a.key
  - cert: a.pem
    key: enc.key
    snis: [A.TEST]
    default: true
  - cert: b.pem
    key: b.key
    verify: optional
  - cert: a.pem
    key: a.key
    cert_alt: b.pem
    key_alt: b.key
  - cert: rsa.pem
    key: rsa.key
    client_ca: a.key
    cert_alt: a.pem
snis:
  - { name: z.test, certificate: { id: nope } }
services:
  - name: s
    url: http://127.0.0.1:9
    tls_verify: true
    routes:
      - paths: ["/"]
        https_redirect_status_code: 303
  - name: t
    url: https://127.0.0.1:9
    tls_verify_depth: 101
    ca_certificates: [nofile.pem, b.key]
    client_certificate: { id: nope }
]])
    assert.equal(1, rc)
    assert.same({
      'gateway.yaml:3:12: gw.listen[0]: unsupported listen flag "http2" (supported: ssl)',
      "gateway.yaml:4:18: gw.ssl_protocols: the protocols must be a contiguous range (OpenSSL takes a minimum and a maximum)",
      "gateway.yaml:5:16: gw.ssl_ciphers: no usable cipher in the list",
      "gateway.yaml:6:21: gw.ssl_ciphersuites: no usable TLS 1.3 cipher suite in the list",
      "gateway.yaml:7:13: gw.ssl_cert: gw.ssl_cert needs gw.ssl_cert_key",
      "gateway.yaml:10:10: certificates[0].key: the key does not match the certificate (CN=a.test, file " .. dir .. "/a.pem)",
      'gateway.yaml:11:20: certificates[0].snis[1]: invalid server name "a.*": expected a host name, or "*." and a domain (one label, leftmost)',
      'gateway.yaml:11:27: certificates[0].snis[2]: invalid server name "*.*.x": expected a host name, or "*." and a domain (one label, leftmost)',
      'gateway.yaml:11:36: certificates[0].snis[3]: invalid server name "10.0.0.1": an IP address is never sent as a server name',
      "gateway.yaml:12:11: certificates[1].cert: cannot read " .. dir .. "/missing.pem: No such file or directory",
      "gateway.yaml:14:11: certificates[2].cert: not a PEM certificate (too long) (file " .. dir .. "/junk.pem)",
      "gateway.yaml:17:10: certificates[3].key: an encrypted private key is not supported (remove its passphrase) (file " .. dir .. "/enc.key)",
      'gateway.yaml:18:12: certificates[3].snis[0]: duplicate server name "a.test" (also at certificates[0].snis[0])',
      'gateway.yaml:22:13: certificates[4].verify: verify "optional" needs client_ca (the CAs that sign client certificates)',
      "gateway.yaml:25:15: certificates[5].cert_alt: cert_alt needs another key type than cert (an ECDSA certificate beside an RSA one)",
      "gateway.yaml:27:5: certificates[6].key_alt: required with cert_alt",
      "gateway.yaml:29:16: certificates[6].client_ca: not a PEM certificate bundle (no start line) (file " .. dir .. "/a.key)",
      'gateway.yaml:32:34: snis[0].certificate: no certificate with id "nope"',
      "gateway.yaml:36:17: services[0].tls_verify: only for https services",
      "gateway.yaml:39:37: services[0].routes[0].https_redirect_status_code: expected one of: 426, 301, 302, 307, 308",
      "gateway.yaml:42:23: services[1].tls_verify_depth: value should be between 0 and 100",
      "gateway.yaml:43:23: services[1].ca_certificates[0]: cannot read " .. dir .. "/nofile.pem: No such file or directory",
      "gateway.yaml:43:35: services[1].ca_certificates[1]: not a PEM certificate bundle (no start line) (file " .. dir .. "/b.key)",
      'gateway.yaml:44:25: services[1].client_certificate: no certificate with id "nope"',
    }, lines)
  end)

  it("an ssl listener needs a certificate; require_client_cert needs a certificate that asks for one", function()
    local rc, lines = check([[
_format_version: "3.0"
gw:
  listen: ["127.0.0.1:8443 ssl"]
services:
  - name: s
    url: echo://
    routes: [{ paths: ["/"], require_client_cert: true }]
]])
    assert.equal(1, rc)
    assert.same({
      "gateway.yaml:3:12: gw.listen[0]: an ssl listener needs a certificate: set gw.ssl_cert and gw.ssl_cert_key, or add certificates",
      "gateway.yaml:7:51: services[0].routes[0].require_client_cert: no certificate asks for client certificates: give one client_ca (verify: optional or required)",
    }, lines)
  end)

  it("accepts an expired certificate, and the master warns about it", function()
    local yaml = [[
_format_version: "3.0"
gw:
  listen: ["127.0.0.1:{PROXY_PORT} ssl"]
  admin_listen: "127.0.0.1:{ADMIN_PORT}"
  workers: 1
certificates:
  - { cert: DIR/old.pem, key: DIR/old.key, default: true }
services:
  - { name: s, url: "echo://", routes: [{ paths: ["/"] }] }
]]
    yaml = yaml:gsub("DIR", dir)
    local rc, lines = check((yaml:gsub("{PROXY_PORT}", "8443"):gsub("{ADMIN_PORT}", "8001")))
    assert.equal(0, rc, table.concat(lines, "\n"))
    assert.matches("warning: .*certificates%[0%]%.cert: the certificate %(CN=old%.test", table.concat(lines, "\n"))
    helpers.start_gw{ yaml = yaml }
    local want = "%[warn%] %d+: .-gateway%.yaml:7:13: certificates%[0%]%.cert: the certificate %(CN=old%.test, file "
      .. dir:gsub("%p", "%%%0") .. "/old%.pem%) expired on %d+%-%d+%-%d+ %d+:%d+:%d+ UTC"
    -- the warning may reach the log file just after the listeners are up: wait for it
    pcall(helpers.wait_until, function() return helpers.gw_log():find(want) end, 5)
    assert.matches(want, helpers.gw_log())
    helpers.stop_gw()
  end)

  it("compiles what the C core reads", function()
    local text = ([[
_format_version: "3.0"
gw:
  listen: ["127.0.0.1:8000", "127.0.0.1:8443 ssl", "127.0.0.1:9443 ssl"]
  ssl_cert: a.pem
  ssl_cert_key: a.key
  ssl_protocols: [TLSv1.3]
  ssl_ticket_rotation: 60000
certificates:
  - { id: b, cert: b.pem, key: b.key, snis: ["B.Test.", "*.b.test"], client_ca: ca.pem, verify: optional }
snis:
  - { name: b2.test, certificate: b }
services:
  - { name: plain, url: "http://127.0.0.1:9" }
  - { name: one, url: "https://127.0.0.1:9", ca_certificates: [ca.pem] }
  - { name: two, url: "https://127.0.0.1:9", ca_certificates: [ca.pem] }
  - { name: off, url: "https://127.0.0.1:9", tls_verify: false, client_certificate: b }
routes:
  - { service: plain, paths: ["/a"], protocols: [https], https_redirect_status_code: 308 }
  - { service: plain, paths: ["/b"], protocols: [http, https], require_client_cert: true }
]])
    local c, errs = config.load_string(text, dir .. "/gateway.yaml")
    assert.is_nil(errs and errs[1])
    assert.same({ { host = "127.0.0.1", port = 8000 }, { host = "127.0.0.1", port = 8443, ssl = true },
                  { host = "127.0.0.1", port = 9443, ssl = true } }, c.gw.listen)
    local t = c.tls
    assert.equal(0x0304, t.min_version)
    assert.equal(0x0304, t.max_version)
    assert.equal(60000, t.ticket_rotation)
    assert.is_true(t.session_tickets)
    assert.equal(8443, t.https_port)
    assert.equal(2, #t.certificates)
    assert.equal(1, t.default)                         -- gw.ssl_cert
    assert.equal(pki:read(dir .. "/a.pem"), t.certificates[1].cert)
    assert.equal("optional", t.certificates[2].verify)
    assert.equal(pki:read(dir .. "/ca.pem"), t.certificates[2].client_ca)
    assert.same({ { name = "b.test", certificate = 2 }, { name = "*.b.test", certificate = 2 },
                  { name = "b2.test", certificate = 2 } }, t.snis)
    -- one client context for the two services with the same settings
    assert.equal(2, #t.upstream)
    assert.is_nil(c.services[1].tls_ctx)
    assert.same({ 1, 1, 2 }, { c.services[2].tls_ctx, c.services[3].tls_ctx, c.services[4].tls_ctx })
    assert.same({ true, false }, { t.upstream[1].verify, t.upstream[2].verify })
    assert.equal(pki:read(dir .. "/b.pem"), t.upstream[2].cert)
    assert.same({ true, 308 }, { c.routes[1].https_only, c.routes[1].https_redirect })
    assert.is_nil(c.routes[2].https_only)
    assert.is_true(c.routes[2].require_client_cert)
  end)

  it("a reload with a bad certificate is refused, the running certificates stay", function()
    local port = helpers.get_free_port()
    helpers.start_gw{ config = {
      gw = { listen = { "127.0.0.1:" .. port .. " ssl" } },
      certificates = { { cert = dir .. "/a.pem", key = dir .. "/a.key", default = true } },
      services = { { name = "s", url = "echo://", routes = { { paths = { "/" } } } } },
    } }
    local admin = helpers.admin_client()
    local res = assert(admin:post("/config", {
      headers = { ["Content-Type"] = "application/yaml" },
      body = '_format_version: "3.0"\ncertificates:\n  - { cert: "' .. dir .. '/a.pem", key: "' .. dir .. '/b.key", default: true }\n',
    }))
    admin:close()
    local body = helpers.json_decode(assert.res_status(400, res))
    assert.matches("certificates%[0%]%.key: the key does not match the certificate %(CN=a%.test, file .-/a%.pem%)",
      body.message .. " " .. table.concat(body.errors or {}, " "))
    local rc, out = helpers.execute(string.format(
      "curl -sS --max-time 5 --cacert %s/ca.pem --resolve a.test:%d:127.0.0.1 https://a.test:%d/x -o /dev/null -w '%%{http_code}'",
      dir, port, port))
    assert.equal(0, rc, out)
    assert.equal("200", out)
  end)
end)
