-- docs/plugins.md, followed word for word: the tutorial cannot drift from the code.
--
-- The page is read in order. A fenced block right under a line `File: PATH` is written to PATH;
-- every `$ CMD` line of a ```sh block is run with sh. The lines under a command (up to the next
-- `$` line; blank lines at the end dropped) are its expected output, matched against what it
-- printed (stdout and stderr, CR dropped) line by line: `...` inside a line stands for any text,
-- a line that is only `...` for any number of lines. A command with no such lines only has to
-- exit 0.
--
-- Everything runs in a copy of this repository (working tree with its bin/gw and build/, no .git,
-- none of the files the page creates), the reader's "root of a clone", as the current directory.
-- `bin/gw run` ("in another terminal") is started in the background, its log checked against its
-- expected lines, and it keeps running for the rest of the page; at the end it gets SIGINT
-- (Ctrl-C). Ports 8000 and 8001 are replaced everywhere by free ports.
--
-- Beyond each command's own output, the spec checks what the tutorial's last step claims: a
-- File block rewrote a file while gw was running, a reload followed, the same command printed
-- something else before and after it, and the gw master that answered before the reload is the
-- one that answered after it (same pid, same start time, generation 2 in GET /status).
local helpers = require "spec.helpers"
local socket = require "socket"

local shq = helpers.shell_quote
local DOC_NAME = "docs/plugins.md"
local DOC = helpers.repo .. "/" .. DOC_NAME

-------------------------------------------------------------------------------
-- The page, as steps
-------------------------------------------------------------------------------

local function parse(text)
  local lines = {}
  for l in (text:gsub("\r", "") .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  local steps, i = {}, 1
  while i <= #lines do
    local lang = lines[i]:match("^```(%S*)%s*$")
    if lines[i]:match("^File:") and not (lines[i + 1] or ""):match("^```") then
      error(DOC_NAME .. ":" .. i .. ": a `File:` line must be right above a fenced block")
    end
    if lang then
      local open = i
      local file = i > 1 and lines[i - 1]:match("^File: (%S+)%s*$")
      local body = {}
      i = i + 1
      while i <= #lines and not lines[i]:match("^```%s*$") do
        body[#body + 1] = lines[i]
        i = i + 1
      end
      if i > #lines then error(DOC_NAME .. ":" .. open .. ": fenced block never closed") end
      if file then
        assert(not file:match("^/") and not file:match("%.%."), DOC_NAME .. ":" .. (open - 1) ..
          ": File: paths are relative to the clone: " .. file)
        steps[#steps + 1] = { kind = "file", path = file, text = table.concat(body, "\n") .. "\n", line = open - 1 }
      elseif lang == "sh" then
        local cur
        for k, l in ipairs(body) do
          local cmd = l:match("^%$ (.+)$")
          if cmd then
            cur = { kind = "cmd", cmd = cmd, expect = {}, line = open + k }
            steps[#steps + 1] = cur
          elseif cur then
            cur.expect[#cur.expect + 1] = l
          elseif l:match("%S") then
            error(DOC_NAME .. ":" .. (open + k) .. ": a ```sh block starts with a `$ ` command line")
          end
        end
      end
    end
    i = i + 1
  end
  for _, s in ipairs(steps) do
    if s.expect then
      while #s.expect > 0 and not s.expect[#s.expect]:match("%S") do s.expect[#s.expect] = nil end
    end
  end
  return steps
end

-------------------------------------------------------------------------------
-- Expected output
-------------------------------------------------------------------------------

local function esc(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

-- One expected line against one output line; `...` matches any text.
local function line_matches(exp, got)
  local pieces, pos = {}, 1
  while true do
    local a, b = exp:find("...", pos, true)
    if not a then pieces[#pieces + 1] = esc(exp:sub(pos)) break end
    pieces[#pieces + 1] = esc(exp:sub(pos, a - 1))
    pos = b + 1
  end
  return got:find("^" .. table.concat(pieces, ".-") .. "$") ~= nil
end

-- The whole output against the expected lines; a `...` line matches any number of lines.
local function lines_match(exp, out, i, j)
  i, j = i or 1, j or 1
  if i > #exp then return j > #out end
  if exp[i] == "..." then
    for k = j, #out + 1 do
      if lines_match(exp, out, i + 1, k) then return true end
    end
    return false
  end
  return j <= #out and line_matches(exp[i], out[j]) and lines_match(exp, out, i + 1, j + 1)
end

local function split_lines(s)
  local out = {}
  for l in (s:gsub("\r", "") .. "\n"):gmatch("([^\n]*)\n") do out[#out + 1] = l end
  while #out > 0 and out[#out] == "" do out[#out] = nil end
  return out
end

-------------------------------------------------------------------------------
-- Processes, ports
-------------------------------------------------------------------------------

local function start_time(pid)
  local data = helpers.read_file("/proc/" .. pid .. "/stat")
  local rest = data and data:match("^.*%)%s+(.*)$")
  if not rest then return nil end
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  if f[1] == "Z" then return nil end
  return f[20]
end

-- A free port kept bound (without SO_REUSEADDR) until release, so that the mock upstreams and
-- gw instances the tutorial's own specs start meanwhile cannot take it.
local function reserve_port()
  local s = assert(socket.tcp())
  assert(s:bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  return tonumber(port), s
end

local function admin_status(port)
  local c = helpers.http_client("127.0.0.1", port, 5000)
  local res, err = c:get("/status")
  c:close()
  assert(res, "GET /status: " .. tostring(err))
  assert.res_status(200, res)
  return assert(helpers.json_decode(res.body))
end

-------------------------------------------------------------------------------

local steps = parse(assert(helpers.read_file(DOC)))

describe("the plugin tutorial,", function()
  local dir, proxy_port, admin_port, reserved
  local gw                       -- { proc =, pid =, start = } once `bin/gw run` is started
  local failed_at                -- the first step that failed: the later ones cannot run
  local history = {}             -- every command run while gw ran: { cmd =, out =, gen = }
  local rewritten = {}           -- files written a second time while gw ran
  local reloads = 0

  local function subst(s)
    s = s:gsub("%f[%d]8000%f[%D]", tostring(proxy_port))
    s = s:gsub("%f[%d]8001%f[%D]", tostring(admin_port))
    return s
  end

  local function generation()
    return admin_status(admin_port).generation
  end

  lazy_setup(function()
    assert(#steps > 0, "no steps found in " .. DOC)
    -- the reader's clone: this working tree, mtimes kept (so `make build` has nothing to do when
    -- bin/gw is current), without .git and without anything the page itself creates
    dir = helpers.tmpdir("tutorial")
    local tops = { [".git"] = true }
    for _, s in ipairs(steps) do
      if s.kind == "file" then tops[s.path:match("^[^/]+")] = true end
    end
    local excl = {}
    for t in pairs(tops) do excl[#excl + 1] = "--exclude=" .. shq("./" .. t) end
    table.sort(excl)
    local rc, out = helpers.execute("cd " .. shq(helpers.repo) .. " && tar -cf - " .. table.concat(excl, " ") ..
      " . | tar -xf - -C " .. shq(dir))
    assert.equal(0, rc, out)
    assert.truthy(helpers.read_file(dir .. "/bin/gw"), "bin/gw is not built")
    local p1, s1 = reserve_port()
    local p2, s2 = reserve_port()
    proxy_port, admin_port, reserved = p1, p2, { s1, s2 }
  end)

  lazy_teardown(function()
    for _, s in ipairs(reserved or {}) do s:close() end
    if gw then helpers.stop_process(gw.proc, "KILL", 5) end
    helpers.stop_all()
  end)

  local function run_step(s)
    if s.kind == "file" then
      local path = dir .. "/" .. s.path
      local existed = helpers.read_file(path) ~= nil
      local rc, out = helpers.execute("mkdir -p " .. shq(path:match("^(.*)/") or dir))
      assert.equal(0, rc, out)
      helpers.write_file(path, subst(s.text))
      if existed and gw then rewritten[s.path] = true end
      return
    end

    local cmd = subst(s.cmd)
    local expect = {}
    for i, l in ipairs(s.expect) do expect[i] = subst(l) end

    if cmd:match("^bin/gw run") then
      -- "in another terminal": in the background, until the end of the page
      assert.is_nil(gw, "bin/gw run twice")
      for _, sock in ipairs(reserved) do sock:close() end
      reserved = {}
      local proc = helpers.spawn{ kind = "gw", cmd = cmd, cwd = dir, marker = cmd,
                                  log = dir .. "-gw.log" }
      gw = { proc = proc, pid = proc.pid }
      expect[#expect + 1] = "..."   -- the log goes on
      local text
      helpers.wait_until(function()
        text = helpers.read_file(proc.log) or ""
        if not start_time(proc.pid) then error("gw exited:\n" .. text) end
        return lines_match(expect, split_lines(text)) and helpers.port_open(proxy_port) and
          helpers.port_open(admin_port)
      end, 15)
      gw.start = start_time(proc.pid)
      assert.equal(tostring(proc.pid), text:match("master pid (%d+)"))
      assert.equal(1, generation())
      return
    end

    local gen_before
    if gw then
      assert.equal(gw.start, start_time(gw.pid), "the gw master is not running any more")
      gen_before = generation()
    end
    local rc, out = helpers.execute("cd " .. shq(dir) .. " && timeout 300 sh -c " .. shq(cmd) .. " </dev/null")
    assert(rc == 0, DOC_NAME .. ":" .. s.line .. ": `" .. cmd .. "` exited with " .. rc .. ":\n" .. out)
    if #expect > 0 then
      assert(lines_match(expect, split_lines(out)), DOC_NAME .. ":" .. s.line .. ": `" .. cmd ..
        "` printed:\n" .. out .. "\n-- which does not match what the page shows:\n" .. table.concat(expect, "\n"))
    end
    if gw then
      assert.equal(gw.start, start_time(gw.pid), "`" .. cmd .. "` left the gw master stopped or replaced")
      local gen = generation()
      if gen ~= gen_before then
        reloads = reloads + 1
        -- the reader types the next command well after the old workers stopped accepting;
        -- POST /reload answers before that, so wait for it here
        helpers.wait_until(function()
          for _, w in ipairs(admin_status(admin_port).workers) do
            if w.generation ~= gen then return false end
          end
          return true
        end, 15)
      end
      history[#history + 1] = { cmd = cmd, out = out, gen = gen }
    end
  end

  for _, s in ipairs(steps) do
    local title = DOC_NAME .. ":" .. s.line .. ": " .. (s.kind == "file" and ("File: " .. s.path) or ("$ " .. s.cmd))
    it(title, function()
      if failed_at then
        pending("not run: " .. failed_at .. " failed")
        return
      end
      failed_at = DOC_NAME .. ":" .. s.line
      run_step(s)
      failed_at = nil
    end)
  end

  it("the page edited a file and reloaded it, and the same gw master served the new behaviour", function()
    if failed_at then
      pending("not run: " .. failed_at .. " failed")
      return
    end
    assert.truthy(gw, "the page never runs `bin/gw run`")
    assert.truthy(next(rewritten), "no File block rewrites a file while gw runs")
    assert.is_true(reloads >= 1, "no command reloads gw")
    local changed
    for _, a in ipairs(history) do
      for _, b in ipairs(history) do
        if a.cmd == b.cmd and b.gen > a.gen and a.out ~= b.out then changed = a.cmd end
      end
    end
    assert.truthy(changed, "no command prints something else after the reload than before it")
    assert.equal(gw.start, start_time(gw.pid))
    local st = admin_status(admin_port)
    assert.equal(gw.pid, st.pid)
    assert.equal(1 + reloads, st.generation)
    -- Ctrl-C in gw's terminal
    assert.is_true(helpers.stop_process(gw.proc, "INT", 10), "gw did not exit on SIGINT")
    local log = helpers.read_file(gw.proc.log) or ""
    gw = nil
    assert.is_nil(log:match("%[error%][^\n]*") or log:match("%[crit%][^\n]*") or log:match("%[alert%][^\n]*"), log)
  end)
end)
