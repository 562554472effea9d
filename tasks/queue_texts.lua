-- Texts waiting on each queue: the sum of the embedq_texts header of its oldest entries.
-- KEYS: the queues. ARGV[1]: most entries read per queue (from the oldest end),
-- ARGV[2]: the header's name (tasks.envelope.TEXTS_HEADER).
-- Returns, per queue, {depth, texts in the entries read, entries read}; an entry without the
-- header (a plain Celery producer's) counts as one text, as the worker's claim counts it.
local most = tonumber(ARGV[1])
local pattern = '"' .. string.gsub(ARGV[2], '%p', '%%%0') .. '": (%d+)'
local out = {}
for i, queue in ipairs(KEYS) do
  local entries = redis.call('LRANGE', queue, -most, -1)
  local texts = 0
  for _, raw in ipairs(entries) do
    texts = texts + (tonumber(string.match(raw, pattern)) or 1)
  end
  out[i] = {redis.call('LLEN', queue), texts, #entries}
end
return out
