-- response-transformer: changes the response: headers in header_filter, JSON body fields in
-- body_filter (remove, rename, replace, add, append, in that order). body_filter runs only for
-- instances with a JSON rule (phases_for), so without one the response streams untouched; with
-- one, header_filter decides from the upstream's Content-Type (application/json or +json, not
-- compressed) whether the body is transformed, and lets any other response stream
-- (gw.response.skip_body_filter). A body that does not decode, or is not a JSON
-- object, is sent untouched.
local transform = require "gw.transform"

local ResponseTransformer = {
  PRIORITY = 800,
  VERSION = "1.0.0",
}

local FIELDS = { headers = "headers", json = "json" }

local compiled = setmetatable({}, { __mode = "k" })

local function compile(conf)
  local c = transform.compile(conf, FIELDS, "json")
  compiled[conf] = c
  return c
end

local HEADERS_ONLY, WITH_BODY, NOTHING = { "header_filter" }, { "header_filter", "body_filter" }, {}

-- once per instance and config generation: body_filter (and so buffering) only with a JSON rule
function ResponseTransformer:phases_for(conf)
  local c = compiled[conf] or compile(conf)
  if c.json then return WITH_BODY end
  if c.headers then return HEADERS_ONLY end
  return NOTHING
end

function ResponseTransformer:header_filter(conf)
  local c = compiled[conf] or compile(conf)
  if c.json then
    if transform.body_kind(gw.response.get_header("Content-Type")) == "json"
       and not transform.encoded(gw.response.get_header("Content-Encoding")) then
      gw.ctx.plugin.json = true
    else
      -- not a body for this plugin: it streams (unless another plugin wants it)
      gw.response.skip_body_filter()
    end
  end
  if c.headers then
    transform.apply_headers(c.headers, transform.RESPONSE_HEADERS, c.templates and {} or nil)
  end
end

function ResponseTransformer:body_filter(conf)
  if not gw.ctx.plugin.json then return end
  local c = compiled[conf] or compile(conf)
  local body = gw.response.get_raw_body()
  local doc, err = transform.json_decode(body)
  if doc == nil then
    gw.log.info("response body is not valid JSON (", err, "): sent untouched")
    return
  end
  if not transform.is_object(doc) then
    gw.log.info("response body is not a JSON object: sent untouched")
    return
  end
  if transform.apply_json(c.json, doc, c.templates and {} or nil) then
    local out
    out, err = transform.json_encode(doc)
    if not out then
      gw.log.warn("cannot encode the transformed JSON body (", err, "): sent untouched")
      return
    end
    gw.response.set_raw_body(out)
  end
end

return ResponseTransformer
