-- request-transformer: changes the request before it goes upstream, in access: headers, query
-- arguments, JSON or form body fields (remove, rename, replace, add, append, in that order), the
-- path (replace.uri, a template) and the method. Values may be templates reading the request
-- ($(headers.x-user), $(query.id), $(uri_captures.id)), rendered before the plugin changes
-- anything. The body is read only when a body rule is configured and the Content-Type is JSON or
-- a form; a body that cannot be transformed (too large, not JSON, not an object) goes upstream
-- as it came, or is refused (body_policy: reject).
local transform = require "gw.transform"

local RequestTransformer = {
  PRIORITY = 801,
  VERSION = "1.0.0",
}

local FIELDS = { headers = "headers", querystring = "args", body = "body" }

-- compiled rules per conf table (the same table for every request of a config generation)
local compiled = setmetatable({}, { __mode = "k" })

local function compile(conf)
  local c = transform.compile(conf, FIELDS, "body")
  if conf.replace and conf.replace.uri then
    c.uri = assert(transform.compile_template(conf.replace.uri, true))
    if type(c.uri) == "table" then c.templates = true end
  end
  c.method = conf.http_method
  compiled[conf] = c
  return c
end

-- a body that cannot be transformed: untouched, or refused
local function cannot(conf, status, message)
  if conf.body_policy == "reject" then
    return gw.response.exit(status, { message = message })
  end
  gw.log.info(message, ": body sent upstream untouched")
end

local function transform_body(conf, g, env)
  local kind = transform.body_kind(gw.request.get_header("Content-Type"))
  if not kind or transform.encoded(gw.request.get_header("Content-Encoding")) then return end
  local max = conf.max_body_size
  local declared = tonumber(gw.request.get_header("Content-Length"))
  if max > 0 and declared and declared > max then
    return cannot(conf, 413, "Request body too large")   -- not read: it streams upstream
  end
  local body = gw.request.get_raw_body()
  if max > 0 and #body > max then return cannot(conf, 413, "Request body too large") end

  if kind == "form" then
    local args = transform.parse_args(body)
    if transform.apply_args(g, args, env) then
      gw.service.request.set_raw_body(transform.encode_args(args))
    end
    return
  end

  local doc = {}
  if body ~= "" then
    local err
    doc, err = transform.json_decode(body)
    if doc == nil then return cannot(conf, 400, "Invalid JSON body") end
    if not transform.is_object(doc) then return cannot(conf, 400, "JSON body is not an object") end
  end
  if transform.apply_json(g, doc, env) then
    local out, err = transform.json_encode(doc)
    if not out then
      gw.log.warn("cannot encode the transformed JSON body (", err, "): body sent untouched")
      return
    end
    gw.service.request.set_raw_body(out)
  end
end

function RequestTransformer:access(conf)
  local c = compiled[conf] or compile(conf)
  local env = c.templates and {} or nil
  if c.body then transform_body(conf, c.body, env) end
  if c.querystring then
    local args = transform.parse_args(gw.request.get_raw_query())
    if transform.apply_args(c.querystring, args, env) then
      gw.service.request.set_raw_query(transform.encode_args(args))
    end
  end
  if c.uri then
    local path = transform.render(c.uri, env)
    if path and transform.has_dot_segment(path) then
      gw.log.info("replace.uri gave a path with a . or .. segment (", path, "): path unchanged")
    elseif path then
      gw.service.request.set_path(path)
    end
  end
  if c.method then gw.service.request.set_method(c.method) end
  -- headers last: the templates above read the headers as they reached the plugin
  if c.headers then transform.apply_headers(c.headers, transform.REQUEST_HEADERS, env) end
end

RequestTransformer._compile = compile

return RequestTransformer
