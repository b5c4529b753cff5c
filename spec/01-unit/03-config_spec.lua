-- gw.config (and gw.plugins): compiling the declarative config, every error with its
-- FILE:LINE:COL: PATH: message, defaults, plugin chains.
local config = require("gw.config")
local plugins = require("gw.plugins")

local FILE = "spec/fixtures/t.yaml"        -- plugins_path "plugins" -> spec/fixtures/plugins
local FIXTURES = "spec/fixtures/plugins"

local function load(text) return config.load_string(text, FILE) end

local function ok(text)
  local c, errs = load(text)
  assert(c, errs and table.concat(errs, "\n"))
  return c
end

local function errors(text)
  local c, errs = load(text)
  assert.is_nil(c)
  return errs
end

local function names(chain)
  local out = {}
  for i, p in ipairs(chain) do out[i] = p.name end
  return out
end

local HEAD = '_format_version: "3.0"\ngw: { plugins_path: [plugins] }\n'

describe("gw.config", function()
  describe("defaults", function()
    it("fills the gw block", function()
      local c = ok('_format_version: "3.0"\n')
      assert.same({ { host = "0.0.0.0", port = 8000 } }, c.gw.listen)
      assert.same({ host = "127.0.0.1", port = 8001 }, c.gw.admin_listen)
      assert.equal(config.ncpu(), c.gw.workers)
      assert.is_true(c.gw.workers >= 1)
      assert.same({ max_request_line = 8192, max_header_size = 32768, max_headers = 100,
                    max_body_size = 100 * 1024 * 1024 }, c.gw.limits)
      assert.same({ client_header = 60000, client_body = 60000, client_body_min_rate = 1024, keepalive = 75000,
                    send = 60000 }, c.gw.timeouts)
      assert.equal(1024, c.gw.max_connections)
      assert.same({ max_idle = 64, idle_timeout = 60000, max_requests = 10000 }, c.gw.upstream_keepalive)
      assert.same({}, c.gw.shared_dicts)
      assert.same({}, c.gw.plugins_path)
      assert.equal("notice", c.gw.log_level)
      assert.equal("stderr", c.gw.error_log)
      assert.equal("off", c.gw.access_log)
      assert.is_nil(c.gw.admin_token)
      assert.same({}, c.services)
      assert.same({}, c.routes)
      assert.same({}, c.upstreams)
      assert.same({}, c.consumers)
      assert.same({}, c.global_plugins)
    end)

    it("parses listen forms, sizes, workers and admin_listen off", function()
      local c = ok([[
_format_version: "1.0"
gw:
  listen: "9000"
  admin_listen: "off"
  workers: 3
  access_log: stdout
  log_level: debug
  admin_token: secret
  limits: { max_body_size: 2k, max_header_size: 1M, max_request_line: 100 }
  shared_dicts: { cache: 1m, locks: 4096, big: 1g }
  plugins_path: [plugins, /abs/dir]
]])
      assert.same({ { host = "0.0.0.0", port = 9000 } }, c.gw.listen)
      assert.is_nil(c.gw.admin_listen)
      assert.equal(3, c.gw.workers)
      assert.equal("stdout", c.gw.access_log)
      assert.equal("debug", c.gw.log_level)
      assert.equal("secret", c.gw.admin_token)
      assert.equal(2048, c.gw.limits.max_body_size)
      assert.equal(1024 * 1024, c.gw.limits.max_header_size)
      assert.equal(100, c.gw.limits.max_request_line)
      assert.equal(100, c.gw.limits.max_headers)
      assert.same({ cache = 1048576, locks = 4096, big = 1073741824 }, c.gw.shared_dicts)
      assert.same({ "spec/fixtures/plugins", "/abs/dir" }, c.gw.plugins_path)
      c = ok('_format_version: "3.0"\ngw: { listen: ["127.0.0.1:80", "[::1]:8080", "*:81", ":82"] }\n')
      assert.same({ { host = "127.0.0.1", port = 80 }, { host = "[::1]", port = 8080 },
                    { host = "0.0.0.0", port = 81 }, { host = "0.0.0.0", port = 82 } }, c.gw.listen)
    end)

    it("compiles services from url or fields", function()
      local c = ok([[
_format_version: "3.0"
services:
  - name: a
    url: http://Users.Internal
  - name: b
    url: https://example.com:8443/base/path
  - name: c
    url: echo://
  - name: d
    host: 10.0.0.1
    port: 9000
    path: /x
    retries: 0
    read_timeout: 5
  - name: e
    protocol: https
    host: secure.example.com
  - name: f
    protocol: echo
]])
      local s = c.services
      assert.same({ name = "a", protocol = "http", host = "users.internal", port = 80, connect_timeout = 60000,
                    write_timeout = 60000, read_timeout = 60000, retries = 5 }, s[1])
      assert.same({ "https", "example.com", 8443, "/base/path" }, { s[2].protocol, s[2].host, s[2].port, s[2].path })
      assert.same({ "echo" }, { s[3].protocol, s[3].host, s[3].port, s[3].path })
      assert.same({ "http", "10.0.0.1", 9000, "/x", 0, 5 },
                  { s[4].protocol, s[4].host, s[4].port, s[4].path, s[4].retries, s[4].read_timeout })
      assert.same({ "https", "secure.example.com", 443 }, { s[5].protocol, s[5].host, s[5].port })
      assert.equal("echo", s[6].protocol)
    end)

    it("compiles routes, nested and top-level", function()
      local c = ok([[
_format_version: "3.0"
services:
  - name: users
    url: http://u
    routes:
      - name: r1
        paths: ["/api", "~/users/\\d+$"]
        hosts: ["Example.com", "*.example.com", "api.*", "host:8080"]
        methods: [get, POST, get]
        headers: { X-Api-Version: ["2.0", "2.1"], x-one: "1" }
  - name: other
    url: http://o
routes:
  - name: r2
    service: other
    paths: [/v2]
    strip_path: false
    preserve_host: true
    regex_priority: 5
  - service: { name: users }
    methods: [DELETE]
]])
      assert.equal(3, #c.routes)
      local r1, r2, r3 = c.routes[1], c.routes[2], c.routes[3]
      assert.same({
        name = "r1", service = 1, paths = { "/api", "~/users/\\d+$" },
        hosts = { "example.com", "*.example.com", "api.*", "host:8080" },
        methods = { "GET", "POST" }, headers = { ["x-api-version"] = { "2.0", "2.1" }, ["x-one"] = { "1" } },
        strip_path = true, preserve_host = false, priority = 0, plugins = {},
      }, r1)
      assert.same({ "r2", 2, false, true, 5, {}, {}, {} },
                  { r2.name, r2.service, r2.strip_path, r2.preserve_host, r2.priority, r2.hosts, r2.methods, r2.headers })
      assert.same({ nil, 1, { "DELETE" } }, { r3.name, r3.service, r3.methods })
    end)

    it("compiles upstreams and links services to them", function()
      local c = ok([[
_format_version: "3.0"
services:
  - name: bal
    host: api-v2
  - name: plain
    host: api-v3
upstreams:
  - name: api-v2
    targets:
      - target: "127.0.0.1:9002"
        weight: 10
      - target: localhost
      - target: "[::1]:9003"
        weight: 0
    healthchecks: { passive: { failures: 5, cooldown: 1.5 } }
  - name: empty
]])
      assert.equal("api-v2", c.services[1].upstream)
      assert.is_nil(c.services[2].upstream)
      assert.same({
        name = "api-v2",
        targets = { { host = "127.0.0.1", port = 9002, weight = 10 }, { host = "localhost", port = 80, weight = 100 },
                    { host = "[::1]", port = 9003, weight = 0 } },
        passive = { failures = 5, cooldown = 1.5 },
      }, c.upstreams["api-v2"])
      assert.same({ name = "empty", targets = {}, passive = { failures = 3, cooldown = 10 } }, c.upstreams.empty)
    end)

    it("keeps consumers and the source", function()
      local c = ok([[
_format_version: "3.0"
consumers:
  - username: alice
    keyauth_credentials: [{ key: abc }]
  - custom_id: "42"
]])
      -- ids derived from the names when not given (details: spec/03-plugins/00-auth)
      assert.equal(2, #c.consumers)
      assert.equal("alice", c.consumers[1].username)
      assert.equal("abc", c.consumers[1].keyauth_credentials[1].key)
      assert.equal("42", c.consumers[2].custom_id)
      assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", c.consumers[2].id)
      assert.equal("3.0", c.source._format_version)
      assert.equal("alice", c.source.consumers[1].username)
    end)

    it("accepts an unquoted format version", function()
      assert.is_table(ok("_format_version: 3.0\n"))
      assert.is_table(ok("_format_version: 1.1\n"))
    end)
  end)

  describe("errors", function()
    it("requires _format_version and rejects unknown top-level keys", function()
      assert.same({ FILE .. ":1:1: _format_version: required field missing" }, errors("services: []\n"))
      assert.same({ FILE .. ":2:10: servces: unknown field" }, errors('_format_version: "3.0"\nservces: []\n'))
      assert.same({ FILE .. ":1:18: _format_version: expected one of: 1.0, 1.1, 2.1, 3.0" },
                  errors('_format_version: "2.0"\n'))
      assert.same({ FILE .. ":1:1: _format_version: required field missing" }, errors(""))
      assert.same({ FILE .. ":1:1: expected a record" }, errors("- a\n- b\n"))
    end)

    it("reports YAML syntax errors with their position", function()
      assert.same({ FILE .. ":2:12: mapping values are not allowed in this context" },
                  errors('_format_version: "3.0"\nservices: a: b\n'))
      assert.same({ FILE .. ":3:1: duplicate key 'services' (first defined at line 2)" },
                  errors('_format_version: "3.0"\nservices: []\nservices: []\n'))
    end)

    -- each case: config body (after _format_version) and the exact errors
    local cases = {
      { "gw listen port", [[
gw:
  listen: ["0.0.0.0:8000", "0.0.0.0:99999"]
]], { ':3:28: gw.listen[1]: invalid address "0.0.0.0:99999": port must be between 1 and 65535' } },
      { "gw listen type", "gw: { listen: 8000.5 }\n",
        { ":2:15: gw.listen: expected a string or an array of strings" } },
      { "gw workers", "gw: { workers: many }\n", { ':2:16: gw.workers: expected "auto" or an integer between 1 and 1024' } },
      { "gw log level", "gw: { log_level: loud }\n", { ":2:18: gw.log_level: expected one of: debug, info, notice, warn, error" } },
      { "gw sizes", "gw: { limits: { max_body_size: 10x }, shared_dicts: { c: big } }\n", {
        ":2:32: gw.limits.max_body_size: expected a size (bytes, or a number with a k, m or g suffix)",
        ":2:58: gw.shared_dicts.c: expected a size (bytes, or a number with a k, m or g suffix)" } },
      { "gw unknown key", "gw:\n  timeouts: { client_header: -1, idle: 5 }\n", {
        ":3:30: gw.timeouts.client_header: value should be between 1 and 2147483646",
        ":3:40: gw.timeouts.idle: unknown field" } },
      { "gw admin_listen", "gw: { admin_listen: 8001 }\n", { ':2:21: gw.admin_listen: expected "host:port" or "off"' } },
      { "service name required", "services:\n  - url: http://x\n", { ":3:5: services[0].name: required field missing" } },
      { "service name invalid", "services:\n  - name: a b\n    url: http://x\n",
        { ":3:11: services[0].name: invalid name: use letters, digits, '.', '-', '_' or '~'" } },
      { "service duplicate name", "services:\n  - name: a\n    url: http://x\n  - name: a\n    url: http://y\n",
        { ':5:11: services[1].name: duplicate name "a" (also used by services[0])' } },
      { "service url scheme", "services:\n  - name: a\n    url: ftp://x\n",
        { ':4:10: services[0].url: unsupported url scheme "ftp" (expected http, https or echo)' } },
      { "service url port", "services:\n  - name: a\n    url: http://x:0/\n",
        { ':4:10: services[0].url: invalid url "http://x:0/": port must be between 1 and 65535' } },
      { "service url missing host", "services:\n  - name: a\n    url: http:///p\n",
        { ':4:10: services[0].url: invalid url "http:///p": missing host' } },
      { "service url garbage", "services:\n  - name: a\n    url: nothing\n",
        { ':4:10: services[0].url: invalid url "nothing": expected scheme://host[:port][/path]' } },
      { "service url plus host", "services:\n  - name: a\n    url: http://x\n    host: y\n",
        { ":4:10: services[0].url: url cannot be combined with protocol, host, port or path" } },
      { "service without host", "services:\n  - name: a\n    port: 80\n",
        { ':3:5: services[0]: a service needs "url" or "host"' } },
      { "service bad fields", "services:\n  - name: a\n    host: bad_host!\n    port: 70000\n    protocol: ftp\n    path: x\n    retries: 1.5\n", {
        ":4:11: services[0].host: invalid host \"bad_host!\"",
        ":5:11: services[0].port: value should be between 1 and 65535",
        ":6:15: services[0].protocol: expected one of: http, https, echo",
        ':7:11: services[0].path: must start with "/"',
        ":8:14: services[0].retries: expected an integer" } },
      { "route without matcher", "services:\n  - name: a\n    url: http://x\n    routes:\n      - name: r\n        strip_path: false\n",
        { ":6:9: services[0].routes[0]: a route needs at least one of: paths, hosts, methods, headers" } },
      { "route paths", "services:\n  - name: a\n    url: http://x\n    routes:\n      - paths: [api, /ok, \"/a b\", 5]\n", {
        ':6:17: services[0].routes[0].paths[0]: must start with "/" or "~"',
        ':6:27: services[0].routes[0].paths[2]: invalid path "/a b": no spaces, "?" or "#"',
        ":6:35: services[0].routes[0].paths[3]: expected a string" } },
      { "route regex", "services:\n  - name: a\n    url: http://x\n    routes:\n      - paths: [\"~/users/(\\\\d+$\", \"~\"]\n", {
        ':6:17: services[0].routes[0].paths[0]: invalid regex: missing closing parenthesis at offset 12',
        ":6:35: services[0].routes[0].paths[1]: invalid regex: empty regex" } },
      { "route hosts", "routes:\n  - service: s\n    hosts: [\"ex*ample.com\", \"a.*.com\", \"*.*\", \"*\", \"x:99999\"]\nservices:\n  - name: s\n    url: echo://\n", {
        ':4:13: routes[0].hosts[0]: invalid host "ex*ample.com"',
        ':4:29: routes[0].hosts[1]: invalid host "a.*.com": a wildcard is only allowed as the leftmost or rightmost label',
        ':4:40: routes[0].hosts[2]: invalid host "*.*": only one wildcard label, next to a domain, is allowed',
        ':4:47: routes[0].hosts[3]: invalid host "*": only one wildcard label, next to a domain, is allowed',
        ':4:52: routes[0].hosts[4]: invalid host "x:99999": port must be between 1 and 65535' } },
      { "route methods and headers", "routes:\n  - service: s\n    methods: [\"GE T\"]\n    headers: { host: [a], \"bad header\": [x], x-a: [], x-b: [1] }\nservices:\n  - name: s\n    url: echo://\n", {
        ':4:15: routes[0].methods[0]: invalid method "GE T"',
        ':5:22: routes[0].headers.host: use "hosts" to match the Host header',
        ':5:41: routes[0].headers.bad header: invalid header name "bad header"',
        ":5:51: routes[0].headers.x-a: expected a string or a non-empty array of strings",
        ":5:61: routes[0].headers.x-b[0]: expected a string" } },
      { "route service", "routes:\n  - paths: [/]\n  - service: nope\n    paths: [/]\n  - service: [1]\n    paths: [/]\n", {
        ":3:5: routes[0].service: required field missing",
        ':4:14: routes[1].service: unknown service "nope"',
        ":6:14: routes[2].service: expected a service name" } },
      { "route duplicate names and unknown keys", "services:\n  - name: s\n    url: echo://\n    routes:\n      - name: r\n        paths: [/a]\n        service: s\n      - name: r\n        paths: [/b]\n", {
        ":8:18: services[0].routes[0].service: unknown field",
        ':9:15: services[0].routes[1].name: duplicate name "r" (also used by services[0].routes[0])' } },
      { "upstreams", "upstreams:\n  - name: u\n    targets:\n      - target: \"h:0\"\n      - target: \"a:1\"\n        weight: 70000\n      - weight: 1\n      - target: h\n      - target: \"h:80\"\n  - name: u\n", {
        ':5:17: upstreams[0].targets[0].target: invalid target "h:0": port must be between 1 and 65535',
        ":7:17: upstreams[0].targets[1].weight: value should be between 0 and 65535",
        ":8:9: upstreams[0].targets[2].target: required field missing",
        ':10:17: upstreams[0].targets[4].target: duplicate target "h:80"',
        ':11:11: upstreams[1].name: duplicate name "u" (also used by upstreams[0])' } },
      { "consumers", "consumers:\n  - username: a\n  - username: a\n  - tags: [x]\n  - x\n  - username: 5\n", {
        ':4:15: consumers[1].username: duplicate username "a" (also used by consumers[0])',
        ':5:5: consumers[2]: a consumer needs a "username" or a "custom_id"',
        ":6:5: consumers[3]: expected a record",
        ":7:15: consumers[4].username: expected a string" } },
    }
    for _, case in ipairs(cases) do
      it(case[1], function()
        local expected = {}
        for i, e in ipairs(case[3]) do expected[i] = FILE .. e end
        assert.same(expected, errors('_format_version: "3.0"\n' .. case[2]))
      end)
    end

    it("reports all errors, sorted by line then column", function()
      local errs = errors([[
_format_version: "3.0"
zzz: 1
services:
  - name: a
    url: ftp://x
    routes:
      - paths: [x]
  - name: a
    url: http://y
aaa: 2
]])
      assert.same({
        FILE .. ":2:6: zzz: unknown field",
        FILE .. ':5:10: services[0].url: unsupported url scheme "ftp" (expected http, https or echo)',
        FILE .. ':7:17: services[0].routes[0].paths[0]: must start with "/" or "~"',
        FILE .. ':8:11: services[1].name: duplicate name "a" (also used by services[0])',
        FILE .. ":10:6: aaa: unknown field",
      }, errs)
    end)

    it("uses the config.regex_check hook", function()
      local saved = config.regex_check
      config.regex_check = function(re)
        if re:find("bad") then return nil, "nothing to repeat at offset 0" end
        return true
      end
      local errs = errors('_format_version: "3.0"\nroutes:\n  - service: s\n    paths: ["~bad", "~good"]\nservices: [{ name: s, url: "echo://" }]\n')
      config.regex_check = saved
      assert.same({ FILE .. ":4:13: routes[0].paths[0]: invalid regex: nothing to repeat at offset 0" }, errs)
    end)

    it("formats errors without positions for values that did not come from YAML", function()
      local c, errs = config.compile({ _format_version = "3.0", services = { { name = 1, url = "echo://" } } }, nil, "admin")
      assert.is_nil(c)
      assert.same({ "admin: services[0].name: expected a string" }, errs)
    end)

    it("reports a missing file", function()
      local c, errs = config.load_file("spec/fixtures/does-not-exist.yaml")
      assert.is_nil(c)
      assert.equal(1, #errs)
      assert.matches("^spec/fixtures/does%-not%-exist%.yaml: cannot open: ", errs[1])
    end)
  end)

  describe("plugins", function()
    it("validates plugin configs with errors pointing into the config", function()
      local errs = errors(HEAD .. [[
services:
  - name: s
    url: echo://
    routes:
      - paths: [/]
        plugins:
          - name: high
            config:
              count: 30
              mode: medium
              extra: 1
              limits: { second: "x" }
          - name: low
plugins:
  - name: low
    config: { tag: forbidden }
]])
      assert.same({
        FILE .. ":11:22: services[0].routes[0].plugins[0].config.count: value should be between 1 and 10",
        FILE .. ":12:21: services[0].routes[0].plugins[0].config.mode: expected one of: fast, slow",
        FILE .. ":13:22: services[0].routes[0].plugins[0].config.extra: unknown field",
        FILE .. ":14:33: services[0].routes[0].plugins[0].config.limits.second: expected a number",
        FILE .. ":15:13: services[0].routes[0].plugins[1].config.tag: required field missing",
        FILE .. ":18:13: plugins[0].config: tag must not be forbidden",
      }, errs)
    end)

    it("reports plugins that cannot be found or loaded", function()
      local errs = errors(HEAD .. [[
plugins:
  - name: nope
  - name: broken-syntax
  - name: broken-runtime
  - name: bad-schema
  - name: no-phase
  - name: "../etc"
]])
      assert.equal(6, #errs)
      assert.matches('^' .. FILE:gsub("%p", "%%%0") .. ':4:11: plugins%[0%]%.name: plugin "nope" not found %(searched .*spec/fixtures/plugins%)$', errs[1])
      assert.equal(FILE .. ':5:11: plugins[1].name: cannot load plugin "broken-syntax": ' .. FIXTURES ..
                   "/broken-syntax/handler.lua:4: ')' expected near 'return'", errs[2])
      assert.equal(FILE .. ':6:11: plugins[2].name: cannot load plugin "broken-runtime": ' .. FIXTURES ..
                   "/broken-runtime/handler.lua:4: attempt to index local 'cfg' (a nil value)", errs[3])
      assert.equal(FILE .. ':7:11: plugins[3].name: cannot load plugin "bad-schema": ' .. FIXTURES ..
                   '/bad-schema/schema.lua:5: invalid schema: fields[1].timeout.type: unknown type "strin"', errs[4])
      assert.equal(FILE .. ':8:11: plugins[4].name: cannot load plugin "no-phase": ' .. FIXTURES ..
                   "/no-phase/handler.lua:2: the handler implements no phase (init_worker, rewrite, access, balancer, header_filter, body_filter, log)", errs[5])
      assert.equal(FILE .. ':9:11: plugins[5].name: invalid plugin name "../etc"', errs[6])
    end)

    it("skips disabled entries entirely", function()
      local c = ok(HEAD .. "plugins:\n  - name: broken-syntax\n    enabled: false\n  - name: high\n    enabled: false\n")
      assert.same({}, c.global_plugins)
    end)

    it("rejects duplicate plugins on one level and bad scopes", function()
      local errs = errors(HEAD .. [[
services: [{ name: s, url: "echo://", routes: [{ name: r, paths: [/] }] }]
plugins:
  - name: alpha
  - name: alpha
  - name: beta
    service: nope
  - name: beta
    route: nope
  - name: beta
    service: s
    route: r
  - name: beta
    consumer: c
]])
      assert.same({
        FILE .. ':6:11: plugins[1].name: duplicate plugin "alpha" (also at plugins[0])',
        FILE .. ':8:14: plugins[2].service: unknown service "nope"',
        FILE .. ':10:12: plugins[3].route: unknown route "nope"',
        FILE .. ":11:5: plugins[4]: a plugin can be scoped to a service or to a route, not both",
        FILE .. ":15:15: plugins[5].consumer: consumer-scoped plugins are not supported",
      }, errs)
    end)

    it("builds chains: route > service > global, sorted by priority then name", function()
      local c = ok(HEAD .. [[
services:
  - name: s1
    url: echo://
    plugins:
      - name: high
        config: { message: service }
      - name: low
        config: { tag: service }
    routes:
      - name: r1
        paths: [/one]
        plugins:
          - name: low
            config: { tag: route }
      - name: r2
        paths: [/two]
  - name: s2
    url: echo://
    routes:
      - name: r3
        paths: [/three]
plugins:
  - name: high
    config: { message: global }
  - name: beta
  - name: alpha
    config: { level: global }
  - name: alpha
    route: r3
    config: { level: route }
  - name: beta
    service: s2
    config: { level: service }
]])
      local r1, r2, r3 = c.routes[1], c.routes[2], c.routes[3]
      assert.same({ "high", "alpha", "beta", "low" }, names(r1.plugins))
      assert.equal("service", r1.plugins[1].conf.message)
      assert.equal("route", r1.plugins[4].conf.tag)
      assert.same({ "high", "alpha", "beta", "low" }, names(r2.plugins))
      assert.equal("service", r2.plugins[4].conf.tag)
      assert.same({ "high", "alpha", "beta" }, names(r3.plugins))
      assert.same({ "global", "route", "service" },
                  { r3.plugins[1].conf.message, r3.plugins[2].conf.level, r3.plugins[3].conf.level })
      assert.same({ "high", "alpha", "beta" }, names(c.global_plugins))
      assert.same({ 1000, 500, 500 }, { c.global_plugins[1].priority, c.global_plugins[2].priority, c.global_plugins[3].priority })
      -- defaults of the plugin schema are filled in
      assert.same({ message = "global", count = 1, limits = { minute = 60 } }, c.global_plugins[1].conf)
      assert.same({ level = "global" }, c.global_plugins[3].conf)
      -- an entry's instance is shared by every chain it is part of
      assert.equal(c.global_plugins[1], r3.plugins[1])
      assert.is_function(c.global_plugins[1].handler.access)
      assert.same({ access = true }, c.global_plugins[1].phases)
    end)
  end)

  describe("hash", function()
    it("is stable across key order and formatting and changes with the content", function()
      local a = ok('_format_version: "3.0"\nservices: [{ name: a, url: "http://x" }]\ngw: { workers: 1 }\n')
      local b = ok('gw:\n  workers: 1\nservices:\n  - url: http://x\n    name: a\n_format_version: "3.0"\n')
      local c = ok('_format_version: "3.0"\nservices: [{ name: a, url: "http://y" }]\ngw: { workers: 1 }\n')
      assert.matches("^%x+$", a.hash)
      assert.equal(64, #a.hash)
      assert.equal(a.hash, b.hash)
      assert.not_equal(a.hash, c.hash)
    end)

    it("uses a canonical JSON with sorted keys and SHA-256", function()
      assert.equal('{"a":[1,2.5,"x\\n"],"b":{"c":null,"d":true}}',
                   config.canonical_json({ b = { d = true, c = require("cjson").null }, a = { 1, 2.5, "x\n" } }))
      assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", config.sha256("abc"))
      assert.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
                   config.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
    end)
  end)

  it("load_file reads a file", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write('_format_version: "3.0"\nservices: [{ name: a, url: "http://x" }]\n')
    f:close()
    local c = config.load_file(path)
    os.remove(path)
    assert.equal("a", c.services[1].name)
  end)
end)

describe("gw.plugins", function()
  it("loads a plugin from the given dirs", function()
    local p = assert(plugins.load("high", { "/nonexistent", FIXTURES }))
    assert.equal("high", p.name)
    assert.equal(1000, p.priority)
    assert.equal("1.0.0", p.version)
    assert.same({ access = true }, p.phases)
    assert.equal(FIXTURES .. "/high", p.dir)
    assert.equal("high", p.schema.name)
  end)

  it("runs plugin files in a fresh environment that can require modules", function()
    local p = assert(plugins.load("low", { FIXTURES }))
    assert.equal('{"tag":"x"}', p.handler.header_filter(p.handler, { tag = "x" }))
    assert.is_nil(rawget(_G, "H"))
  end)

  it("loads again from disk every time", function()
    local a = plugins.load("alpha", { FIXTURES })
    local b = plugins.load("alpha", { FIXTURES })
    assert.not_equal(a.handler, b.handler)
  end)

  it("defaults PRIORITY to 0 and the schema to no fields", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. "/p0"))
    local f = assert(io.open(dir .. "/p0/handler.lua", "w"))
    f:write("return { log = function() end }\n")
    f:close()
    local p = assert(plugins.load("p0", { dir }))
    assert.equal(0, p.priority)
    assert.same({ log = true }, p.phases)
    assert.same({}, p.schema.fields)
    assert.same({ "p0" }, plugins.available({ dir }))
    os.execute("rm -rf " .. dir)
  end)

  it("reports load errors as FILE:LINE: message", function()
    local _, err = plugins.load("broken-syntax", { FIXTURES })
    assert.equal(FIXTURES .. "/broken-syntax/handler.lua:4: ')' expected near 'return'", err)
    _, err = plugins.load("broken-runtime", { FIXTURES })
    assert.equal(FIXTURES .. "/broken-runtime/handler.lua:4: attempt to index local 'cfg' (a nil value)", err)
    _, err = plugins.load("bad-priority", { FIXTURES })
    assert.equal(FIXTURES .. "/bad-priority/handler.lua:3: PRIORITY must be a number", err)
    _, err = plugins.load("no-phase", { FIXTURES })
    assert.matches("/no%-phase/handler%.lua:2: the handler implements no phase", err)
    _, err = plugins.load("bad-schema", { FIXTURES })
    assert.equal(FIXTURES .. '/bad-schema/schema.lua:5: invalid schema: fields[1].timeout.type: unknown type "strin"', err)
    _, err = plugins.load("nope", { FIXTURES })
    assert.equal('plugin "nope" not found (searched ' .. FIXTURES .. ")", err)
  end)

  it("unwraps a Kong-style schema to its config record", function()
    local p = assert(plugins.load("kong-style", { FIXTURES }))
    assert.equal(900, p.priority)
    assert.is_table(p.schema.kong_schema)
    local schema = require("gw.schema")
    assert.same({ second = 2, policy = "local" }, schema.validate(p.schema, { second = 2 }))
    local _, errs = schema.validate(p.schema, {})
    assert.same({ { path = "", msg = "at least one limit is required" } }, errs)
    local c, cerrs = load(HEAD .. "plugins:\n  - name: kong-style\n    config: { second: 0 }\n")
    assert.is_nil(c)
    assert.same({ FILE .. ":5:23: plugins[0].config.second: value must be greater than 0" }, cerrs)
  end)

  it("lists available plugins", function()
    local list = plugins.available({ FIXTURES, "/nonexistent" })
    for _, n in ipairs({ "alpha", "beta", "high", "low", "broken-syntax" }) do
      assert.truthy(table.concat(list, " "):find(n, 1, true))
    end
    local sorted = { unpack(list) }
    table.sort(sorted)
    assert.same(sorted, list)
  end)

  it("searches GW_HOME/plugins by default", function()
    assert.equal((rawget(_G, "GW_HOME") or os.getenv("GW_HOME") or ".") .. "/plugins", plugins.default_dirs()[1])
    assert.same({ "x", "y" }, { select(2, unpack(plugins.default_dirs({ "x", "y" }))) })
  end)
end)
