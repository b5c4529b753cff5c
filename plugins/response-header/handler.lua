-- response-header: adds fixed headers to every response (and to what the upstream receives,
-- when `request_headers` is set).
local ResponseHeader = {
  PRIORITY = 800,
  VERSION = "1.0.0",
}

-- Per conf (the same table for every request of a config generation), made once: each map as a
-- flat list name, value, name, value, ... in a fixed order (no pairs walk per request).
local lists = setmetatable({}, { __mode = "k" })
local function flat(map)
  local names = {}
  for name in pairs(map or {}) do names[#names + 1] = name end
  table.sort(names)
  local out = {}
  for _, name in ipairs(names) do out[#out + 1] = name; out[#out + 1] = map[name] end
  return out
end
local function lists_of(conf)
  local l = lists[conf]
  if not l then
    l = { request = flat(conf.request_headers), response = flat(conf.headers) }
    lists[conf] = l
  end
  return l
end

function ResponseHeader:access(conf)
  local list = lists_of(conf).request
  if #list == 0 then return end
  local set_header = gw.service.request.set_header
  for i = 1, #list, 2 do set_header(list[i], list[i + 1]) end
end

function ResponseHeader:header_filter(conf)
  local list = lists_of(conf).response
  local set_header = gw.response.set_header
  for i = 1, #list, 2 do set_header(list[i], list[i + 1]) end
end

return ResponseHeader
