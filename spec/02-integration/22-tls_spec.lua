-- HTTPS listeners: the certificate chosen by SNI (exact, wildcard, default), TLS 1.2 and 1.3 only
-- by default, ALPN http/1.1, ciphers, session tickets whose keys are shared by the workers and
-- survive reloads, rotation, plain HTTP on the TLS port, certificates reloaded with the config.
-- Certificates are made at test time (spec/fixtures/tls.lua); clients are curl and openssl s_client.
local helpers = require "spec.helpers"
local PKI = require "spec.fixtures.tls"

local q = helpers.shell_quote
local FIXTURES = helpers.repo .. "/spec/fixtures/plugins"

-- openssl s_client against 127.0.0.1:port; `input` (printf escapes) is sent, then the reply read
local function s_client(port, args, input)
  -- -ign_eof: read the whole answer (the request says Connection: close)
  local cmd = string.format("%s | timeout 5 openssl s_client -connect 127.0.0.1:%d %s %s 2>&1",
    input and ("printf " .. q(input)) or "true", port, input and "-ign_eof" or "", args or "")
  return helpers.execute(cmd)
end

local function get(name) return "GET /who HTTP/1.1\\r\\nHost: " .. name .. "\\r\\nConnection: close\\r\\n\\r\\n" end

-- the CN of the certificate served for `name` (nil: no SNI)
local function served_cn(port, name)
  local _, out = helpers.execute(string.format(
    "timeout 5 openssl s_client -connect 127.0.0.1:%d %s </dev/null 2>/dev/null | openssl x509 -noout -subject",
    port, name and ("-servername " .. q(name)) or "-noservername"))
  return out:match("CN%s*=%s*([^\n,]+)")
end

local function curl(args)
  return helpers.execute("curl -sS --max-time 5 " .. args)
end

-- a route that reports its worker, for the tickets shared by the workers
local WHO = { name = "code", config = {
  header_filter = [[gw.response.set_header("X-Worker", tostring(gw.worker().pid))]] } }

describe("tls: https listener", function()
  local pki, ca, tls_port, up

  lazy_setup(function()
    pki = PKI.new(helpers.tmpdir("pki"))
    ca = pki:ca("ca")
    local a = pki:cert("a", { cn = "a.test", san = { "DNS:a.test" }, ca = ca })
    local b = pki:cert("b", { cn = "b.test", san = { "DNS:b.test" }, ca = ca })
    local w = pki:cert("w", { cn = "*.w.test", san = { "DNS:*.w.test" }, ca = ca })
    local d = pki:cert("d", { cn = "default.test", san = { "DNS:default.test" }, ca = ca })
    up = helpers.start_mock_upstream{ name = "tls-listener" }
    tls_port = helpers.get_free_port()
    helpers.start_gw{ config = {
      gw = { listen = { "127.0.0.1:" .. helpers.get_free_port(), "127.0.0.1:" .. tls_port .. " ssl" },
             workers = 2, plugins_path = { FIXTURES },
             ssl_cert = d.cert, ssl_cert_key = d.key },
      certificates = {
        { cert = pki:read(a.cert), key = pki:read(a.key), snis = { "A.Test" } },     -- inline PEM
        { cert = w.cert, key = w.key, snis = { { name = "*.w.test" } } },            -- file paths
        { id = "cert-b", cert = b.cert, key = b.key },
      },
      snis = { { name = "b.test", certificate = { id = "cert-b" } } },
      services = {
        { name = "up", url = "http://127.0.0.1:" .. up[1], routes = { { paths = { "/up" } } } },
        { name = "echo", url = "echo://", routes = { { paths = { "/who" }, plugins = { WHO } } } },
      },
    } }
  end)
  lazy_teardown(helpers.stop_all)

  it("serves the certificate of the server name", function()
    assert.equal("a.test", served_cn(tls_port, "a.test"))
    assert.equal("b.test", served_cn(tls_port, "b.test"))      -- Kong's top-level snis
    -- curl checks the chain and the name against the CA
    for _, name in ipairs({ "a.test", "b.test", "x.w.test", "default.test" }) do
      local rc, out = curl(string.format("--cacert %s --resolve %s:%d:127.0.0.1 https://%s:%d/who -o /dev/null -w '%%{http_code}'",
        q(ca.cert), name, tls_port, name, tls_port))
      assert.equal(0, rc, out)
      assert.equal("200", out)
    end
  end)

  it("a wildcard name matches exactly one label", function()
    assert.equal("*.w.test", served_cn(tls_port, "x.w.test"))
    assert.equal("*.w.test", served_cn(tls_port, "X.W.TEST"))
    assert.equal("default.test", served_cn(tls_port, "y.x.w.test"))
    assert.equal("default.test", served_cn(tls_port, "w.test"))
  end)

  it("no server name, or an unknown one, gets the default certificate", function()
    assert.equal("default.test", served_cn(tls_port, nil))
    assert.equal("default.test", served_cn(tls_port, "other.test"))
  end)

  it("proxies over https with X-Forwarded-Proto: https", function()
    local rc, out = curl(string.format("--cacert %s --resolve a.test:%d:127.0.0.1 https://a.test:%d/up/x",
      q(ca.cert), tls_port, tls_port))
    assert.equal(0, rc, out)
    local echo = assert(helpers.json_decode(out), out)
    assert.equal("/x", echo.path)
    local h = {}
    for k, v in pairs(echo.headers) do h[k:lower()] = v end
    assert.equal("https", h["x-forwarded-proto"])
    assert.equal(tostring(tls_port), h["x-forwarded-port"])
    -- and plain HTTP on the other listener is still http
    local c = helpers.proxy_client()
    local res = assert(c:get("/up/y"))
    c:close()
    local e2 = helpers.json_decode(assert.res_status(200, res))
    for k, v in pairs(e2.headers) do h[k:lower()] = v end
    assert.equal("http", h["x-forwarded-proto"])
  end)

  it("streams large bodies both ways, chunked too, and pipelined requests", function()
    local base = string.format("--cacert %s --resolve a.test:%d:127.0.0.1 https://a.test:%d", q(ca.cert), tls_port, tls_port)
    for _, path in ipairs({ "/up/bytes/3000000", "/up/bytes-chunked/3000000" }) do
      local rc, out = curl(base .. path .. " -o /dev/null -w '%{http_code} %{size_download}'")
      assert.equal(0, rc, out)
      assert.equal("200 3000000", out)
    end
    local file = helpers.tmpdir("big") .. "/body"
    helpers.write_file(file, string.rep("0123456789abcdef", 262144))      -- 4 MiB
    local rc, out = curl(base .. "/up/x --data-binary @" .. q(file))
    assert.equal(0, rc, out)
    assert.equal(4194304, helpers.json_decode(out).body_size)
    rc, out = curl(base .. "/up/x -H 'Transfer-Encoding: chunked' --data-binary @" .. q(file))
    assert.equal(0, rc, out)
    assert.equal(4194304, helpers.json_decode(out).body_size)
    -- 20 requests written at once on one connection, 20 answers in order
    local reqs = string.rep("GET /who HTTP/1.1\\r\\nHost: a.test\\r\\n\\r\\n", 19) ..
      "GET /who HTTP/1.1\\r\\nHost: a.test\\r\\nConnection: close\\r\\n\\r\\n"
    local _
    _, out = s_client(tls_port, "-servername a.test -quiet", reqs)
    local n = 0
    for _ in out:gmatch("HTTP/1.1 200 OK") do n = n + 1 end
    assert.equal(20, n)
  end)

  it("accepts TLS 1.2 and 1.3", function()
    for _, v in ipairs({ "1_2", "1_3" }) do
      local rc, out = s_client(tls_port, "-servername a.test -tls" .. v, get("a.test"))
      assert.equal(0, rc, out)
      assert.matches("Protocol%s*: TLSv" .. v:gsub("_", "%%."), out)
      assert.matches("HTTP/1.1 200 OK", out, 1, true)
    end
  end)

  it("refuses TLS 1.1 (the same client gets in when ssl_protocols allows it: see below)", function()
    local rc, out = s_client(tls_port, "-servername a.test -tls1_1 -cipher DEFAULT:@SECLEVEL=0")
    assert.not_equal(0, rc)
    assert.matches("alert protocol version", out, 1, true)
  end)

  it("ALPN: http/1.1, also when h2 is offered; h2 alone is not agreed", function()
    local _, out = s_client(tls_port, "-servername a.test -alpn h2,http/1.1")
    assert.matches("ALPN protocol: http/1.1", out, 1, true)
    _, out = s_client(tls_port, "-servername a.test -alpn h2")
    assert.matches("No ALPN negotiated", out, 1, true)
    local rc, out2 = curl(string.format("--http2 -sv --cacert %s --resolve a.test:%d:127.0.0.1 https://a.test:%d/who -o /dev/null",
      q(ca.cert), tls_port, tls_port))
    assert.equal(0, rc, out2)
    assert.matches("ALPN: server accepted http/1.1", out2, 1, true)
    assert.matches("< HTTP/1.1 200", out2, 1, true)
  end)

  it("answers a plain HTTP request on the TLS port with 400 in clear text", function()
    local rc, out = curl(string.format("-i http://127.0.0.1:%d/who", tls_port))
    assert.equal(0, rc, out)
    assert.matches("^HTTP/1.1 400", out)
    assert.matches('{"message":"plain HTTP request sent to the HTTPS port"}', out, 1, true)
  end)

  it("resumes sessions with tickets on any worker", function()
    local dir = helpers.tmpdir("sess")
    local sess = dir .. "/s"
    for _, v in ipairs({ "-tls1_2", "-tls1_3" }) do
      local rc, out = s_client(tls_port, "-servername a.test -sess_out " .. q(sess) .. " " .. v, get("a.test"))
      assert.equal(0, rc, out)
      assert.matches("\nNew, TLSv1", out)
      local first = out:match("X%-Worker: (%d+)")
      -- batches of 8 clients at once, so that both workers accept some, until a resumption on
      -- the other worker is seen; every one of them resumes
      local others, tries = 0, 0
      for batch = 1, 5 do
        local cmd = {}
        for i = 1, 8 do
          cmd[i] = string.format("(printf %s | timeout 5 openssl s_client -connect 127.0.0.1:%d -ign_eof " ..
            "-servername a.test -sess_in %s %s > %s/out-%d-%d 2>&1) &", q(get("a.test")), tls_port, q(sess), v, dir, batch, i)
        end
        helpers.execute(table.concat(cmd, " ") .. " wait")
        for i = 1, 8 do
          out = helpers.read_file(string.format("%s/out-%d-%d", dir, batch, i))
          assert.matches("\nReused, TLSv1", out)
          tries = tries + 1
          if out:match("X%-Worker: (%d+)") ~= first then others = others + 1 end
        end
        if others > 0 then break end
      end
      -- a session made on one worker resumed on the other too
      assert.is_true(others > 0, "all " .. tries .. " resumptions on the first worker")
    end
  end)

  it("resumes a session made before a reload on the new workers", function()
    local sess = helpers.tmpdir("sess") .. "/s"
    local rc, out = s_client(tls_port, "-servername a.test -sess_out " .. q(sess), get("a.test"))
    assert.equal(0, rc, out)
    local before = out:match("X%-Worker: (%d+)")
    local old = helpers.gw_worker_pids()
    helpers.reload_gw()
    helpers.wait_until(function()
      local now = helpers.gw_worker_pids()
      for _, p in ipairs(now) do for _, o in ipairs(old) do if p == o then return false end end end
      return #now == 2
    end, 10)
    rc, out = s_client(tls_port, "-servername a.test -sess_in " .. q(sess), get("a.test"))
    assert.equal(0, rc, out)
    assert.matches("\nReused, TLSv1.3", out)
    assert.not_equal(before, out:match("X%-Worker: (%d+)"))
  end)

  it("a session made under one certificate does not resume under another", function()
    local sess = helpers.tmpdir("sess") .. "/s"
    local rc, out = s_client(tls_port, "-servername a.test -sess_out " .. q(sess), get("a.test"))
    assert.equal(0, rc, out)
    rc, out = s_client(tls_port, "-servername b.test -sess_in " .. q(sess), get("b.test"))
    assert.matches("\nNew, TLSv1.3", out)
    assert.matches("CN%s*=%s*b.test", out)
  end)
end)

describe("tls: listener settings", function()
  local pki, ca, cert

  lazy_setup(function()
    pki = PKI.new(helpers.tmpdir("pki"))
    ca = pki:ca("ca")
    cert = pki:cert("a", { cn = "a.test", san = { "DNS:a.test" }, ca = ca })
  end)
  lazy_teardown(helpers.stop_all)

  local function start(gwconf, certs)
    local port = helpers.get_free_port()
    gwconf.listen = { "127.0.0.1:" .. port .. " ssl" }
    gwconf.plugins_path = { FIXTURES }
    helpers.start_gw{ config = {
      gw = gwconf,
      certificates = certs or { { cert = cert.cert, key = cert.key, snis = { "a.test" }, default = true } },
      services = { { name = "echo", url = "echo://", routes = { { paths = { "/" } } } } },
    } }
    return port
  end

  it("ssl_protocols can allow TLS 1.1 (the client refused above gets in)", function()
    -- TLS 1.1 has no AEAD cipher: a CBC one must be listed too
    local port = start({ ssl_protocols = "TLSv1.1 TLSv1.2 TLSv1.3",
                         ssl_ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA" })
    local rc, out = s_client(port, "-servername a.test -tls1_1 -cipher DEFAULT:@SECLEVEL=0", get("a.test"))
    assert.equal(0, rc, out)
    assert.matches("Protocol%s*: TLSv1.1", out)
    assert.matches("HTTP/1.1 200 OK", out, 1, true)
  end)

  it("ssl_protocols: TLSv1.3 only", function()
    local port = start({ ssl_protocols = { "TLSv1.3" } })
    local rc = s_client(port, "-servername a.test -tls1_2")
    assert.not_equal(0, rc)
    local out
    rc, out = s_client(port, "-servername a.test", get("a.test"))
    assert.equal(0, rc, out)
    assert.matches("Protocol%s*: TLSv1.3", out)
  end)

  it("ssl_ciphers and ssl_ciphersuites choose the ciphers", function()
    local port = start({ ssl_ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305", ssl_ciphersuites = "TLS_CHACHA20_POLY1305_SHA256" })
    local _, out = s_client(port, "-servername a.test -tls1_2", get("a.test"))
    assert.matches("Cipher is ECDHE%-ECDSA%-CHACHA20%-POLY1305", out)
    _, out = s_client(port, "-servername a.test -tls1_3", get("a.test"))
    assert.matches("Cipher is TLS_CHACHA20_POLY1305_SHA256", out)
    local rc = s_client(port, "-servername a.test -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256")
    assert.not_equal(0, rc)
  end)

  it("cert_alt: an ECDSA and an RSA certificate for the same names, each client gets one it can use", function()
    local rsa = pki:cert("a-rsa", { cn = "a.test", san = { "DNS:a.test" }, ca = ca, rsa = true })
    local port = start({}, { { cert = cert.cert, key = cert.key, cert_alt = rsa.cert, key_alt = rsa.key,
                               snis = { "a.test" } } })
    local _, out = s_client(port, "-servername a.test -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256", get("a.test"))
    assert.matches("Peer signature type: ECDSA", out, 1, true)
    assert.matches("HTTP/1.1 200 OK", out, 1, true)
    _, out = s_client(port, "-servername a.test -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256", get("a.test"))
    assert.matches("Server public key is 2048 bit", out, 1, true)
    assert.matches("HTTP/1.1 200 OK", out, 1, true)
    _, out = s_client(port, "-servername a.test -tls1_3 -sigalgs rsa_pss_rsae_sha256", get("a.test"))
    assert.matches("Peer signature type: RSA-PSS", out, 1, true)
  end)

  it("ssl_session_tickets: false: no resumption", function()
    local port = start({ ssl_session_tickets = false })
    local sess = helpers.tmpdir("sess") .. "/s"
    local rc, out = s_client(port, "-servername a.test -sess_out " .. q(sess), get("a.test"))
    assert.equal(0, rc, out)
    _, out = s_client(port, "-servername a.test -sess_in " .. q(sess), get("a.test"))
    assert.matches("\nNew, TLSv1.3", out)
  end)

  it("ticket keys rotate: a ticket outlives one rotation, not two", function()
    local port = start({ ssl_ticket_rotation = 1500 })
    local sess = helpers.tmpdir("sess") .. "/s"
    local rc, out = s_client(port, "-servername a.test -tls1_2 -sess_out " .. q(sess), get("a.test"))
    assert.equal(0, rc, out)
    _, out = s_client(port, "-servername a.test -tls1_2 -sess_in " .. q(sess), get("a.test"))
    assert.matches("\nReused", out)
    helpers.sleep(3.3)     -- two rotations: the ticket's key is gone
    _, out = s_client(port, "-servername a.test -tls1_2 -sess_in " .. q(sess), get("a.test"))
    assert.matches("\nNew, TLSv1.2", out)
  end)

  it("without a default certificate, an unknown name is refused and logged", function()
    local port = start({ log_level = "notice" }, { { cert = cert.cert, key = cert.key, snis = { "a.test" } } })
    assert.equal("a.test", served_cn(port, "a.test"))
    local rc, out = s_client(port, "-servername nope.test")
    assert.not_equal(0, rc)
    assert.matches("unrecognized name", out, 1, true)
    rc = s_client(port, "-noservername")
    assert.not_equal(0, rc)
    helpers.wait_until(function()
      return helpers.gw_log():find('no certificate for server name "nope.test"', 1, true)
    end, 5)
    assert.truthy(helpers.gw_log():find('no certificate for server name "(none sent)"', 1, true))
  end)

  it("a handshake that never comes is closed after timeouts.client_header", function()
    local port = start({ timeouts = { client_header = 300 } })
    local socket = require "socket"
    local s = assert(socket.tcp())
    assert(s:connect("127.0.0.1", port))
    s:settimeout(3)
    local t0 = socket.gettime()
    local data, err = s:receive(1)
    s:close()
    assert.is_nil(data)
    assert.equal("closed", err)
    assert.is_true(socket.gettime() - t0 < 2)
  end)

  it("a reload that changes a certificate file serves the new certificate", function()
    local dir = helpers.tmpdir("reload-cert")
    local k1 = pki:cert("r1", { cn = "first.test", san = { "DNS:a.test" }, ca = ca })
    local k2 = pki:cert("r2", { cn = "second.test", san = { "DNS:a.test" }, ca = ca })
    helpers.write_file(dir .. "/site.pem", pki:read(k1.cert))
    helpers.write_file(dir .. "/site.key", pki:read(k1.key))
    local port = start({}, { { cert = dir .. "/site.pem", key = dir .. "/site.key", snis = { "a.test" } } })
    assert.equal("first.test", served_cn(port, "a.test"))
    helpers.write_file(dir .. "/site.pem", pki:read(k2.cert))
    helpers.write_file(dir .. "/site.key", pki:read(k2.key))
    helpers.reload_gw()
    helpers.wait_until(function() return served_cn(port, "a.test") == "second.test" end, 10)
    -- a broken certificate file: the reload is refused, the running one stays
    helpers.write_file(dir .. "/site.pem", "not a certificate\n")
    helpers.reload_gw()
    helpers.wait_until(function()
      return helpers.gw_log():find("reload rejected", 1, true)
    end, 5)
    assert.matches("certificates%[0%]%.cert: not a PEM certificate", helpers.gw_log())
    assert.equal("second.test", served_cn(port, "a.test"))
  end)
end)
