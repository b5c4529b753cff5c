-- Client certificates (verify: required | optional per certificate, require_client_cert per
-- route), gw.client.get_tls(), and routes that only take https (protocols: [https] with
-- https_redirect_status_code). Certificates are made at test time (spec/fixtures/tls.lua).
local helpers = require "spec.helpers"
local PKI = require "spec.fixtures.tls"

local q = helpers.shell_quote
local FIXTURES = helpers.repo .. "/spec/fixtures/plugins"

local function curl(args)
  return helpers.execute("curl -sS --max-time 5 " .. args)
end

local TLS_INFO = { name = "code", config = {
  access = [[local t = gw.client.get_tls() or { tls = false }
             t.scheme = gw.request.get_scheme()
             gw.response.exit(200, t)]] } }

describe("tls: client certificates", function()
  local pki, ca, cca, alice, mallory, expired, stranger, tls_port, plain_port

  -- curl to https://NAME:tls_port/PATH with the client certificate `cert` (or none)
  local function get(name, path, cert, extra)
    local args = string.format("--cacert %s --resolve %s:%d:127.0.0.1 https://%s:%d%s -w '\n%%{http_code}'",
      q(ca.cert), name, tls_port, name, tls_port, path)
    if cert then args = string.format("--cert %s --key %s ", q(cert.cert), q(cert.key)) .. args end
    local rc, out = curl((extra or "") .. " " .. args)
    local body, status = out:match("^(.*)\n(%d%d%d)$")
    return rc, tonumber(status), body, out
  end

  -- gw.client.get_tls() as the /tls route returns it (200 expected)
  local function tls_info(name, cert, extra)
    local rc, status, body = get(name, "/tls", cert, extra)
    assert.equal(0, rc, body)
    assert.equal(200, status)
    return helpers.json_decode(body)
  end

  local function x509(cert, what)
    local _, out = helpers.execute("openssl x509 -noout " .. what .. " -in " .. q(cert.cert))
    return out
  end

  lazy_setup(function()
    pki = PKI.new(helpers.tmpdir("pki"))
    ca = pki:ca("ca")
    cca = pki:ca("client-ca")
    local other = pki:ca("other-ca")
    alice = pki:cert("alice", { cn = "alice", client = true, ca = cca,
      san = { "DNS:alice.clients.test", "URI:spiffe://test/alice", "email:alice@test", "IP:10.1.2.3" } })
    mallory = pki:cert("mallory", { cn = "mallory", client = true })                 -- self-signed
    expired = pki:cert("expired", { cn = "old", client = true, ca = cca, days = -1 })
    stranger = pki:cert("stranger", { cn = "stranger", client = true, ca = other })
    local srv = pki:cert("srv", { cn = "gw.test", ca = ca,
      san = { "DNS:req.test", "DNS:opt.test", "DNS:plain.test" } })
    tls_port, plain_port = helpers.get_free_port(), helpers.get_free_port()
    helpers.start_gw{ config = {
      gw = { listen = { "127.0.0.1:" .. plain_port, "127.0.0.1:" .. tls_port .. " ssl" },
             plugins_path = { FIXTURES }, log_level = "info" },
      certificates = {
        { cert = srv.cert, key = srv.key, snis = { "req.test" }, client_ca = cca.cert },  -- verify: required
        { cert = srv.cert, key = srv.key, snis = { "opt.test" }, client_ca = cca.cert, verify = "optional" },
        { cert = srv.cert, key = srv.key, snis = { "plain.test" }, default = true },
      },
      services = {
        { name = "echo", url = "echo://", routes = {
          { name = "info", paths = { "/tls" }, plugins = { TLS_INFO } },
          { name = "secure", paths = { "/secure" }, require_client_cert = true },
          { name = "https-only", paths = { "/https-only" }, protocols = { "https" } },
          { name = "moved", paths = { "/moved" }, protocols = { "https" }, https_redirect_status_code = 301 },
          { name = "temp", paths = { "/temp" }, protocols = { "https" }, https_redirect_status_code = 307 },
          { name = "both", paths = { "/both" }, protocols = { "http", "https" } },
        } },
      },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  describe("verify: required", function()
    it("refuses a connection without a client certificate", function()
      local rc, _, _, out = get("req.test", "/tls")
      assert.not_equal(0, rc, out)
      assert.matches("alert certificate required", out, 1, true)
    end)

    it("accepts a certificate signed by client_ca", function()
      local t = tls_info("req.test", alice)
      assert.equal("SUCCESS", t.client_verify)
      assert.equal("CN=alice", t.client_subject)
      assert.equal("CN=client-ca", t.client_issuer)
    end)

    it("refuses a certificate from another CA, a self-signed and an expired one", function()
      for _, c in ipairs({ stranger, mallory, expired }) do
        local rc, _, _, out = get("req.test", "/tls", c)
        assert.not_equal(0, rc, c.name .. ": " .. out)
      end
      helpers.wait_until(function()
        local log = helpers.gw_log()
        return log:find("client certificate verify failed: certificate has expired", 1, true)
          and log:find("client certificate verify failed: unable to get local issuer certificate", 1, true)
      end, 5)
    end)
  end)

  describe("verify: optional", function()
    it("lets a client without a certificate in: client_verify NONE", function()
      local t = tls_info("opt.test")
      assert.equal("NONE", t.client_verify)
      assert.is_nil(t.client_subject)
      assert.is_nil(t.client_san)
    end)

    it("reports a verified certificate: subject, issuer, SANs, fingerprint, serial", function()
      local t = tls_info("opt.test", alice)
      assert.equal("SUCCESS", t.client_verify)
      assert.equal("CN=alice", t.client_subject)
      assert.equal("CN=client-ca", t.client_issuer)
      assert.same({ "DNS:alice.clients.test", "URI:spiffe://test/alice", "email:alice@test", "IP:10.1.2.3" }, t.client_san)
      local fp = x509(alice, "-fingerprint -sha256"):match("=([%x:]+)"):gsub(":", ""):lower()
      assert.equal(fp, t.client_fingerprint)
      assert.equal(x509(alice, "-serial"):match("serial=(%x+)"), t.client_serial)
      assert.equal("TLSv1.3", t.protocol)
      assert.equal("opt.test", t.sni)
      assert.is_string(t.cipher)
      assert.is_false(t.session_reused)
    end)

    it("reports an unverified certificate as FAILED:reason and lets it in", function()
      local t = tls_info("opt.test", mallory)
      assert.equal("FAILED:self-signed certificate", t.client_verify)
      assert.equal("CN=mallory", t.client_subject)
      assert.equal("FAILED:certificate has expired", tls_info("opt.test", expired).client_verify)
      t = tls_info("opt.test", stranger, "--tlsv1.2 --tls-max 1.2")
      -- the last of its errors: no issuer found, so the leaf could not be verified
      assert.equal("FAILED:unable to verify the first certificate", t.client_verify)
      assert.equal("TLSv1.2", t.protocol)
    end)

    it("a resumed session keeps its client certificate", function()
      local sess = helpers.tmpdir("sess") .. "/s"
      local req = "GET /tls HTTP/1.1\\r\\nHost: opt.test\\r\\nConnection: close\\r\\n\\r\\n"
      local cmd = "printf " .. q(req) .. " | timeout 5 openssl s_client -connect 127.0.0.1:" .. tls_port ..
        " -servername opt.test -ign_eof -cert " .. q(alice.cert) .. " -key " .. q(alice.key) .. " "
      local rc, out = helpers.execute(cmd .. "-sess_out " .. q(sess) .. " 2>&1")
      assert.equal(0, rc, out)
      rc, out = helpers.execute(cmd .. "-sess_in " .. q(sess) .. " 2>&1")
      assert.equal(0, rc, out)
      assert.matches("\nReused, TLSv1.3", out)
      local t = helpers.json_decode(out:match("\r\n\r\n(%b{})"))
      assert.is_true(t.session_reused)
      assert.equal("SUCCESS", t.client_verify)
      assert.equal("CN=alice", t.client_subject)
    end)
  end)

  describe("require_client_cert on a route", function()
    it("401 without a certificate, 403 with one that was not verified, 200 with a verified one", function()
      local _, status, body = get("opt.test", "/secure")
      assert.equal(401, status)
      assert.equal('{"message":"A client certificate is required"}', body)
      _, status, body = get("opt.test", "/secure", mallory)
      assert.equal(403, status)
      assert.equal('{"message":"The client certificate was not verified: self-signed certificate"}', body)
      _, status = get("opt.test", "/secure", alice)
      assert.equal(200, status)
      _, status = get("plain.test", "/secure")       -- a certificate that asks for none
      assert.equal(401, status)
      local c = helpers.proxy_client()               -- plain HTTP
      local res = assert(c:get("/secure"))
      c:close()
      assert.res_status(401, res)
    end)
  end)

  describe("Host and SNI", function()
    it("421 when Host names a host of another certificate entry and one of them verifies clients", function()
      -- SNI plain.test (no client certificate asked), Host req.test (verify: required)
      local _, status, body = get("plain.test", "/tls", nil, "-H 'Host: req.test'")
      assert.equal(421, status)
      assert.equal('{"message":"Misdirected Request: the Host does not match the TLS server name"}', body)
      _, status = get("req.test", "/tls", alice, "-H 'Host: plain.test:8443'")
      assert.equal(421, status)
      _, status = get("opt.test", "/nothing-here", nil, "-H 'Host: REQ.test.'")
      assert.equal(421, status)
    end)

    it("the same certificate entry, or two that verify no client, are fine", function()
      local _, status = get("opt.test", "/tls", nil, "-H 'Host: OPT.TEST:443'")
      assert.equal(200, status)
      -- unknown.test and an address select the default certificate, as plain.test does
      _, status = get("plain.test", "/tls", nil, "-H 'Host: unknown.test'")
      assert.equal(200, status)
      _, status = get("plain.test", "/tls", nil, "-H 'Host: 127.0.0.1'")
      assert.equal(200, status)
    end)
  end)

  describe("gw.client.get_tls()", function()
    it("is nil on plain HTTP", function()
      local c = helpers.proxy_client()
      local res = assert(c:get("/tls"))
      c:close()
      assert.same({ tls = false, scheme = "http" }, helpers.json_decode(assert.res_status(200, res)))
    end)

    it("over TLS without client verification: no client fields", function()
      local t = tls_info("plain.test", alice)
      assert.equal("NONE", t.client_verify)       -- not asked for, so not sent
      assert.equal("plain.test", t.sni)
      assert.equal("https", t.scheme)
    end)
  end)

  describe("protocols: [https]", function()
    local function plain(path, headers)
      local c = helpers.proxy_client()
      local res = assert(c:get(path, { headers = headers }))
      c:close()
      return res
    end

    it("426 with Upgrade for a plain request (the default)", function()
      local res = plain("/https-only/x")
      assert.res_status(426, res)
      assert.equal('{"message":"Please use HTTPS protocol"}', res.body)
      assert.equal("TLS/1.2, HTTP/1.1", res.headers["upgrade"])
      assert.matches("Upgrade", res.headers["connection"])
    end)

    it("https_redirect_status_code: a redirect to the https listener, path and query kept", function()
      local res = plain("/moved/a%20b?x=1&y", { Host = "shop.test:8080" })
      assert.res_status(301, res)
      assert.equal("https://shop.test:" .. tls_port .. "/moved/a%20b?x=1&y", res.headers["location"])
      res = plain("/temp", { Host = "[::1]:8080" })
      assert.res_status(307, res)
      assert.equal("https://[::1]:" .. tls_port .. "/temp", res.headers["location"])
    end)

    it("over https the route is served", function()
      local _, status = get("plain.test", "/moved/x")
      assert.equal(200, status)
      _, status = get("plain.test", "/https-only")
      assert.equal(200, status)
    end)

    it("a route with http and https takes both", function()
      assert.res_status(200, plain("/both"))
      local _, status = get("plain.test", "/both")
      assert.equal(200, status)
    end)
  end)
end)
