-- ab-routing: rules (header value exact or regex, cookie value) checked first, then an optional
-- weighted split, sticky by a hash of a header, cookie, consumer or client IP.
local ok_rx, regex = pcall(require, "gw.regex")

local function valid_regex(p)
  if not ok_rx then return true end          -- checked again on use
  local ok, err = regex.check(p)
  if not ok then return nil, "invalid regex: " .. tostring(err) end
  return true
end

local rule_record = { type = "record", fields = {
  { header = { type = "string", len_min = 1,
               description = "request header this rule looks at (default: the plugin's header)" } },
  { cookie = { type = "string", len_min = 1,
               description = "look at this cookie's value instead of a header" } },
  { value = { type = "string", description = "value to match exactly" } },
  { regex = { type = "string", len_min = 1, custom_validator = valid_regex,
              description = "PCRE2 regex the value must match (unanchored: use ^...$)" } },
  { upstream = { type = "string", required = true, description = "upstream or service name" } },
}, custom_validator = function(r)
  if (r.value == nil) == (r.regex == nil) then return nil, "a rule needs exactly one of value or regex" end
  if r.header and r.cookie then return nil, "a rule looks at a header or a cookie, not both" end
  return true
end }

local split_record = { type = "record", fields = {
  { upstream = { type = "string", required = true, description = "upstream or service name" } },
  { weight = { type = "integer", required = true, between = { 0, 1000000 },
               description = "relative share of the traffic" } },
} }

return {
  name = "ab-routing",
  fields = {
    { header = { type = "string", default = "X-API-Version", required = true,
                 description = "request header whose value the rules match" } },
    { rules = { type = "array", default = {},
                description = "value -> upstream rules, first match wins",
                elements = rule_record } },
    { split = { type = "array", default = {},
                description = "weighted split for requests no rule matched",
                elements = split_record } },
    { hash_on = { type = "string", default = "none", one_of = { "none", "header", "cookie", "consumer", "ip" },
                  description = "what keeps a client on one side of the split (none: random per request)" } },
    { hash_on_header = { type = "string", len_min = 1, description = "header hashed when hash_on is header" } },
    { hash_on_cookie = { type = "string", len_min = 1, description = "cookie hashed when hash_on is cookie" } },
  },
  custom_validator = function(c)
    if #(c.rules or {}) == 0 and #(c.split or {}) == 0 then
      return nil, "at least one rule or a split is required"
    end
    local total = 0
    for _, s in ipairs(c.split or {}) do total = total + (s.weight or 0) end
    if #(c.split or {}) > 0 and total <= 0 then return nil, "split weights must add up to more than 0" end
    if c.hash_on == "header" and not c.hash_on_header then return nil, "hash_on header needs hash_on_header" end
    if c.hash_on == "cookie" and not c.hash_on_cookie then return nil, "hash_on cookie needs hash_on_cookie" end
    return true
  end,
}
