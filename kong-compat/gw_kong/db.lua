-- gw_kong.db — kong.db for DB-less gw: the entities of gw's config, read-only, through the DAO
-- calls Kong plugins make. Consumers and their credentials come from gw.auth's index of the
-- running generation; services and routes from the compiled config.
--
--   kong.db.consumers:select({ id = ID }), :select_by_username(name), :select_by_custom_id(id),
--     :each(), :cache_key(id)
--   kong.db.keyauth_credentials:select_by_key(key), :cache_key(key)
--   kong.db.basicauth_credentials:select_by_username(name)
--   kong.db.jwt_secrets:select_by_key(key)
--   kong.db.acls:each_for_consumer({ id = ID }), :cache_key(consumer_id)
--   kong.db.services / routes:select({ id = ID }) | select_by_name(name)
--
-- Any other DAO exists with every method returning nil, "... is not supported by gw".
local type, tostring, pairs, ipairs, select, rawget = type, tostring, pairs, ipairs, select, rawget
local concat = table.concat

local function auth() return require "gw.auth" end
local function index() return auth().index() end

local function cache_key_of(name)
  return function(_, ...)
    local parts = { name }
    for i = 1, select("#", ...) do
      local v = select(i, ...)
      if type(v) == "table" then v = v.id end
      parts[#parts + 1] = v == nil and "" or tostring(v)
    end
    return concat(parts, ":") .. ":::::"
  end
end

local function id_of(pk)
  if type(pk) == "table" then return pk.id end
  return pk
end

local function iterate(list)
  local i = 0
  return function()
    i = i + 1
    if list[i] ~= nil then return list[i] end
  end
end

local db = { strategy = "off" }

db.consumers = {
  select = function(_, pk) return index().by_id[id_of(pk)] end,
  select_by_username = function(_, name) return index().by_username[name] end,
  select_by_custom_id = function(_, id) return index().by_custom_id[id] end,
  each = function()
    local list = {}
    for _, c in pairs(index().by_id) do list[#list + 1] = c end
    return iterate(list)
  end,
  cache_key = cache_key_of("consumers"),
}

local function credential_dao(name, kind, by)
  local dao = { cache_key = cache_key_of(name) }
  dao["select_by_" .. by] = function(_, v)
    local cred = auth().find_credential(kind, v)
    return cred
  end
  return dao
end
db.keyauth_credentials = credential_dao("keyauth_credentials", "keyauth", "key")
db.basicauth_credentials = credential_dao("basicauth_credentials", "basicauth", "username")
db.jwt_secrets = credential_dao("jwt_secrets", "jwt", "key")

db.acls = {
  cache_key = cache_key_of("acls"),
  each_for_consumer = function(_, pk)
    local id = id_of(pk)
    local groups = auth().consumer_groups({ id = id })
    local list = {}
    for i, g in ipairs(groups) do list[i] = { group = g, consumer = { id = id } } end
    return iterate(list)
  end,
}
db.acls.page_for_consumer = function(self, pk)
  local list = {}
  for row in self:each_for_consumer(pk) do list[#list + 1] = row end
  return list
end

local function compiled_list(kind)
  local g = rawget(_G, "gw")
  local c = g and g._compiled and g._compiled()
  return c and c[kind] or {}
end

local function entity_dao(kind, getter)
  return {
    cache_key = cache_key_of(kind),
    select_by_name = function(_, name)
      for _, e in ipairs(compiled_list(kind)) do
        if e.name == name then return getter(e) end
      end
    end,
    select = function(_, pk)
      local id = id_of(pk)
      for _, e in ipairs(compiled_list(kind)) do
        local x = getter(e)
        if x and x.id == id then return x end
      end
    end,
  }
end

local function entity_of(kind)
  return function(e)
    local kong = require "gw_kong.pdk"
    return kong._entity(kind, e)
  end
end
db.services = entity_dao("services", entity_of("service"))
db.routes = entity_dao("routes", entity_of("route"))

return setmetatable(db, { __index = function(t, name)
  local function unsupported() return nil, "kong.db." .. tostring(name) .. " is not supported by gw" end
  local dao = setmetatable({ cache_key = cache_key_of(name) }, { __index = function() return unsupported end })
  rawset(t, name, dao)
  return dao
end })
