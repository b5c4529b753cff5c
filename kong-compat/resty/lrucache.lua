-- resty.lrucache (gw kong-compat): a per-worker LRU cache with optional TTLs, the API of
-- lua-resty-lrucache: new(size), get(key) -> value, stale_value?, set(key, value, ttl, flags),
-- delete, flush_all, count, capacity, get_keys(max, res). Keys may be any Lua value.
-- A doubly linked list in plain tables; `get` moves the item to the front.
local setmetatable, type = setmetatable, type

local function now()
  local g = rawget(_G, "gw")
  if g then return g.now() end
  return os.time()
end

local _M = { _VERSION = "0.13" }
local mt = { __index = _M }

function _M.new(size)
  if type(size) ~= "number" or size < 1 then return nil, "size too small" end
  local head = {}
  head.prev, head.next = head, head
  return setmetatable({ size = math.floor(size), n = 0, map = {}, head = head }, mt)
end

local function unlink(node)
  node.prev.next = node.next
  node.next.prev = node.prev
end

local function push_front(head, node)
  node.next = head.next
  node.prev = head
  head.next.prev = node
  head.next = node
end

function _M:get(key)
  local node = self.map[key]
  if not node then return nil end
  unlink(node)
  push_front(self.head, node)
  if node.exp and node.exp <= now() then
    return nil, node.value, node.flags
  end
  return node.value, nil, node.flags
end

function _M:set(key, value, ttl, flags)
  local node = self.map[key]
  if node then
    unlink(node)
  else
    if self.n >= self.size then
      local last = self.head.prev
      unlink(last)
      self.map[last.key] = nil
      self.n = self.n - 1
    end
    node = { key = key }
    self.map[key] = node
    self.n = self.n + 1
  end
  node.value = value
  node.flags = flags
  node.exp = (ttl and ttl > 0) and (now() + ttl) or nil
  push_front(self.head, node)
end

function _M:delete(key)
  local node = self.map[key]
  if not node then return false end
  unlink(node)
  self.map[key] = nil
  self.n = self.n - 1
  return true
end

function _M:flush_all()
  self.map = {}
  self.n = 0
  self.head.prev, self.head.next = self.head, self.head
end

function _M:count() return self.n end
function _M:capacity() return self.size end

function _M:get_keys(max, res)
  res = res or {}
  local i, node = 0, self.head.next
  max = (max and max > 0) and max or self.n
  while node ~= self.head and i < max do
    i = i + 1
    res[i] = node.key
    node = node.next
  end
  res[i + 1] = nil
  return res
end

return _M
