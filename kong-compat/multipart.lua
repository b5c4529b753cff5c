-- multipart (gw kong-compat): multipart/form-data bodies, the API of lua-multipart that Kong
-- uses: multipart(body, content_type) -> object with :get(name) (a part: name, value, headers),
-- :get_all(), :get_all_with_arrays(), :set_simple(name, value [, filename [, content_type]]),
-- :delete(name), :tostring().
local find, sub, lower, format = string.find, string.sub, string.lower, string.format
local concat = table.concat

local MP = {}
MP.__index = MP

local function boundary_of(ct)
  if type(ct) ~= "string" then return nil end
  local b = ct:match("[Bb][Oo][Uu][Nn][Dd][Aa][Rr][Yy]%s*=%s*\"([^\"]+)\"")
         or ct:match("[Bb][Oo][Uu][Nn][Dd][Aa][Rr][Yy]%s*=%s*([^;%s]+)")
  return b
end

local function parse_part(raw)
  local head_end = find(raw, "\r\n\r\n", 1, true)
  local head, value
  if head_end then
    head, value = sub(raw, 1, head_end - 1), sub(raw, head_end + 4)
  else
    head, value = raw, ""
  end
  local headers, name, filename = {}, nil, nil
  for line in (head .. "\r\n"):gmatch("(.-)\r\n") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then
      headers[#headers + 1] = line
      if lower(k) == "content-disposition" then
        name = v:match('[;%s]name="([^"]*)"') or v:match("[;%s]name=([^;%s]+)")
        filename = v:match('filename="([^"]*)"')
      end
    end
  end
  return { name = name, value = value, headers = headers, filename = filename }
end

local function new(body, content_type)
  local self = setmetatable({ parts = {}, boundary = boundary_of(content_type) }, MP)
  self.boundary = self.boundary or ("gw" .. tostring(os.time()) .. tostring(math.random(1e9)))
  body = body or ""
  local delim = "--" .. self.boundary
  local pos = find(body, delim, 1, true)
  while pos do
    local start = pos + #delim
    if sub(body, start, start + 1) == "--" then break end
    if sub(body, start, start + 1) == "\r\n" then start = start + 2 end
    local nxt = find(body, "\r\n" .. delim, start, true)
    if not nxt then break end
    local part = parse_part(sub(body, start, nxt - 1))
    if part.name then self.parts[#self.parts + 1] = part end
    pos = nxt + 2
  end
  return self
end

function MP:get(name)
  for _, p in ipairs(self.parts) do
    if p.name == name then return p end
  end
end

function MP:get_all()
  local out = {}
  for _, p in ipairs(self.parts) do out[p.name] = p.value end
  return out
end

function MP:get_all_with_arrays()
  local out = {}
  for _, p in ipairs(self.parts) do
    local old = out[p.name]
    if old == nil then out[p.name] = p.value
    elseif type(old) == "table" then old[#old + 1] = p.value
    else out[p.name] = { old, p.value } end
  end
  return out
end

function MP:get_as_array(name)
  local out = {}
  for _, p in ipairs(self.parts) do if p.name == name then out[#out + 1] = p.value end end
  return out
end

function MP:set_simple(name, value, filename, content_type)
  local disp = format('Content-Disposition: form-data; name="%s"', name)
  if filename then disp = disp .. format('; filename="%s"', filename) end
  local headers = { disp }
  if content_type then headers[2] = "Content-Type: " .. content_type end
  local part = { name = name, value = tostring(value), headers = headers, filename = filename }
  for i, p in ipairs(self.parts) do
    if p.name == name then self.parts[i] = part return end
  end
  self.parts[#self.parts + 1] = part
end

function MP:delete(name)
  for i = #self.parts, 1, -1 do
    if self.parts[i].name == name then table.remove(self.parts, i) end
  end
end

function MP:tostring()
  local out = {}
  for _, p in ipairs(self.parts) do
    out[#out + 1] = "--" .. self.boundary .. "\r\n" .. concat(p.headers, "\r\n") .. "\r\n\r\n" .. p.value .. "\r\n"
  end
  out[#out + 1] = "--" .. self.boundary .. "--\r\n"
  return concat(out)
end

return setmetatable({ new = new }, { __call = function(_, body, ct) return new(body, ct) end })
