-- Give a dead consumer's claimed messages back: each to the head of the list it came from
-- (bulk messages carry kombu's priority 9), oldest first, and forget its liveness and rate.
--
-- KEYS: the dead consumer's in-flight list, the interactive queue, the bulk queue, the live
--       set, the deliveries hash, the backlog counter, the rates hash.
-- ARGV: the dead consumer's id, '1' to refund the deliveries (its whole worker died, not just
--       the process that held them: the messages are not suspects), the texts header name.
local refund, TEXTS = ARGV[2] == '1', ARGV[3]
local n = 0
while true do
  local raw = redis.call('LINDEX', KEYS[1], 0)
  if not raw then break end
  local ok, envelope = pcall(cjson.decode, raw)
  local properties = ok and type(envelope) == 'table' and envelope.properties or {}
  local headers = ok and type(envelope) == 'table' and envelope.headers or {}
  local target = KEYS[2]
  if type(properties) == 'table' and type(properties.priority) == 'number'
      and properties.priority > 0 then
    target = KEYS[3]
  elseif type(headers) == 'table' then
    local texts = headers[TEXTS]
    redis.call('INCRBY', KEYS[6], type(texts) == 'number' and math.max(1, math.floor(texts)) or 1)
  end
  redis.call('LMOVE', KEYS[1], target, 'LEFT', 'RIGHT')
  n = n + 1
  if refund then
    local id = redis.sha1hex(raw)
    local count = tonumber(redis.call('HGET', KEYS[5], id))
    if count and count > 0 then redis.call('HINCRBY', KEYS[5], id, -1) end
  end
end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[7], ARGV[1])
return n
