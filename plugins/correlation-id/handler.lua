-- correlation-id: one id per request, kept from the client's X-Request-ID or generated (UUID v4),
-- sent upstream and back to the client, and made the request's own id (gw.request.set_id): the
-- error log's "request:" field, the access log's $request_id and tracing spans all show it.
local CorrelationId = {
  PRIORITY = 100001,     -- first of all: every later plugin and log line sees the id
  VERSION = "1.0.0",
}

local random, format = math.random, string.format

function CorrelationId:init_worker()
  -- a per-worker seed from the kernel: workers never produce the same sequence
  local f = io.open("/dev/urandom", "rb")
  local seed = os.time()
  if f then
    local b = f:read(4)
    f:close()
    seed = b:byte(1) * 16777216 + b:byte(2) * 65536 + b:byte(3) * 256 + b:byte(4)
  end
  math.randomseed(seed)
end

local function uuid4()
  local a, b, c, d = random(0, 0xffff), random(0, 0xffff), random(0, 0xffff), random(0, 0xffff)
  local e, f, g, h = random(0, 0xffff), random(0, 0xffff), random(0, 0xffff), random(0, 0xffff)
  return format("%04x%04x-%04x-4%03x-%04x-%04x%04x%04x", a, b, c, d % 0x1000,
                0x8000 + e % 0x4000, f, g, h)
end

local worker_uuid, counter
local function uuid_counter()
  if not worker_uuid then worker_uuid, counter = uuid4(), 0 end
  counter = counter + 1
  return worker_uuid .. "#" .. counter
end

-- an id worth keeping: what gw.request.set_id accepts (1-63 printable ASCII, no spaces)
local function usable(id)
  return type(id) == "string" and #id > 0 and #id < 64 and not id:find("[^\33-\126]")
end

function CorrelationId:rewrite(conf)
  local id = conf.trust_incoming and gw.request.get_header(conf.header_name)
  if not usable(id) then
    id = conf.generator == "uuid" and uuid4() or uuid_counter()
  end
  gw.request.set_id(id)
  gw.service.request.set_header(conf.header_name, id)
  if conf.echo_downstream then gw.ctx.plugin.id = id end
end

function CorrelationId:header_filter(conf)
  local id = gw.ctx.plugin.id
  if id then gw.response.set_header(conf.header_name, id) end
end

-- the echo is the only reason for header_filter
function CorrelationId:phases_for(conf)
  if conf.echo_downstream then return { "init_worker", "rewrite", "header_filter" } end
  return { "init_worker", "rewrite" }
end

CorrelationId._uuid4 = uuid4   -- for the unit spec
return CorrelationId
