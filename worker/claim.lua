-- Claim a batch for one consumer, atomically: every message is on a queue or in exactly one
-- in-flight list at every instant.
--
-- KEYS: interactive queue, bulk queue, this consumer's in-flight list, the queue's deliveries
--       hash, the queue's backlog counter (texts waiting in the interactive queue), the queue's
--       cancellation marks (message id -> rows whose callers cancelled), its dead letters.
-- ARGV: text budget, most messages, most deliveries, now (epoch s), messages already moved in
--       flight for this batch by earlier calls, the dead mark, then the wire's header names
--       (texts, deadline, enqueued-at), then the age (s) of the oldest interactive message past
--       which the newest is served first (0: never), then the most expired messages to clear
--       per call, then the live texts earlier calls of this batch claimed, then the dead-letter
--       record version (tasks.wire.RECORD_VERSION: the record is DeadLetter's layout), then
--       the messages blocking waits moved in flight since the last call, oldest first (BLMOVE
--       answered them: passing them back saves reading the in-flight list).
--
-- Returns {rows, more}: a row {raw, deliveries, state, texts, cancel mark or '', 1 if from the
-- bulk list else 0} per message moved in flight (the mark saves the consumer a round trip), and
-- more = 0 when both lists were seen empty (the consumer may then block at once), else 1.
-- State 'live' (serve it), 'expired' (no caller waits: acknowledge without computing), 'dead'
-- (delivered more than allowed, each delivery ending with its worker process dead) or 'redead'
-- (sent again after it was dead-lettered). A dead message goes to the dead letters here, in the
-- same atomic step as its judgement: a worker process killed right after cannot bring it back;
-- the caller only tells its producer. Texts are counted from the envelope's JSON headers
-- (cjson), exactly as the Python side reads them.
--
-- Every Redis command here is one the broker runs (INFO commandstats counts them), so a claim
-- costs a fixed few whatever its size: one EXISTS (which of the interactive list, the bulk
-- list and the cancellation marks are there at all), one LINDEX of the oldest message if the
-- interactive list is there (expiry, LIFO and emptiness in one look), five per list it takes
-- from (see `take`), one HMGET of the cancellation marks if there are any and one backlog
-- write; a message a blocking wait moved costs one HINCRBY. The claim after a blocking wait
-- that took a lone request is thus four commands: the script, its HINCRBY, EXISTS and the
-- backlog's SET.
local budget, most, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now, already, dead_mark = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local TEXTS, DEADLINE, ENQUEUED = ARGV[7], ARGV[8], ARGV[9]
local lifo_after, clear_most = tonumber(ARGV[10]), tonumber(ARGV[11])
local queue, bulk, inflight, deliveries, backlog = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local cancels, dead = KEYS[6], KEYS[7]
local record_version = tonumber(ARGV[13])
local new = {unpack(ARGV, 14)}

local function headers(raw)
  local ok, envelope = pcall(cjson.decode, raw)
  if ok and type(envelope) == 'table' and type(envelope.headers) == 'table' then
    return envelope.headers
  end
  return {}
end
local function number(value)
  if type(value) == 'number' then return value end
  return nil
end
local function texts(h)
  local n = number(h[TEXTS])
  if n and n >= 1 then return math.floor(n) end
  return 1
end
local function expired(h)
  local deadline = number(h[DEADLINE])
  return deadline ~= nil and deadline <= now
end

local held = already + #new
local out, total, count, alone, drained = {}, tonumber(ARGV[12]), held, false, 0
local from_bulk = 0
local marked = {}  -- {row, message id} of live rows: their cancel marks are read in one HMGET

-- One more delivery: the new count, or -1 for a message already dead-lettered (its entry holds
-- the dead mark, which HINCRBY refuses).
local function delivery(id)
  local n = redis.pcall('HINCRBY', deliveries, id, 1)
  if type(n) ~= 'number' then return -1 end
  return n
end
local function deliver(raw, n, n_texts, h, in_flight)
  if n < 0 or n > limit then
    local why = 'sent again after it was dead-lettered'
    if n > 0 then
      why = 'delivered ' .. (n - 1) .. ' times, and each delivery ended with the worker ' ..
        'process dead (killed, out of memory or crashed); a poison message?'
    end
    if in_flight then redis.call('LREM', inflight, 1, raw) end
    redis.call('HSET', deliveries, redis.sha1hex(raw), dead_mark)
    redis.call('LPUSH', dead, cmsgpack.pack({record_version, why, queue, now, math.max(0, n - 1), raw}))
    out[#out + 1] = {raw, math.max(0, n - 1), n < 0 and 'redead' or 'dead', n_texts, '', from_bulk}
  else
    out[#out + 1] = {raw, n, 'live', n_texts, '', from_bulk}
    if type(h.id) == 'string' then marked[#marked + 1] = {#out, h.id} end
  end
end

-- What blocking waits moved in since the last call.
for i = 1, #new do
  local h = headers(new[i])
  local n = texts(h)
  drained = drained + n  -- a blocking wait takes from the interactive queue only
  if expired(h) then
    out[#out + 1] = {new[i], 0, 'expired', n, '', 0}
  else
    total = total + n
    local d = delivery(redis.sha1hex(new[i]))
    deliver(new[i], d, n, h, true)
    if d > 1 then alone = true end
  end
end

-- EXISTS counts a key once per mention: naming the lists and the marks 1, 2 and 4 times makes
-- its answer a bit mask of which are there, in one command. An absent list needs no LINDEX,
-- absent marks no HMGET (a lone request after a blocking wait finds all three absent).
local present = redis.call('EXISTS', queue, bulk, bulk, cancels, cancels, cancels, cancels)
local has_queue, has_bulk, has_cancels = present % 2 == 1, present % 4 >= 2, present >= 4

-- Messages nobody waits for any more are cleared from the oldest end, uncomputed.
local oldest = has_queue and redis.call('LINDEX', queue, -1)
local oldest_h = oldest and headers(oldest)
for _ = 1, clear_most do
  if not oldest or not expired(oldest_h) then break end
  redis.call('LMOVE', queue, inflight, 'RIGHT', 'LEFT')
  out[#out + 1] = {oldest, 0, 'expired', texts(oldest_h), '', 0}
  drained = drained + texts(oldest_h)
  oldest = redis.call('LINDEX', queue, -1)
  oldest_h = oldest and headers(oldest)
end

-- Adaptive LIFO: once the oldest waiting request has waited past the target, serve the newest
-- first; those are the requests whose callers are still there.
local side = 'RIGHT'
if lifo_after > 0 and oldest then
  local enqueued = number(oldest_h[ENQUEUED])
  if enqueued and now - enqueued > lifo_after then side = 'LEFT' end
end

local empty = {[queue] = not oldest, [bulk] = not has_bulk}

-- Take messages from one end of a list, up to the budget, in a fixed few commands however many:
-- one LRANGE to look (after one LINDEX where the list was not looked at yet), one HMGET of their
-- delivery counts, then one LTRIM, one LPUSH into flight and one HSET of the new counts. A message delivered before (its worker process died on it) is
-- a poison suspect: it is claimed alone, as the first of a claim of its own, else left where it
-- is. A dead one goes from the list straight to the dead letters.
local function take(list, from, sample_texts)
  local room = most - count
  if empty[list] or alone or total >= budget or room <= 0 then return end
  if not sample_texts then
    local sample = redis.call('LINDEX', list, from == 'RIGHT' and -1 or 0)
    if not sample then empty[list] = true return end
    sample_texts = texts(headers(sample))
  end
  -- A list's messages are alike in size (one producer's chunks): the first one's texts say how
  -- many fit the budget, so a list of big bulk chunks is never read 64 at a time to take one.
  local window = math.min(room, math.max(1, math.ceil((budget - total) / sample_texts)))
  local raws
  if from == 'RIGHT' then
    raws = redis.call('LRANGE', list, -window, -1)
    for i = 1, math.floor(#raws / 2) do raws[i], raws[#raws + 1 - i] = raws[#raws + 1 - i], raws[i] end
  else
    raws = redis.call('LRANGE', list, 0, window - 1)
  end
  if #raws == 0 then empty[list] = true return end
  local ids = {}
  for i, raw in ipairs(raws) do ids[i] = redis.sha1hex(raw) end
  local counts = redis.call('HMGET', deliveries, unpack(ids))
  local taken, inflight_raws, bumps = 0, {}, {}
  for i, raw in ipairs(raws) do
    if alone or total >= budget then break end
    local h = headers(raw)
    local n = texts(h)
    local seen = counts[i]
    if not expired(h) and seen and (total > 0 or held > 0) then break end
    taken = taken + 1
    count = count + 1
    if list == queue then drained = drained + n end
    if expired(h) then
      inflight_raws[#inflight_raws + 1] = raw
      out[#out + 1] = {raw, 0, 'expired', n, '', from_bulk}
    else
      local d = 1
      if seen == dead_mark then d = -1 elseif seen then d = (tonumber(seen) or 0) + 1 end
      total = total + n
      if d >= 0 and d <= limit then
        inflight_raws[#inflight_raws + 1] = raw
        bumps[#bumps + 1] = ids[i]
        bumps[#bumps + 1] = d
      end
      deliver(raw, d, n, h, false)
      if seen then alone = true end
    end
  end
  if taken == #raws and #raws < window then empty[list] = true end
  if taken == 0 then return end
  if from == 'RIGHT' then
    redis.call('LTRIM', list, 0, -taken - 1)
  else
    redis.call('LTRIM', list, taken, -1)
  end
  if #inflight_raws > 0 then redis.call('LPUSH', inflight, unpack(inflight_raws)) end
  if #bumps > 0 then redis.call('HSET', deliveries, unpack(bumps)) end
end

take(queue, side, oldest and texts(oldest_h))
from_bulk = 1
take(bulk, 'RIGHT', nil)

if #marked > 0 and has_cancels then
  local ids = {}
  for i, row in ipairs(marked) do ids[i] = row[2] end
  local marks = redis.call('HMGET', cancels, unpack(ids))
  for i, row in ipairs(marked) do
    if marks[i] then out[row[1]][5] = marks[i] end
  end
end

-- The backlog loses what was taken from the interactive queue; an empty queue resets it (a
-- counter that drifted, after a lost message say, is corrected by the next claim).
if drained > 0 then
  if empty[queue] then
    redis.call('SET', backlog, 0)
  elseif redis.call('DECRBY', backlog, drained) < 0 then
    redis.call('SET', backlog, 0)
  end
end
return {out, (empty[queue] and empty[bulk]) and 0 or 1}
