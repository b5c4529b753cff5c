-- https services: the upstream certificate verified by default (tls_verify) against
-- ca_certificates or the system store, with the upstream host as SNI and as the name checked;
-- tls_verify_depth; a client certificate for upstreams that require one (mTLS); pooled TLS
-- connections reused only under the same TLS settings. The upstreams are
-- spec/fixtures/tls_upstream.py with certificates made at test time (spec/fixtures/tls.lua).
local helpers = require "spec.helpers"
local PKI = require "spec.fixtures.tls"

local function start_upstream(cert, client_ca)
  local ports = helpers.start_fixture{
    script = "spec/fixtures/tls_upstream.py",
    args = function(p)
      local a = { "--port", p[1], "--cert", cert.cert, "--key", cert.key }
      if client_ca then a[#a + 1] = "--client-ca"; a[#a + 1] = client_ca.cert end
      return a
    end,
  }
  return ports[1]
end

describe("tls: https upstreams", function()
  local pki, upca, client, signed_port, self_port, mtls_port

  local function get(path)
    local c = helpers.proxy_client()
    local res = assert(c:get(path))
    c:close()
    return res
  end
  local function body_of(res)
    return assert(helpers.json_decode(assert.res_status(200, res)))
  end

  lazy_setup(function()
    pki = PKI.new(helpers.tmpdir("pki"))
    upca = pki:ca("upstream-ca")
    local mca = pki:ca("mtls-ca")
    local inter = pki:ca("upstream-intermediate", { ca = upca })
    -- leaf + intermediate, the root in ca_certificates
    local signed = pki:chain(pki:cert("signed", { cn = "localhost", san = { "DNS:localhost" }, ca = inter }), inter)
    local self = pki:cert("self", { cn = "localhost", san = { "DNS:localhost" } })
    local ipcert = pki:cert("ip", { cn = "127.0.0.1", san = { "IP:127.0.0.1" }, ca = upca })
    client = pki:cert("gw-client", { cn = "gw-client", client = true, ca = mca })
    signed_port = start_upstream(signed)
    self_port = start_upstream(self)
    mtls_port = start_upstream(ipcert, mca)
    local ca_file, ca_pem = upca.cert, pki:read(upca.cert)
    local function svc(name, url, extra)
      local s = { name = name, url = url, retries = 0, routes = { { paths = { "/" .. name .. "/" } } } }
      for k, v in pairs(extra or {}) do s[k] = v end
      return s
    end
    helpers.start_gw{ config = {
      upstreams = { { name = "shared", targets = { { target = "localhost:" .. signed_port } } } },
      certificates = { { id = "gw-client", cert = client.cert, key = client.key } },
      ca_certificates = { { id = "upstream-ca", cert = ca_pem } },
      services = {
        svc("verified", "https://localhost:" .. signed_port, { ca_certificates = { ca_file } }),
        svc("by-ca-id", "https://localhost:" .. signed_port, { ca_certificates = { "upstream-ca" } }),
        svc("ip-mismatch", "https://127.0.0.1:" .. signed_port, { ca_certificates = { ca_pem } }),
        svc("ip-unverified", "https://127.0.0.1:" .. signed_port, { tls_verify = false }),
        svc("system-ca", "https://localhost:" .. signed_port),
        svc("self-signed", "https://localhost:" .. self_port),
        svc("self-off", "https://localhost:" .. self_port, { tls_verify = false }),
        svc("self-as-ca", "https://localhost:" .. self_port, { ca_certificates = { self.cert } }),
        svc("depth0", "https://localhost:" .. signed_port, { ca_certificates = { ca_file }, tls_verify_depth = 0 }),
        svc("depth1", "https://localhost:" .. signed_port, { ca_certificates = { ca_file }, tls_verify_depth = 1 }),
        svc("mtls", "https://127.0.0.1:" .. mtls_port,
          { ca_certificates = { ca_file }, client_certificate = { cert = client.cert, key = client.key } }),
        svc("mtls-by-id", "https://127.0.0.1:" .. mtls_port,
          { ca_certificates = { ca_file }, client_certificate = { id = "gw-client" } }),
        svc("mtls-none", "https://127.0.0.1:" .. mtls_port, { ca_certificates = { ca_file } }),
        -- two services over one named upstream (one target), with other TLS settings
        -- (preserve_host: the client's Host "localhost" is the name, as the certificate says)
        { name = "shared-verify", protocol = "https", host = "shared", port = 443, retries = 0,
          ca_certificates = { ca_file }, routes = { { paths = { "/shared-verify/" }, preserve_host = true } } },
        { name = "shared-off", protocol = "https", host = "shared", port = 443, retries = 0,
          tls_verify = false, routes = { { paths = { "/shared-off/" }, preserve_host = true } } },
      },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  it("verifies the upstream against ca_certificates (a file, PEM or a ca_certificates id), SNI the host", function()
    for _, name in ipairs({ "verified", "by-ca-id" }) do
      local b = body_of(get("/" .. name .. "/x"))
      assert.equal("localhost", b.sni)
      assert.equal("/x", b.path)
    end
  end)

  it("checks an IP address against the certificate's IP SANs", function()
    assert.is_not_string(body_of(get("/mtls/ip")).sni)     -- no SNI for an address, verified by IP SAN
    local res = get("/ip-mismatch/x")
    assert.res_status(502, res)
    helpers.wait_until(function()
      return helpers.gw_log():find("TLS handshake failed: certificate verify failed: IP address mismatch", 1, true)
    end, 5)
  end)

  it("502 for a self-signed upstream with the default (system) CA store, the reason logged", function()
    local res = get("/self-signed/x")
    assert.res_status(502, res)
    assert.res_status(502, get("/system-ca/x"))   -- a private CA is not in the system store either
    helpers.wait_until(function()
      local log = helpers.gw_log()
      return log:find("connect failed: TLS handshake failed: certificate verify failed: self-signed certificate", 1, true)
        and log:find("certificate verify failed: unable to get local issuer certificate", 1, true)
    end, 5)
  end)

  it("tls_verify: false accepts any certificate; a self-signed one can be its own CA", function()
    assert.equal("localhost", body_of(get("/self-off/x")).sni)
    assert.equal("localhost", body_of(get("/self-as-ca/x")).sni)
  end)

  it("tls_verify_depth: 0 refuses a chain with an intermediate CA, 1 takes it", function()
    assert.res_status(502, get("/depth0/x"))
    body_of(get("/depth1/x"))
  end)

  it("presents a client certificate to an upstream that requires one (mTLS)", function()
    assert.equal("gw-client", body_of(get("/mtls/x")).client)
    assert.equal("gw-client", body_of(get("/mtls-by-id/x")).client)
    assert.res_status(502, get("/mtls-none/x"))
  end)

  it("reuses pooled TLS connections", function()
    local c = helpers.proxy_client()
    local a = body_of(assert(c:get("/verified/a")))
    local b = body_of(assert(c:get("/verified/b")))
    c:close()
    assert.equal(a.conn, b.conn)
    assert.equal(a.req + 1, b.req)
  end)

  it("resumes the TLS session of the last connection to the target", function()
    local a = body_of(get("/verified/close/1"))
    local b = body_of(get("/verified/close/2"))
    assert.not_equal(a.conn, b.conn)
    assert.is_true(b.resumed)
    assert.equal("localhost", b.sni)
    -- the same with a client certificate: the resumed session keeps it
    body_of(get("/mtls/close/1"))
    b = body_of(get("/mtls/close/2"))
    assert.is_true(b.resumed)
    assert.equal("gw-client", b.client)
  end)

  it("resumes a session only under the TLS settings it was made with", function()
    local function via(svc, n)
      local c = helpers.http_client("127.0.0.1", helpers.gw_info().proxy_port)
      local res = assert(c:get("/" .. svc .. "/close/" .. n, { headers = { Host = "localhost" } }))
      c:close()
      return body_of(res)
    end
    via("shared-verify", 1)
    assert.is_true(via("shared-verify", 2).resumed)
    -- same target and name: the verified session is not offered by the unverified service
    assert.is_false(via("shared-off", 1).resumed)
    assert.is_true(via("shared-off", 2).resumed)
    -- and the other way round: the target now holds shared-off's session
    assert.is_false(via("shared-verify", 3).resumed)
  end)

  it("never hands a connection made under other TLS settings to a service", function()
    -- same address, same name: an unverified connection is not reused by a verifying service,
    -- one with a client certificate not by a service without it
    body_of(get("/ip-unverified/x"))
    assert.res_status(502, get("/ip-mismatch/x"))
    assert.equal("gw-client", body_of(get("/mtls/x")).client)
    assert.res_status(502, get("/mtls-none/x"))
    local c = helpers.proxy_client()
    local a = body_of(assert(c:get("/mtls/a")))
    local b = body_of(assert(c:get("/mtls-by-id/b")))   -- the same certificate and CA: one context
    c:close()
    assert.equal(a.conn, b.conn)
  end)
end)
