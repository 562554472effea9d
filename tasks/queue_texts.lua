-- Texts waiting on each queue, from the embedq_texts header of a sample of its entries.
-- KEYS: the queues. ARGV[1]: entries read at each end of a queue (all of a shorter queue),
-- ARGV[2]: the header's name (tasks.wire.TEXTS_HEADER).
-- Returns, per queue, {depth, texts in the entries read, entries read}. The header sits near
-- the end of an envelope (after the body), so the search starts 1 KiB before the end; an entry
-- without the header (a plain Celery producer's) counts as one text, as the worker's claim does.
local each = tonumber(ARGV[1])
local needle = '"' .. ARGV[2] .. '": '
local function texts(raw)
  local from = #raw - 1024
  if from < 1 then from = 1 end
  local _, stop = string.find(raw, needle, from, true)
  if not stop and from > 1 then _, stop = string.find(raw, needle, 1, true) end
  if not stop then return 1 end
  return tonumber(string.match(raw, '^%d+', stop + 1)) or 1
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
