-- Texts waiting on each queue, from the texts header of a sample of its entries.
-- KEYS: the queues. ARGV[1]: entries read at each end of a queue (all of a shorter queue),
-- ARGV[2]: the header's name (tasks.wire.TEXTS_HEADER).
-- Returns, per queue, {depth, texts in the entries read, entries read}. The header is read by
-- decoding the envelope's JSON, as the claim script and the consumer read it; an entry without
-- it (a plain Celery producer's) counts as one text, as the worker's claim does.
local each = tonumber(ARGV[1])
local function texts(raw)
  local ok, envelope = pcall(cjson.decode, raw)
  local n = ok and type(envelope) == 'table' and type(envelope.headers) == 'table'
    and envelope.headers[ARGV[2]]
  if type(n) == 'number' and n >= 1 then return math.floor(n) end
  return 1
end
local out = {}
for i, queue in ipairs(KEYS) do
  local depth = redis.call('LLEN', queue)
  local entries
  if depth <= 2 * each then
    entries = redis.call('LRANGE', queue, 0, -1)
  else
    entries = redis.call('LRANGE', queue, -each, -1)
    for _, raw in ipairs(redis.call('LRANGE', queue, 0, each - 1)) do
      entries[#entries + 1] = raw
    end
  end
  local total = 0
  for _, raw in ipairs(entries) do total = total + texts(raw) end
  out[i] = {depth, total, #entries}
end
return out
