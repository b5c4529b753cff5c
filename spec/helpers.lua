--- spec/helpers.lua — the test infrastructure every gw busted spec uses.
--
-- It owns: starting/stopping the processes a spec needs (gw itself, the Python mock upstream in
-- spec/fixtures/mock_upstream.py, redis-server), a small keep-alive HTTP/1.1 client, and the
-- luassert assertions specs use on responses (`assert.res_status`, `assert.response(r).has.header`,
-- `assert.request(r).has.header`, `assert.jsonbody`, `assert.logfile().has.line`).
--
-- Runs in gw's LuaJIT (`bin/gw test`, Lua 5.1) and in the system busted (Lua 5.2), so it only uses
-- what both have: luasocket, cjson, io.popen and /proc.
--
-- Typical spec:
--
--     local helpers = require "spec.helpers"
--     describe("proxy", function()
--       local up, client
--       lazy_setup(function()
--         up = helpers.start_mock_upstream{ name = "a" }
--         helpers.start_gw{ config = { services = { { name = "s", url = "http://127.0.0.1:" .. up[1],
--                                                    routes = { { paths = { "/" } } } } } } }
--       end)
--       lazy_teardown(helpers.stop_all)
--       before_each(function() client = helpers.proxy_client() end)
--       after_each(function() client:close() end)
--       it("proxies", function()
--         local res = client:get("/hello", { headers = { ["X-A"] = "1" } })
--         assert.res_status(200, res)
--         assert.equal("1", assert.request(res).has.header("x-a"))
--       end)
--     end)
--
-- Process hygiene: busted has no atexit, so specs call `helpers.stop_all()` in `lazy_teardown`.
-- As safety nets the helpers also (1) stop everything on busted's "exit" event, (2) stop everything
-- when the Lua state is closed (a __gc sentinel), and (3) write a pid file per process under
-- /tmp/gw-spec-pids; the next run kills processes whose owning test run is gone.
--
-- @module spec.helpers

local socket = require "socket"
local cjson = require "cjson"
local luassert = require "luassert"
local say = require "say"

local unpack = unpack or table.unpack  -- luacheck: ignore

local helpers = {}

-------------------------------------------------------------------------------
-- Small utilities
-------------------------------------------------------------------------------

--- Quotes a string for /bin/sh.
-- @tparam string s
-- @treturn string
local function shq(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
helpers.shell_quote = shq

--- Runs a shell command; returns its exit code and its combined stdout+stderr.
-- (io.popen():close() and os.execute() return different things in 5.1 and 5.2, so the exit code is
-- echoed on a marker line instead.)
-- @tparam string cmd
-- @treturn number exit code
-- @treturn string output
local function run(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__gw_rc=$?\""))
  local out = p:read("*a") or ""
  p:close()
  local body, rc = out:match("^(.-)__gw_rc=(%d+)\n?$")
  if not body then return -1, out end
  return tonumber(rc), body
end
helpers.execute = run

--- Reads a whole file, or nil, err.
-- @tparam string path
function helpers.read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local data = f:read("*a")
  f:close()
  return data
end
local read_file = helpers.read_file

--- Writes a whole file (raises on error).
-- @tparam string path
-- @tparam string data
function helpers.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  f:close()
  return path
end
local write_file = helpers.write_file

--- Sleeps `s` seconds (fractions allowed).
-- @tparam number s
function helpers.sleep(s)
  socket.sleep(s)
end

local function now() return socket.gettime() end

--- The last `n` lines of a file (for error messages).
local function tail(path, n)
  local data = path and read_file(path)
  if not data or data == "" then return "(log empty: " .. tostring(path) .. ")" end
  local lines = {}
  for line in data:gmatch("[^\n]*\n?") do
    if line ~= "" then lines[#lines + 1] = line end
  end
  local from = math.max(1, #lines - (n or 30) + 1)
  return table.concat(lines, "", from)
end
helpers.tail = tail

-- The current directory, absolute.
local function cwd()
  local ok, lfs = pcall(require, "lfs")
  return ok and lfs.currentdir() or (os.getenv("PWD") or ".")
end

-- The repository root: this file is <repo>/spec/helpers.lua.
local function repo_root()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  local dir = src:match("^(.*)/spec/helpers%.lua$") or (src == "spec/helpers.lua" and ".") or "."
  if dir:sub(1, 1) ~= "/" then
    local ok, lfs = pcall(require, "lfs")
    local cwd = ok and lfs.currentdir() or (os.getenv("PWD") or ".")
    dir = (dir == ".") and cwd or (cwd .. "/" .. dir:gsub("^%./", ""))
  end
  return dir
end

--- Absolute path of the gw home (where bin/gw lives): the home of the gw running these specs
-- (`gw test` sets GW_HOME), else the repository this file is in. Installed from a rock, this file
-- lives elsewhere, and GW_HOME still finds the gateway.
helpers.repo = rawget(_G, "GW_HOME") or os.getenv("GW_HOME") or repo_root()
--- Absolute path of the gw binary.
-- GW_BIN: another build of gw to run the specs against (`make test-asan` sets bin/gw-asan)
helpers.gw_bin = os.getenv("GW_BIN") or helpers.repo .. "/bin/gw"
--- Absolute path of the mock upstream script.
helpers.mock_upstream_script = helpers.repo .. "/spec/fixtures/mock_upstream.py"

-------------------------------------------------------------------------------
-- JSON
-------------------------------------------------------------------------------

--- Marks a table so that it encodes as a JSON array even when empty.
-- @tparam[opt] table t
function helpers.json_array(t)
  return setmetatable(t or {}, { __jsontype = "array" })
end

local function is_array(t)
  local mt = getmetatable(t)
  if mt and mt.__jsontype then return mt.__jsontype == "array" end
  if cjson.empty_array ~= nil and t == cjson.empty_array then return true end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  if n == 0 then return false end
  for i = 1, n do
    if t[i] == nil then return false end
  end
  return true
end

local json_escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return json_escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

-- Own encoder rather than cjson.encode: deterministic key order, readable indentation (configs are
-- written as JSON, which YAML parses, and a readable file makes LINE:COL errors useful), no "\/".
local function encode(v, indent, depth)
  local t = type(v)
  if v == nil or v == cjson.null then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then error("cannot encode " .. tostring(v) .. " as JSON") end
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
    return string.format("%.17g", v)
  end
  if t == "string" then return json_string(v) end
  if t == "userdata" and tostring(v):find("null") then return "null" end  -- yaml.null and friends
  if t ~= "table" then error("cannot encode a " .. t .. " as JSON") end
  depth = depth or 0
  local nl, pad, pad_in = "", "", ""
  if indent then
    nl = "\n"
    pad = string.rep(indent, depth)
    pad_in = string.rep(indent, depth + 1)
  end
  local parts = {}
  if is_array(v) then
    for i = 1, #v do parts[i] = pad_in .. encode(v[i], indent, depth + 1) end
    if #parts == 0 then return "[]" end
    return "[" .. nl .. table.concat(parts, "," .. nl) .. nl .. pad .. "]"
  end
  local keys = {}
  for k in pairs(v) do
    if type(k) ~= "string" and type(k) ~= "number" then error("cannot encode a " .. type(k) .. " key as JSON") end
    keys[#keys + 1] = k
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for i, k in ipairs(keys) do
    parts[i] = pad_in .. json_string(tostring(k)) .. (indent and ": " or ":") .. encode(v[k], indent, depth + 1)
  end
  if #parts == 0 then return "{}" end
  return "{" .. nl .. table.concat(parts, "," .. nl) .. nl .. pad .. "}"
end

--- Encodes a Lua value as JSON (sorted keys; `indent` e.g. "  " for pretty output).
-- Empty tables encode as `{}` unless wrapped by `helpers.json_array`.
-- @param v value
-- @tparam[opt] string indent
-- @treturn string
function helpers.json_encode(v, indent)
  return encode(v, indent, 0)
end

--- Decodes JSON; returns value or nil, err (never raises).
-- @tparam string s
function helpers.json_decode(s)
  if type(s) ~= "string" then return nil, "not a string: " .. type(s) end
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil, tostring(v) end
  return v
end

local function deepcopy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deepcopy(x) end
  return setmetatable(out, getmetatable(v))
end
helpers.deepcopy = deepcopy

-------------------------------------------------------------------------------
-- Process registry
-------------------------------------------------------------------------------

-- /proc/PID/stat fields after the ")" of the command name: [1]=state, [2]=ppid, ..., [20]=starttime.
local function proc_stat(pid)
  local data = read_file("/proc/" .. tostring(pid) .. "/stat")
  if not data then return nil end
  local rest = data:match("^.*%)%s+(.*)$")
  if not rest then return nil end
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  return f
end

--- True when the process exists and is not a zombie (reaped or not, a zombie has exited).
-- Our children are reparented to PID 1, which in a container may never reap them, so `kill -0`
-- alone would report zombies as alive.
-- @tparam number pid
function helpers.pid_alive(pid)
  local f = proc_stat(pid)
  return f ~= nil and f[1] ~= "Z" and f[1] ~= "X"
end
local pid_alive = helpers.pid_alive

--- True when a live (non-zombie) process is in process group `pgid` (a spawned process's pid).
-- @tparam number pgid
local function group_alive(pgid)
  local _, out = run("cat /proc/[0-9]*/stat 2>/dev/null")
  for rest in out:gmatch("%)%s+([^\n]+)") do
    local state, _, pgrp = rest:match("^(%S+)%s+(%d+)%s+(%d+)")
    if tonumber(pgrp) == pgid and state ~= "Z" and state ~= "X" then return true end
  end
  return false
end

helpers.group_alive = group_alive

local function cmdline(pid)
  local data = read_file("/proc/" .. tostring(pid) .. "/cmdline")
  return data and data:gsub("%z", " ") or ""
end

local PID_DIR = "/tmp/gw-spec-pids"

-- One registry per OS process, kept in the Lua registry: busted insulates each spec file
-- (package.loaded is restored afterwards, so this module is loaded again per file), but processes
-- started in one file must still be known to stop_all() / "starting again stops the previous one".
local R
do
  local ok, reg = pcall(debug.getregistry)
  reg = ok and type(reg) == "table" and reg or {}
  R = reg["gw.spec.helpers"]
  if not R then
    local self = proc_stat("self") or {}
    R = {
      runner_pid = tonumber((read_file("/proc/self/stat") or ""):match("^(%d+)")) or 0,
      runner_start = self[20] or "0",
      procs = {},          -- pid -> proc
      mocks = {},          -- name -> proc
      ports_used = {},     -- ports handed out by get_free_port, never handed out twice
      seq = 0,
    }
    R.dir = string.format("/tmp/gw-spec-%d-%s", R.runner_pid, R.runner_start)
    reg["gw.spec.helpers"] = R
  end
end

local function next_seq()
  R.seq = R.seq + 1
  return R.seq
end

local function ensure_dirs()
  if R.dirs_made then return end
  local rc, out = run("mkdir -p " .. shq(R.dir) .. " " .. shq(PID_DIR))
  assert(rc == 0, "cannot create " .. R.dir .. ": " .. out)
  R.dirs_made = true
end

--- A fresh empty directory under this run's /tmp/gw-spec-* directory.
-- @tparam[opt] string name prefix of the directory name
-- @treturn string absolute path
function helpers.tmpdir(name)
  ensure_dirs()
  local dir = string.format("%s/%s-%d", R.dir, name or "tmp", next_seq())
  local rc, out = run("rm -rf " .. shq(dir) .. " && mkdir -p " .. shq(dir))
  assert(rc == 0, out)
  return dir
end

local function signal(pid, sig, group)
  local target = group and ("-" .. pid) or tostring(pid)  -- dash: no "--" before a negative pid
  run("kill -" .. sig .. " " .. target .. " 2>/dev/null")
end

local function wait_exit(pid, timeout)
  local deadline = now() + timeout
  while pid_alive(pid) do
    if now() >= deadline then return false end
    socket.sleep(0.02)
  end
  return true
end

-- Kills what earlier (crashed or interrupted) test runs left behind: a pid file names the test
-- runner that started the process; when that runner is gone, the process and its directory go too.
local function reap_stale(force)
  if R.reaped and not force then return end
  R.reaped = true
  ensure_dirs()
  local rc, out = run("ls -1 " .. shq(PID_DIR))
  if rc ~= 0 then return end
  for name in out:gmatch("[^\n]+") do
    local pid = tonumber(name)
    local data = pid and read_file(PID_DIR .. "/" .. name)
    if data then
      local runner, start, marker = data:match("^(%d+) (%S+) (.-)\n?$")
      runner = tonumber(runner)
      local rstat = runner and proc_stat(runner)
      local runner_alive = rstat and rstat[1] ~= "Z" and rstat[20] == start
      if not runner_alive then
        if pid_alive(pid) and marker and cmdline(pid):find(marker, 1, true) then
          signal(pid, "KILL", true)
          signal(pid, "KILL")
        end
        os.remove(PID_DIR .. "/" .. name)
      end
    end
  end
  -- Directories of runs that are over (keep ours and those of concurrent runs).
  rc, out = run("ls -1d /tmp/gw-spec-[0-9]*-[0-9]* 2>/dev/null")
  for dir in out:gmatch("[^\n]+") do
    local runner, start = dir:match("/gw%-spec%-(%d+)%-(%d+)$")
    local rstat = runner and proc_stat(runner)
    if runner and not (rstat and rstat[1] ~= "Z" and rstat[20] == start) then
      run("rm -rf " .. shq(dir))
    end
  end
end

--- Kills processes left behind by earlier test runs whose runner is gone (done automatically once
-- per run, before the first process is started; `force` runs it again).
-- @tparam[opt] boolean force
helpers.reap_stale = reap_stale

--- Starts a background process (own session, so its whole process group can be killed).
-- @tparam table opts `cmd` (shell words, already quoted), `kind`, `log` (stdout+stderr, appended),
--   `env` (table), `cwd`, `marker` (string found in its /proc cmdline, for stale-process cleanup)
-- @treturn table proc `{pid=, kind=, log=, cmd=}`
function helpers.spawn(opts)
  reap_stale()
  ensure_dirs()
  local env = ""
  if opts.env then
    local keys = {}
    for k in pairs(opts.env) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do env = env .. " " .. shq(k .. "=" .. tostring(opts.env[k])) end
  end
  local log = opts.log or (R.dir .. "/" .. (opts.kind or "proc") .. "-" .. next_seq() .. ".log")
  -- `exec` keeps one pid all the way down (subshell -> env -> setsid -> program): setsid does not
  -- fork because a background job of a non-interactive sh is not a process-group leader.
  local line = string.format("cd %s && exec env%s setsid %s >>%s 2>&1 </dev/null & echo $!",
    shq(opts.cwd or helpers.repo), env, opts.cmd, shq(log))
  local p = assert(io.popen(line))
  local out = p:read("*a") or ""
  p:close()
  local pid = tonumber(out:match("(%d+)"))
  if not pid then error("could not start: " .. opts.cmd .. "\n" .. out, 2) end
  local proc = { pid = pid, kind = opts.kind or "proc", log = log, cmd = opts.cmd, marker = opts.marker }
  R.procs[pid] = proc
  write_file(PID_DIR .. "/" .. pid, string.format("%d %s %s\n", R.runner_pid, R.runner_start,
    opts.marker or opts.cmd))
  return proc
end

--- Stops a process started by `helpers.spawn`: sends `sig` (default TERM) to it, waits up to
-- `timeout` seconds (default 10), then KILLs its process group. Returns true when it exited
-- before the KILL.
-- @tparam table proc
-- @tparam[opt] string sig
-- @tparam[opt] number timeout
function helpers.stop_process(proc, sig, timeout)
  if not proc then return true end
  local graceful = true
  if pid_alive(proc.pid) then
    signal(proc.pid, sig or "TERM")
    if not wait_exit(proc.pid, timeout or 10) then
      graceful = false
      signal(proc.pid, "KILL", true)
      signal(proc.pid, "KILL")
      wait_exit(proc.pid, 5)
    end
  end
  -- Leftover children in its group (e.g. workers whose master died) go too; wait for them so a
  -- spec can assert right away that nothing is left.
  if group_alive(proc.pid) then
    signal(proc.pid, "KILL", true)
    local deadline = now() + 5
    while group_alive(proc.pid) and now() < deadline do socket.sleep(0.02) end
  end
  R.procs[proc.pid] = nil
  os.remove(PID_DIR .. "/" .. proc.pid)
  return graceful
end
local stop_process = helpers.stop_process

--- Waits until `fn()` returns a truthy value; raises after `timeout` seconds (default 5).
-- Errors raised by `fn` count as "not yet"; the last one is included in the timeout message.
-- @tparam function fn
-- @tparam[opt] number timeout seconds
-- @tparam[opt] number step seconds between tries (default 0.05)
-- @return the values `fn` returned
function helpers.wait_until(fn, timeout, step)
  local deadline = now() + (timeout or 5)
  local last_err
  while true do
    local res = { pcall(fn) }
    if res[1] and res[2] then return unpack(res, 2) end
    if not res[1] then last_err = res[2] end
    if now() >= deadline then
      error("wait_until: condition not met within " .. (timeout or 5) .. "s" ..
        (last_err and (": " .. tostring(last_err)) or ""), 2)
    end
    socket.sleep(step or 0.05)
  end
end

--- A TCP port on 127.0.0.1 that is free now (bind port 0, read it, close). Never returns the same
-- port twice in one test run.
-- @treturn number
function helpers.get_free_port()
  for _ = 1, 100 do
    local s = assert(socket.tcp())
    assert(s:bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    port = tonumber(port)
    if port and not R.ports_used[port] then
      R.ports_used[port] = true
      return port
    end
  end
  error("no free port found")
end

--- True when something accepts TCP connections on host:port.
-- @tparam number port
-- @tparam[opt] string host default 127.0.0.1
function helpers.port_open(port, host)
  local s = socket.tcp()
  s:settimeout(0.5)
  local ok = s:connect(host or "127.0.0.1", port)
  s:close()
  return ok ~= nil
end
local port_open = helpers.port_open

-------------------------------------------------------------------------------
-- Fixture processes and the mock upstream
-------------------------------------------------------------------------------

--- The Python 3 interpreter the fixtures run with: /usr/bin/python3 when it exists, else
-- `python3` from PATH.
-- @treturn string
function helpers.python()
  local f = io.open("/usr/bin/python3", "rb")
  if f then f:close(); return "/usr/bin/python3" end
  return "python3"
end

-- True when a line of the file is exactly `line`.
local function log_has_whole_line(path, line)
  local data = read_file(path)
  if not data then return false end
  data = "\n" .. data
  return data:find("\n" .. line .. "\n", 1, true) ~= nil
end

--- Starts a fixture script (a Python server under spec/fixtures/) on ports of its own and waits
-- for the line it prints once it listens. Ports picked here that turn out to be taken (between
-- `get_free_port` and the script's bind) make it start again on new ones, up to 3 times. The
-- process is stopped by `stop_all` like every spawned one.
-- @tparam table opts
--   `script`: the script's path (absolute, or relative to the repository).
--   `ports`: how many free ports to pick (default 1), or a list of given port numbers (one try).
--   `args`: the script's arguments: a function(ports) returning the whole list, or a list that
--     `--port P` for each port is appended to (default: only the `--port` arguments). Each is
--     shell-quoted here.
--   `name`: what errors call it (default the script's file name); `kind`: the process kind (default
--     the script's name without `.py`); `log_name`: a word in its log file's name (each try logs to
--     a new `KIND[-LOG_NAME]-N.log` under the run's directory);
--   `ready`: the whole line that says it is ready (default "ready"); `timeout`: seconds to wait
--     for it (default 10).
-- @treturn table the ports (a list)
-- @treturn table the process `{pid=, log=, ports=, ...}` (see `spawn`)
function helpers.start_fixture(opts)
  local script = assert(opts.script, "start_fixture: `script` is required")
  if script:sub(1, 1) ~= "/" then script = helpers.repo .. "/" .. script end
  local base = script:match("([^/]+)$")
  local name = opts.name or base
  local ready, timeout = opts.ready or "ready", opts.timeout or 10
  local fixed = type(opts.ports) == "table" and opts.ports or nil
  local last_err
  for _ = 1, (fixed and 1 or 3) do
    local ports = {}
    if fixed then
      for i, p in ipairs(fixed) do ports[i] = p end
    else
      for i = 1, (opts.ports or 1) do ports[i] = helpers.get_free_port() end
    end
    local args
    if type(opts.args) == "function" then
      args = opts.args(ports)
    else
      args = {}
      for i, a in ipairs(opts.args or {}) do args[i] = a end
      for _, p in ipairs(ports) do args[#args + 1] = "--port"; args[#args + 1] = p end
    end
    local cmd = { shq(helpers.python()), shq(script) }
    for _, a in ipairs(args) do cmd[#cmd + 1] = shq(a) end
    local kind = opts.kind or base:gsub("%.py$", "")
    local log = string.format("%s/%s%s-%d.log", R.dir, kind,
      opts.log_name and ("-" .. opts.log_name:gsub("[^%w_.-]", "_")) or "", next_seq())
    local proc = helpers.spawn{ kind = kind, cmd = table.concat(cmd, " "), marker = base, log = log }
    proc.ports = ports
    local deadline = now() + timeout
    while true do
      if log_has_whole_line(proc.log, ready) then return ports, proc end
      if not pid_alive(proc.pid) then
        last_err = name .. " exited early; log:\n" .. tail(proc.log)
        break
      end
      if now() >= deadline then
        last_err = name .. " not ready after " .. timeout .. "s; log:\n" .. tail(proc.log)
        break
      end
      socket.sleep(0.02)
    end
    stop_process(proc, "KILL", 2)
  end
  error(last_err, 2)
end

--- Starts spec/fixtures/mock_upstream.py (see that file for its special paths).
-- Several can run at once if they have different names; starting one with the name of a running
-- one replaces it. Readiness is its "ready" line, not a probe connection, so /stats starts at 0.
-- @tparam[opt] table opts `name` (default "mock", echoed as `upstream`), `ports` (count, default 1,
--   or a list of port numbers), `port` (one given port), `timeout` (s, default 10)
-- @treturn table list of ports (`ports[1]` is the first)
-- @treturn table the process `{pid=, log=, ports=, name=}`
function helpers.start_mock_upstream(opts)
  opts = opts or {}
  local name = opts.name or "mock"
  if R.mocks[name] then helpers.stop_mock_upstream(name) end
  local ports, proc = helpers.start_fixture{
    script = helpers.mock_upstream_script, kind = "mock", name = "mock upstream '" .. name .. "'",
    ports = opts.port and { opts.port } or (type(opts.ports) == "table" and opts.ports) or tonumber(opts.ports) or 1,
    args = { "--name", name }, timeout = opts.timeout,
    log_name = name,
  }
  proc.name = name
  R.mocks[name] = proc
  return ports, proc
end

--- Stops the mock upstream called `name`, or all of them when `name` is nil.
-- @tparam[opt] string name
function helpers.stop_mock_upstream(name)
  for n, proc in pairs(R.mocks) do
    if name == nil or n == name then
      stop_process(proc, "TERM", 5)
      R.mocks[n] = nil
    end
  end
end

--- The counters of a running mock upstream: {connections=, requests=, active=} (through a fresh
-- connection, which itself counts 1 connection and 1 request).
-- @tparam number port
-- @tparam[opt] boolean reset zero the counters (GET /stats/reset)
function helpers.mock_stats(port, reset)
  local c = helpers.http_client("127.0.0.1", port, 5000)
  local res, err = c:get(reset and "/stats/reset" or "/stats")
  c:close()
  assert(res, "mock /stats: " .. tostring(err))
  return assert(helpers.json_decode(res.body))
end

-------------------------------------------------------------------------------
-- gw
-------------------------------------------------------------------------------

local function listen_port(v)
  if type(v) == "table" then v = v[1] end
  if type(v) == "table" then return tonumber(v.port), v.host end
  if type(v) ~= "string" or v == "off" then return nil end
  local host, port = v:match("^%[?([^%]]*)%]?:(%d+)")
  if not host then port = v:match("^(%d+)$") end
  return tonumber(port), host
end

local function probe_host(host)
  if not host or host == "" or host == "0.0.0.0" or host == "*" or host == "::" then return "127.0.0.1" end
  return host
end

local function substitute(text, vars)
  return (text:gsub("{([%w_]+)}", function(k)
    if vars[k] ~= nil then return tostring(vars[k]) end
  end))
end

--- Starts gw (`bin/gw run -c FILE`) in the background and waits until its proxy port (and admin
-- port, when on) accept connections. A gw already started by the helpers is stopped first.
-- @tparam table opts
--   `config`: a Lua table (written as JSON). Unless set, gw.listen / gw.admin_listen get free
--     127.0.0.1 ports, gw.workers = 1, gw.error_log = "stderr", _format_version = "3.0".
--   `yaml`: config text written as-is after substituting `{PROXY_PORT}`, `{ADMIN_PORT}` (free ports)
--     and any `{NAME}` from `vars`. Without `{PROXY_PORT}`, give `proxy_port` (or the first
--     "listen: ...:PORT" in the text is used).
--   `plugins_path`: plugin directories (for `config`: sets gw.plugins_path), so a plugin outside
--     the repo loads like a bundled one. A relative directory (here or in `config`'s
--     gw.plugins_path) is relative to the current directory, since the config file is written to
--     a temp dir: `plugins_path = { "my-plugins" }` works from where `gw test` runs.
--   `vars`: extra placeholders for `yaml`; `env`: environment variables; `args`: extra CLI arguments
--   (string or list); `timeout`: seconds to wait (default 10); `wait = false`: do not wait.
-- @treturn table `{proxy_port=, admin_port=, pid=, prefix=, log_file=, config_file=}`
function helpers.start_gw(opts)
  opts = opts or {}
  helpers.stop_gw()
  local bin = io.open(helpers.gw_bin, "rb")
  if not bin then error("bin/gw is not built (run `make build`): " .. helpers.gw_bin, 2) end
  bin:close()

  local prefix = helpers.tmpdir("gw")
  local text, proxy_port, admin_port, proxy_host, admin_host
  if opts.config then
    local cfg = deepcopy(opts.config)
    cfg._format_version = cfg._format_version or "3.0"
    cfg.gw = cfg.gw or {}
    local g = cfg.gw
    if g.listen == nil then
      proxy_port = helpers.get_free_port()
      g.listen = { "127.0.0.1:" .. proxy_port }
    else
      proxy_port, proxy_host = listen_port(g.listen)
    end
    if g.admin_listen == nil then
      admin_port = helpers.get_free_port()
      g.admin_listen = "127.0.0.1:" .. admin_port
    else
      admin_port, admin_host = listen_port(g.admin_listen)
    end
    if g.workers == nil then g.workers = 1 end
    if opts.plugins_path and g.plugins_path == nil then g.plugins_path = opts.plugins_path end
    if type(g.plugins_path) == "table" then
      local dirs = {}
      for i, d in ipairs(g.plugins_path) do
        dirs[i] = (type(d) == "string" and d ~= "" and d:sub(1, 1) ~= "/") and (cwd() .. "/" .. d) or d
      end
      g.plugins_path = dirs
    end
    if g.error_log == nil then g.error_log = "stderr" end
    text = encode(cfg, "  ", 0) .. "\n"
  elseif opts.yaml then
    local vars = deepcopy(opts.vars or {})
    if opts.yaml:find("{PROXY_PORT}", 1, true) and not vars.PROXY_PORT then vars.PROXY_PORT = helpers.get_free_port() end
    if opts.yaml:find("{ADMIN_PORT}", 1, true) and not vars.ADMIN_PORT then vars.ADMIN_PORT = helpers.get_free_port() end
    text = substitute(opts.yaml, vars)
    proxy_port = tonumber(opts.proxy_port or vars.PROXY_PORT)
    admin_port = tonumber(opts.admin_port or vars.ADMIN_PORT)
    if not proxy_port then
      local l = text:match("\n%s*listen:%s*%[?%s*[\"']?([^\"'%],\n]+)") or text:match("^%s*listen:%s*%[?%s*[\"']?([^\"'%],\n]+)")
      proxy_port, proxy_host = listen_port(l)
    end
  else
    error("start_gw: give `config` (table) or `yaml` (text)", 2)
  end

  local file = prefix .. "/gateway.yaml"
  write_file(file, text)
  local log = prefix .. "/gw.log"
  local args = opts.args or ""
  if type(args) == "table" then
    local q = {}
    for i, a in ipairs(args) do q[i] = shq(a) end
    args = table.concat(q, " ")
  end
  local proc = helpers.spawn{
    kind = "gw", env = opts.env, log = log, marker = prefix,
    cmd = string.format("%s run -c %s %s", shq(helpers.gw_bin), shq(file), args),
  }
  local info = {
    pid = proc.pid, proc = proc, prefix = prefix, log_file = log, config_file = file,
    proxy_port = proxy_port, admin_port = admin_port,
    proxy_host = probe_host(proxy_host), admin_host = probe_host(admin_host),
  }
  R.gw, R.last_gw_log = info, log
  if opts.wait == false then return info end

  local timeout = opts.timeout or 10
  local deadline = now() + timeout
  local need = {}
  if proxy_port then need[#need + 1] = { info.proxy_host, proxy_port } end
  if admin_port then need[#need + 1] = { info.admin_host, admin_port } end
  while true do
    if not pid_alive(proc.pid) then
      R.gw = nil
      stop_process(proc, "KILL", 1)
      error("gw exited during startup; log " .. log .. ":\n" .. tail(log), 2)
    end
    local ready = #need > 0
    for _, hp in ipairs(need) do
      if not port_open(hp[2], hp[1]) then ready = false break end
    end
    if ready then return info end
    if #need == 0 then
      -- Nothing to probe: give it a moment and trust it if still alive.
      socket.sleep(0.3)
      if pid_alive(proc.pid) then return info end
    end
    if now() >= deadline then
      R.gw = nil
      stop_process(proc, "KILL", 1)
      error("gw not accepting connections on port " .. tostring(proxy_port) .. " after " .. timeout ..
        "s; log " .. log .. ":\n" .. tail(log), 2)
    end
    socket.sleep(0.02)
  end
end

--- The gw started by `start_gw` (its info table) or nil.
function helpers.gw_info()
  return R.gw
end

--- Stops gw: sends `sig` (default "TERM") and waits up to `timeout` s (default 10), then KILL.
-- @tparam[opt] string sig e.g. "TERM", "QUIT", "INT"
-- @tparam[opt] number timeout
-- @treturn boolean true when gw exited by itself (false: it had to be killed, or none was running)
function helpers.stop_gw(sig, timeout)
  local info = R.gw
  if not info then return false end
  R.gw = nil
  return stop_process(info.proc, sig or "TERM", timeout or 10)
end

--- Sends a signal (e.g. "HUP", "USR1") to the gw master.
-- @tparam string sig
function helpers.signal_gw(sig)
  assert(R.gw, "gw is not running")
  signal(R.gw.pid, sig)
  return true
end

--- Asks gw to reload its configuration (SIGHUP to the master).
function helpers.reload_gw()
  return helpers.signal_gw("HUP")
end

--- Pids of the gw master's child processes (its workers).
-- @treturn table list of pids
function helpers.gw_worker_pids()
  assert(R.gw, "gw is not running")
  local _, out = run("cat /proc/[0-9]*/stat 2>/dev/null")
  local pids = {}
  for line in out:gmatch("[^\n]+") do
    local pid, rest = line:match("^(%d+) .*%)%s+(.*)$")
    if pid then
      local state, ppid = rest:match("^(%S+)%s+(%d+)")
      if tonumber(ppid) == R.gw.pid and state ~= "Z" then pids[#pids + 1] = tonumber(pid) end
    end
  end
  table.sort(pids)
  return pids
end

--- Contents of gw's log (stderr) — of the running gw, or of the last one started.
-- @treturn string
function helpers.gw_log()
  local path = (R.gw and R.gw.log_file) or R.last_gw_log
  return path and read_file(path) or ""
end

--- Empties gw's log file (gw appends to it, so writing continues at the new end).
function helpers.clean_gw_log()
  local path = (R.gw and R.gw.log_file) or R.last_gw_log
  if path then write_file(path, "") end
end

--- Runs `bin/gw check` on a file path or on config text (written to a temp `gateway.yaml`, or
-- `opts.name`; `{PROXY_PORT}`-style placeholders are substituted from `opts.vars`).
-- @tparam string file_or_text
-- @tparam[opt] table opts `name`, `vars`
-- @treturn number exit code
-- @treturn string stdout+stderr
-- @treturn string the checked file's path
function helpers.gw_check(file_or_text, opts)
  opts = opts or {}
  local file = file_or_text
  local f = not file_or_text:find("\n") and io.open(file_or_text, "rb")
  if f then
    f:close()
  else
    file = helpers.tmpdir("check") .. "/" .. (opts.name or "gateway.yaml")
    write_file(file, substitute(file_or_text, opts.vars or {}))
  end
  local rc, out = run("cd " .. shq(helpers.repo) .. " && " .. shq(helpers.gw_bin) .. " check " .. shq(file))
  return rc, out, file
end

-------------------------------------------------------------------------------
-- Configs: plugin configs, READMEs, examples/
-------------------------------------------------------------------------------

-- A value for a failure message (JSON when it can be).
local function show(v)
  local ok, s = pcall(encode, v)
  return ok and s or tostring(v)
end

--- The fenced code blocks of a Markdown text in one language, in order ("" for a bare ``` fence):
-- README specs compile their YAML and run their commands.
function helpers.fenced_blocks(text, lang)
  local out, cur = {}, nil
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if cur then
      if line == "```" then
        if cur.lang == lang then out[#out + 1] = table.concat(cur, "\n") end
        cur = nil
      else
        cur[#cur + 1] = line
      end
    else
      local l = line:match("^```(%w*)$")
      if l then cur = { lang = l } end
    end
  end
  return out
end

--- Validates a plugin configuration the way the gateway does.
-- @param name_or_schema a plugin name (loaded from plugins/ and `dirs`) or a schema table
-- @tparam table config the plugin's `config`
-- @tparam[opt] table dirs extra plugin directories
-- @return the config with defaults filled in, or nil and a list of error strings, e.g.
--   `{ "plugins[0].config.rules: required field missing" }` (a name) or
--   `{ "config.rules: required field missing" }` (a schema table)
function helpers.validate_plugin_config(name_or_schema, config, dirs)
  if type(name_or_schema) == "table" then
    local schema = require "gw.schema"
    local v, errs = schema.validate(name_or_schema, config)
    if v == nil then return nil, schema.format_errors(errs, "config") end
    if name_or_schema.custom_validator then
      local ok, err = name_or_schema.custom_validator(v)
      if not ok then return nil, { "config: " .. tostring(err) } end
    end
    return v
  end
  local gwconfig = require "gw.config"
  local plugins = require "gw.plugins"
  local all = plugins.default_dirs(dirs)
  local compiled, errs = gwconfig.compile({ _format_version = "3.0",
    plugins = { { name = name_or_schema, config = config } } }, nil, "plugin", { plugin_dirs = all })
  if not compiled then
    for i, e in ipairs(errs) do errs[i] = e:gsub("^plugin: ", "") end
    return nil, errs
  end
  return compiled.global_plugins[1].conf
end

--- The errors the gateway gives for a plugin config it refuses, one a line. Fails the test when
-- the config is accepted.
-- @param name_or_schema a plugin name or a schema table (as for `validate_plugin_config`)
-- @tparam table config the plugin's `config`
-- @tparam[opt] table dirs extra plugin directories
-- @treturn string the error lines joined with "\n"
function helpers.plugin_config_errors(name_or_schema, config, dirs)
  local ok, errs = helpers.validate_plugin_config(name_or_schema, config, dirs)
  luassert.is_nil(ok, "the config should be refused: " .. show(config))
  return table.concat(errs, "\n")
end

--- The one error the gateway gives for a plugin config it refuses. Fails the test when the config
-- is accepted or gives more than one error.
-- @param name_or_schema a plugin name or a schema table (as for `validate_plugin_config`)
-- @tparam table config the plugin's `config`
-- @tparam[opt] table dirs extra plugin directories
-- @treturn string the error, e.g. `plugins[0].config.rules: required field missing`
function helpers.plugin_config_error(name_or_schema, config, dirs)
  local ok, errs = helpers.validate_plugin_config(name_or_schema, config, dirs)
  luassert.is_nil(ok, "the config should be refused: " .. show(config))
  luassert.equal(1, #errs, "one error expected for " .. show(config) .. ", got:\n" .. table.concat(errs, "\n"))
  return errs[1]
end

--- A README and its ```yaml blocks: a bundled plugin's (`helpers.readme("cors")` reads
-- plugins/cors/README.md) or any Markdown file (a path with a "/", relative to the repository
-- unless absolute).
-- @tparam string name_or_path
-- @treturn table `{ path =, label =, text =, yamls = { ... } }`: `label` ("cors/README.md") names
--   the file in config errors, `yamls` are its ```yaml blocks in order
function helpers.readme(name_or_path)
  local path, label
  if name_or_path:find("/", 1, true) then
    path = name_or_path:sub(1, 1) == "/" and name_or_path or (helpers.repo .. "/" .. name_or_path)
    label = name_or_path:match("([^/]+/[^/]+)$")
  else
    path = helpers.repo .. "/plugins/" .. name_or_path .. "/README.md"
    label = name_or_path .. "/README.md"
  end
  local text, err = read_file(path)
  if not text then error("readme: " .. tostring(err), 2) end
  return { path = path, label = label, text = text, yamls = helpers.fenced_blocks(text, "yaml") }
end

--- Checks that config texts compile as whole gw configs (`gw.config.load_string`, the loader gw
-- runs on a config file). Raises with the errors of the first that does not, and when there is
-- none to check.
-- @param yamls a list of config texts, one text, or a table from `helpers.readme` (its `yamls`)
-- @tparam[opt] string label the file name in the errors (default: the README's, else "config.yaml")
-- @treturn table the compiled configs
function helpers.assert_yaml_compiles(yamls, label)
  if type(yamls) == "table" and yamls.yamls then
    label = label or yamls.label
    yamls = yamls.yamls
  elseif type(yamls) == "string" then
    yamls = { yamls }
  end
  label = label or "config.yaml"
  if #yamls == 0 then error(label .. ": no yaml block to compile", 2) end
  local config = require "gw.config"
  local compiled = {}
  for i, y in ipairs(yamls) do
    local c, errs = config.load_string(y, label)
    if not c then
      error(string.format("%s: yaml block %d of %d does not compile:\n%s", label, i, #yamls,
        type(errs) == "table" and table.concat(errs, "\n") or tostring(errs)), 2)
    end
    compiled[i] = c
  end
  return compiled
end

-- The lines of a text, and whether it ended with a newline.
local function split_lines(text)
  local lines = {}
  for l in text:gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  local last = text:match("([^\n]+)$")
  if last then lines[#lines + 1] = last end
  return lines, last == nil
end

--- Points a whole config text (a README's example, a file of examples/) at this machine for a
-- test: gw listens on 127.0.0.1 at `{PROXY_PORT}` and `{ADMIN_PORT}`, the placeholders
-- `start_gw{ yaml = }` fills with free ports. The `listen` and `admin_listen` keys of its block
-- `gw:` section (and `workers`, when given) are replaced, or added; a config without a `gw:`
-- section gets one after its `_format_version` line. The rest is kept as written.
--
--     helpers.start_gw{ yaml = helpers.local_gw_yaml(readme.yamls[1], { workers = 1,
--       replace = { ["127%.0%.0%.1:9000"] = "127.0.0.1:" .. up[1] } }) }
--
-- @tparam string yaml
-- @tparam[opt] table opts
--   `workers`: the `workers` setting (default: as the text has it);
--   `replace`: `{ [lua_pattern] = replacement }` applied first, each with string.gsub (in the
--     patterns' sorted order), to point backends at mocks and the like; a pattern that matches
--     nothing raises.
-- @treturn string the config text
-- @treturn table how many times each `replace` pattern matched
function helpers.local_gw_yaml(yaml, opts)
  opts = opts or {}
  local text, counts, patterns = yaml, {}, {}
  for p in pairs(opts.replace or {}) do patterns[#patterns + 1] = p end
  table.sort(patterns)
  for _, p in ipairs(patterns) do
    local n
    text, n = text:gsub(p, opts.replace[p])
    if n == 0 then error("local_gw_yaml: nothing matches " .. p, 2) end
    counts[p] = n
  end
  local keys = { "listen", "admin_listen" }
  local values = { listen = '["127.0.0.1:{PROXY_PORT}"]', admin_listen = '"127.0.0.1:{ADMIN_PORT}"' }
  if opts.workers ~= nil then
    keys[3], values.workers = "workers", tostring(opts.workers)
  end

  local lines, final_newline = split_lines(text)
  local gw_at
  for i, l in ipairs(lines) do
    if l:match("^gw%s*:") then
      if not (l:match("^gw%s*:%s*$") or l:match("^gw%s*:%s+#")) then
        error("local_gw_yaml: the gw: section must be a block (`gw:` alone on its line), not: " .. l, 2)
      end
      gw_at = i
      break
    end
  end
  local out, indent, from = {}, "  ", nil
  if gw_at then
    -- The section: the lines after `gw:` up to the next one at column 0 (blank and comment lines
    -- do not end it); its keys are at the indentation of its first one.
    local stop = #lines + 1
    local child
    for i = gw_at + 1, #lines do
      local l = lines[i]
      if l:match("^[^%s#]") then stop = i break end
      child = child or l:match("^(%s+)[^%s#]")
    end
    indent = child or indent
    for i = 1, gw_at do out[#out + 1] = lines[i] end
    for _, k in ipairs(keys) do out[#out + 1] = indent .. k .. ": " .. values[k] end
    local dropping = false  -- in a replaced key's value (lines indented deeper than the keys)
    for i = gw_at + 1, stop - 1 do
      local l = lines[i]
      local key = l:sub(1, #indent) == indent and l:sub(#indent + 1):match("^([%w_]+)%s*:")
      local blank = l:match("^%s*$") ~= nil
      if key then dropping = values[key] ~= nil
      elseif not (blank or l:match("^" .. indent .. "%s")) then dropping = false end
      if blank or not dropping then out[#out + 1] = l end
    end
    from = stop
  else
    local at = 0
    for i, l in ipairs(lines) do
      if l:match("^_format_version%s*:") then at = i break end
    end
    for i = 1, at do out[#out + 1] = lines[i] end
    out[#out + 1] = "gw:"
    for _, k in ipairs(keys) do out[#out + 1] = indent .. k .. ": " .. values[k] end
    from = at + 1
  end
  for i = from, #lines do out[#out + 1] = lines[i] end
  return table.concat(out, "\n") .. (final_newline and "\n" or ""), counts
end

--- A file of examples/ ready to run in a test: its text through `local_gw_yaml`.
-- @tparam string name the file's name in examples/ ("cors.yaml")
-- @tparam[opt] table opts as for `local_gw_yaml` (`workers`, `replace`)
-- @treturn string the config text for `start_gw{ yaml = }`
-- @treturn table how many times each `replace` pattern matched
function helpers.example_yaml(name, opts)
  local text, err = read_file(helpers.repo .. "/examples/" .. name)
  if not text then error("example_yaml: " .. tostring(err), 2) end
  return helpers.local_gw_yaml(text, opts)
end

-------------------------------------------------------------------------------
-- redis
-------------------------------------------------------------------------------

--- Starts a throwaway redis-server on a free port (no persistence). Replaces a running one.
-- @treturn number port
function helpers.start_redis()
  helpers.stop_redis()
  local port = helpers.get_free_port()
  local dir = helpers.tmpdir("redis")
  local proc = helpers.spawn{
    kind = "redis", marker = "redis-server", log = dir .. "/redis.log",
    cmd = string.format("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no " ..
      "--daemonize no --dir %s", port, shq(dir)),
  }
  local deadline = now() + 10
  while not port_open(port) do
    if not pid_alive(proc.pid) or now() >= deadline then
      stop_process(proc, "KILL", 1)
      error("redis-server did not start; log:\n" .. tail(proc.log), 2)
    end
    socket.sleep(0.02)
  end
  proc.port = port
  R.redis = proc
  return port
end

--- Stops the redis-server started by `start_redis`.
function helpers.stop_redis()
  if R.redis then
    stop_process(R.redis, "TERM", 5)
    R.redis = nil
  end
end

--- Stops everything the helpers started (gw, mock upstreams, redis, spawned processes).
function helpers.stop_all()
  helpers.stop_gw()
  helpers.stop_mock_upstream()
  helpers.stop_redis()
  for _, proc in pairs(R.procs) do stop_process(proc, "TERM", 5) end
end

-- Safety nets (see the module comment): busted's "exit" event, and a __gc sentinel that fires when
-- the Lua state is closed. Installed once per OS process.
if not R.safety then
  R.safety = true
  local function cleanup()
    pcall(helpers.stop_all)
  end
  local busted = package.loaded["busted.init"] or package.loaded["busted"]
  if type(busted) == "table" then
    pcall(function()
      if busted.subscribe then busted.subscribe({ "exit" }, function() cleanup(); return nil, true end) end
    end)
  end
  if newproxy then  -- Lua 5.1 / LuaJIT: only userdata have __gc
    R.sentinel = newproxy(true)
    getmetatable(R.sentinel).__gc = cleanup
  else
    R.sentinel = setmetatable({}, { __gc = cleanup })
  end
end

-------------------------------------------------------------------------------
-- HTTP client
-------------------------------------------------------------------------------

local header_mt = {
  __index = function(t, k)
    if type(k) == "string" then return rawget(t, k:lower()) end
  end,
  __newindex = function(t, k, v)
    rawset(t, type(k) == "string" and k:lower() or k, v)
  end,
}

--- A headers table with case-insensitive lookup (keys are stored lowercased; repeated headers
-- become a list of values).
function helpers.headers_table()
  return setmetatable({}, header_mt)
end

local function url_escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

--- Encodes a table as application/x-www-form-urlencoded (sorted keys; list values repeat the key).
function helpers.encode_args(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "table" then
      for _, x in ipairs(v) do parts[#parts + 1] = url_escape(k) .. "=" .. url_escape(x) end
    elseif v == true then
      parts[#parts + 1] = url_escape(k)
    else
      parts[#parts + 1] = url_escape(k) .. "=" .. url_escape(v)
    end
  end
  return table.concat(parts, "&")
end

local Client = {}
Client.__index = Client

--- Opens an HTTP/1.1 client connection (raises when it cannot connect).
-- @tparam string host
-- @tparam number port
-- @tparam[opt] number timeout per socket operation, in milliseconds (default 10000)
-- @treturn table client
function helpers.http_client(host, port, timeout)
  if type(host) == "table" then host, port, timeout = host.host, host.port, host.timeout end
  local c = setmetatable({ host = host or "127.0.0.1", port = assert(tonumber(port), "http_client: port"),
                           timeout = timeout or 10000 }, Client)
  local ok, err = c:connect()
  if not ok then
    error(string.format("http_client: cannot connect to %s:%s: %s", c.host, tostring(port), tostring(err)), 2)
  end
  return c
end

--- (Re)connects; returns true or nil, err.
function Client:connect()
  self:close()
  local sock = socket.tcp()
  sock:settimeout(self.timeout / 1000)
  local ok, err = sock:connect(self.host, self.port)
  if not ok then return nil, err end
  sock:setoption("tcp-nodelay", true)
  self.sock = sock
  self.connections = (self.connections or 0) + 1
  return true
end

--- Changes the per-operation timeout (ms).
function Client:set_timeout(ms)
  self.timeout = ms
  if self.sock then self.sock:settimeout(ms / 1000) end
end

--- Closes the connection (the next request opens a new one).
function Client:close()
  if self.sock then self.sock:close() end
  self.sock = nil
  return true
end

local function fail(self, err)
  self:close()
  self.last_error = err
  R.last_http_error = err
  return nil, err
end

--- Sends raw bytes on the connection (connecting first if needed); returns true or nil, err.
-- @tparam string bytes
function Client:raw(bytes)
  if not self.sock then
    local ok, err = self:connect()
    if not ok then return fail(self, err) end
  end
  local ok, err = self.sock:send(bytes)
  if not ok then return fail(self, err) end
  return true
end

--- Reads until the peer closes the connection; returns everything read (or nil, err on timeout,
-- with what was read as third value).
function Client:read_all()
  if not self.sock then return nil, "closed" end
  local data, err, partial = self.sock:receive("*a")
  self:close()
  if not data then return nil, err, partial end
  return data
end

local function receive_exact(sock, n, sink)
  local parts, left = {}, n
  while left > 0 do
    local want = left < 65536 and left or 65536
    local data, err, partial = sock:receive(want)
    data = data or partial
    if data and #data > 0 then
      left = left - #data
      if sink then sink(data) else parts[#parts + 1] = data end
    end
    if err then return nil, err, table.concat(parts) end
  end
  return table.concat(parts)
end

--- Reads one response from the connection.
-- @tparam[opt] table opts `method` (of the request; "HEAD" means no body), `body_handler`
--   (function(chunk) receiving the body instead of buffering it), `discard_body` (count only)
-- @treturn table res `{status=, reason=, version=, headers=, raw_headers=, body=, body_size=,
--   trailers=, informational=, read_body=}` or nil, err
function Client:read_response(opts)
  opts = opts or {}
  local sock = self.sock
  if not sock then return fail(self, "closed") end
  local res = { headers = setmetatable({}, header_mt), raw_headers = {}, trailers = setmetatable({}, header_mt),
                informational = {}, body_size = 0 }
  while true do
    local line, err = sock:receive("*l")
    if not line then return fail(self, err) end
    local version, status, reason = line:match("^HTTP/(%d%.%d) (%d%d%d) ?(.*)$")
    if not version then return fail(self, "bad status line: " .. line) end
    res.version, res.status, res.reason = version, tonumber(status), reason
    res.status_line = line
    local headers, raw = setmetatable({}, header_mt), {}
    while true do
      line, err = sock:receive("*l")
      if not line then return fail(self, err) end
      if line == "" then break end
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      if not name then return fail(self, "bad header line: " .. line) end
      raw[#raw + 1] = { name, value }
      local old = headers[name]
      if old == nil then headers[name] = value
      elseif type(old) == "table" then old[#old + 1] = value
      else headers[name] = { old, value } end
    end
    res.headers, res.raw_headers = headers, raw
    if res.status >= 200 or res.status == 101 then break end
    res.informational[#res.informational + 1] = res.status  -- 100 Continue etc.: read the next head
  end

  local h = res.headers
  local function hval(name)
    local v = h[name]
    if type(v) == "table" then v = table.concat(v, ", ") end
    return v and v:lower()
  end
  local conn = hval("connection") or ""
  local close = conn:find("close", 1, true) ~= nil or (res.version == "1.0" and not conn:find("keep-alive", 1, true))

  local parts = {}
  local sink
  if opts.body_handler then
    sink = function(d) res.body_size = res.body_size + #d; opts.body_handler(d) end
  elseif opts.discard_body then
    sink = function(d) res.body_size = res.body_size + #d end
  else
    sink = function(d) res.body_size = res.body_size + #d; parts[#parts + 1] = d end
  end

  local method = (opts.method or "GET"):upper()
  local te = hval("transfer-encoding")
  if method == "HEAD" or res.status < 200 or res.status == 204 or res.status == 304 then
    -- no body
  elseif te and te:find("chunked", 1, true) then
    while true do
      local line, err = sock:receive("*l")
      if not line then return fail(self, "chunk size: " .. tostring(err)) end
      local size = tonumber(line:match("^%s*(%x+)"), 16)
      if not size then return fail(self, "bad chunk size line: " .. line) end
      if size == 0 then break end
      local _, err2 = receive_exact(sock, size, sink)
      if err2 then return fail(self, "chunk body: " .. err2) end
      local crlf, err3 = sock:receive("*l")
      if crlf ~= "" then return fail(self, "missing CRLF after chunk: " .. tostring(crlf or err3)) end
    end
    while true do  -- trailers
      local line, err = sock:receive("*l")
      if not line then return fail(self, "trailers: " .. tostring(err)) end
      if line == "" then break end
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      if name then res.trailers[name] = value end
    end
  elseif h["content-length"] then
    local n = tonumber(type(h["content-length"]) == "table" and h["content-length"][1] or h["content-length"])
    if not n then return fail(self, "bad content-length") end
    local _, err = receive_exact(sock, n, sink)
    if err then
      res.body = table.concat(parts)
      self:close()
      return nil, "body: " .. err .. " after " .. res.body_size .. " of " .. n .. " bytes", res
    end
  else
    -- Close-delimited body.
    close = true
    while true do
      local data, err, partial = sock:receive(65536)
      data = data or partial
      if data and #data > 0 then sink(data) end
      if err == "closed" then break end
      if err then
        res.body = table.concat(parts)
        self:close()
        return nil, "body: " .. err, res
      end
    end
  end

  res.body = table.concat(parts)
  res.read_body = function() return res.body end
  if close then self:close() end
  return res
end

--- Sends a request and reads its response.
-- @tparam table opts
--   `method` (default GET), `path` (default "/"), `query` (table or string), `headers` (table;
--   values may be lists to repeat a header), `body` (string; a table is encoded as JSON, or as a form
--   when Content-Type is application/x-www-form-urlencoded; a function returning successive
--   chunks then nil is sent chunked), `chunks` (list of strings sent with Transfer-Encoding: chunked),
--   `body_handler` / `discard_body` (see read_response).
--   A Host header ("host:port") and Content-Length are added unless given.
-- @treturn table res (see read_response) or nil, err
function Client:send(opts)
  opts = opts or {}
  local method = (opts.method or "GET"):upper()
  local path = opts.path or "/"
  if opts.query then
    local q = type(opts.query) == "table" and helpers.encode_args(opts.query) or tostring(opts.query)
    if q ~= "" then path = path .. (path:find("?", 1, true) and "&" or "?") .. q end
  end
  local headers = setmetatable({}, header_mt)
  local order = {}
  for k, v in pairs(opts.headers or {}) do
    if headers[k] == nil then order[#order + 1] = k end
    headers[k] = v
  end
  table.sort(order, function(a, b) return a:lower() < b:lower() end)
  local function add(name, value)
    if headers[name] == nil then
      headers[name] = value
      order[#order + 1] = name
    end
  end
  local default_port = (self.port == 80)
  add("Host", default_port and self.host or (self.host .. ":" .. self.port))

  local body, chunks = opts.body, opts.chunks
  if type(body) == "table" then
    local ct = headers["content-type"]
    if type(ct) == "string" and ct:lower():find("x-www-form-urlencoded", 1, true) then
      body = helpers.encode_args(body)
    else
      add("Content-Type", "application/json")
      body = encode(body)
    end
  elseif type(body) == "function" then
    chunks, body = body, nil
  end
  if chunks then
    if headers["content-length"] == nil then add("Transfer-Encoding", "chunked") end
  elseif body ~= nil then
    if headers["transfer-encoding"] == nil then add("Content-Length", #body) end
  elseif method == "POST" or method == "PUT" or method == "PATCH" then
    if headers["transfer-encoding"] == nil then add("Content-Length", 0) end
  end

  local buf = { method, " ", path, " HTTP/1.1\r\n" }
  for _, name in ipairs(order) do
    local v = headers[name]
    if v ~= false then
      if type(v) == "table" then
        for _, x in ipairs(v) do buf[#buf + 1] = name .. ": " .. tostring(x) .. "\r\n" end
      else
        buf[#buf + 1] = name .. ": " .. tostring(v) .. "\r\n"
      end
    end
  end
  buf[#buf + 1] = "\r\n"
  if body then buf[#buf + 1] = body end
  local ok, err = self:raw(table.concat(buf))
  if not ok then return nil, err end

  if chunks then
    local chunked = headers["transfer-encoding"] ~= nil
    local i = 0
    local next_chunk = type(chunks) == "function" and chunks or function()
      i = i + 1
      return chunks[i]
    end
    while true do
      local c = next_chunk()
      if c == nil then break end
      if #c > 0 then
        ok, err = self:raw(chunked and (string.format("%x\r\n", #c) .. c .. "\r\n") or c)
        if not ok then return nil, err end
      end
    end
    if chunked then
      ok, err = self:raw("0\r\n\r\n")
      if not ok then return nil, err end
    end
  end
  return self:read_response{ method = method, body_handler = opts.body_handler, discard_body = opts.discard_body }
end

for _, m in ipairs({ "get", "post", "put", "patch", "delete", "head", "options" }) do
  --- `client:get(path, opts)` etc.: `client:send` with `method` and `path` set.
  Client[m] = function(self, path, opts)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.method, o.path = m:upper(), path
    return self:send(o)
  end
end

--- A client to the proxy port of the gw started by `start_gw`.
-- @tparam[opt] number timeout ms
function helpers.proxy_client(timeout)
  assert(R.gw and R.gw.proxy_port, "proxy_client: gw is not running (helpers.start_gw)")
  return helpers.http_client(R.gw.proxy_host, R.gw.proxy_port, timeout)
end

--- A client to the admin port of the gw started by `start_gw`.
-- @tparam[opt] number timeout ms
function helpers.admin_client(timeout)
  assert(R.gw and R.gw.admin_port, "admin_client: gw is not running or admin_listen is off")
  return helpers.http_client(R.gw.admin_host, R.gw.admin_port, timeout)
end

-------------------------------------------------------------------------------
-- Assertions
-------------------------------------------------------------------------------

local function is_response(res)
  return type(res) == "table" and res.status ~= nil and res.headers ~= nil
end

local function dump_headers(h)
  local keys, out = {}, {}
  for k in pairs(h or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = h[k]
    out[#out + 1] = "  " .. k .. ": " .. (type(v) == "table" and table.concat(v, " | ") or tostring(v))
  end
  return table.concat(out, "\n")
end

local function no_response_msg(res)
  return "no response (" .. tostring(res) .. ")" ..
    (R.last_http_error and ("; last client error: " .. tostring(R.last_http_error)) or "")
end

--- `assert.res_status(expected, res)`: checks the status; returns the body. On mismatch the
-- message includes the body.
local function res_status(_, args)
  local expected, res = args[1], args[2]
  args.nofmt = { true, true, true }
  args.n = 3
  if not is_response(res) then
    args[1], args[2], args[3] = tostring(expected), no_response_msg(res), ""
    return false
  end
  local body = res.body or ""
  args[1], args[2], args[3] = tostring(expected), tostring(res.status), body
  return tonumber(expected) == res.status, { body }
end
say:set("assertion.res_status.positive", "Invalid response status code.\nExpected: %s\nReceived: %s\nBody:\n%s")
say:set("assertion.res_status.negative", "Response status code should not be %s (received %s).\nBody:\n%s")
luassert:register("assertion", "res_status", res_status,
  "assertion.res_status.positive", "assertion.res_status.negative")

--- `assert.response(res)` modifier: following assertions look at this response.
local function modifier_response(state, args)
  if not args then return state end  -- luassert re-invokes modifiers without arguments
  local res = args[1]
  if not is_response(res) then error("assert.response(): expected a response, got " .. no_response_msg(res), 3) end
  rawset(state, "gw_response", res)
  rawset(state, "gw_request", nil)
  return state
end
luassert:register("modifier", "response", modifier_response)

--- `assert.request(res)` modifier: following assertions look at the request as echoed by the
-- mock upstream in the JSON body of `res`.
local function modifier_request(state, args)
  if not args then return state end
  local res = args[1]
  if not is_response(res) then error("assert.request(): expected a response, got " .. no_response_msg(res), 3) end
  local echo, err = helpers.json_decode(res.body)
  if type(echo) ~= "table" or type(echo.headers) ~= "table" then
    error("assert.request(): the response is not a mock upstream echo (status " .. tostring(res.status) ..
      (err and (", " .. err) or "") .. "):\n" .. tostring(res.body), 3)
  end
  rawset(state, "gw_request", echo)
  rawset(state, "gw_response", nil)
  return state
end
luassert:register("modifier", "request", modifier_request)

--- `assert.response(res).has.header(name)` / `assert.request(res).has.header(name)`: returns the
-- header value (a list for a repeated header). Names are case-insensitive.
local function header(state, args)
  local name = args[1]
  local req, res = rawget(state, "gw_request"), rawget(state, "gw_response")
  args.nofmt = { true, true }
  args.n = 2
  if type(name) ~= "string" then error("header(): the header name must be a string", 3) end
  local value, where
  if req then
    for k, v in pairs(req.headers) do
      if k:lower() == name:lower() then value = v end
    end
    where = "request headers (as echoed by the upstream):\n" .. dump_headers(req.headers)
  elseif res then
    value = res.headers[name]
    where = "response headers:\n" .. dump_headers(res.headers)
  else
    error("header(): use assert.response(res).has.header(...) or assert.request(res).has.header(...)", 3)
  end
  args[1], args[2] = name, where
  return value ~= nil, { value }
end
say:set("assertion.res_header.positive", "Expected header '%s' in the %s")
say:set("assertion.res_header.negative", "Expected no header '%s' in the %s")
luassert:register("assertion", "header", header, "assertion.res_header.positive", "assertion.res_header.negative")

--- `assert.jsonbody(res)`, `assert.response(res).has.jsonbody()`: the decoded JSON body.
-- `assert.request(res).has.jsonbody()`: the request body (echoed by the upstream) decoded as JSON.
local function jsonbody(state, args)
  local req, res = rawget(state, "gw_request"), rawget(state, "gw_response")
  local body, what
  if req then
    body, what = req.body, "request body (as echoed by the upstream)"
  else
    res = res or args[1]
    if not is_response(res) then
      args[1], args.n, args.nofmt = no_response_msg(res), 1, { true }
      return false
    end
    body, what = res.body, "response body (status " .. tostring(res.status) .. ")"
  end
  local v, err = helpers.json_decode(body)
  args.nofmt = { true, true, true }
  args.n = 3
  args[1], args[2], args[3] = what, tostring(err), tostring(body)
  return v ~= nil, { v }
end
say:set("assertion.res_jsonbody.positive", "Expected the %s to be JSON (%s):\n%s")
say:set("assertion.res_jsonbody.negative", "Expected the %s not to be JSON (%s):\n%s")
luassert:register("assertion", "jsonbody", jsonbody, "assertion.res_jsonbody.positive",
  "assertion.res_jsonbody.negative")

--- `assert.response(res).has.status(n)`: checks the status; returns the body.
local function status(state, args)
  local res = rawget(state, "gw_response")
  if not res then error("status(): use assert.response(res).has.status(n)", 3) end
  return res_status(state, { args[1], res, n = 2 })
end
luassert:register("assertion", "status", status, "assertion.res_status.positive", "assertion.res_status.negative")

--- `assert.request(res).has.queryparam(name)`: a query argument of the echoed request (string, or
-- true for a bare key, a list when repeated).
local function queryparam(state, args)
  local req = rawget(state, "gw_request")
  if not req then error("queryparam(): use assert.request(res).has.queryparam(name)", 3) end
  local name = args[1]
  local found
  for pair in (req.query or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    local unesc = function(s) return (s:gsub("%+", " "):gsub("%%(%x%x)", function(x) return string.char(tonumber(x, 16)) end)) end
    k = unesc(k)
    if k == name then
      v = pair:find("=", 1, true) and unesc(v) or true
      if found == nil then found = v
      elseif type(found) == "table" then found[#found + 1] = v
      else found = { found, v } end
    end
  end
  args.nofmt = { true, true }
  args.n = 2
  args[1], args[2] = tostring(name), tostring(req.query)
  return found ~= nil, { found }
end
say:set("assertion.req_queryparam.positive", "Expected query argument '%s' in the request query: %s")
say:set("assertion.req_queryparam.negative", "Expected no query argument '%s' in the request query: %s")
luassert:register("assertion", "queryparam", queryparam, "assertion.req_queryparam.positive",
  "assertion.req_queryparam.negative")

--- `assert.logfile([path])` modifier: following `line` assertions read that file (default: gw's log).
local function modifier_logfile(state, args)
  if not args then return state end
  rawset(state, "gw_logfile", args[1] or (R.gw and R.gw.log_file) or R.last_gw_log or "")
  return state
end
luassert:register("modifier", "logfile", modifier_logfile)

--- `assert.logfile().has.line(pattern, plain, timeout)`: waits up to `timeout` seconds (default
-- 10; 0 for negated checks unless given) for a line matching `pattern` (a Lua pattern, or plain
-- text when `plain` is true). Returns the matching line.
local function line(state, args)
  local path = rawget(state, "gw_logfile") or (R.gw and R.gw.log_file) or R.last_gw_log or ""
  local pattern, plain, timeout = args[1], args[2], args[3]
  if timeout == nil then timeout = state.mod and 10 or 0 end
  local deadline = now() + timeout
  local found
  repeat
    local data = read_file(path) or ""
    for l in data:gmatch("[^\n]+") do
      if l:find(pattern, 1, plain) then found = l break end
    end
    if found or now() >= deadline then break end
    socket.sleep(0.05)
  until false
  args.nofmt = { true, true, true }
  args.n = 3
  args[1], args[2], args[3] = tostring(pattern), path, tail(path, 20)
  return found ~= nil, { found }
end
say:set("assertion.log_line.positive", "Expected a line matching '%s' in %s; its tail:\n%s")
say:set("assertion.log_line.negative", "Expected no line matching '%s' in %s; its tail:\n%s")
luassert:register("assertion", "line", line, "assertion.log_line.positive", "assertion.log_line.negative")

return helpers
