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
--       record version (tasks.wire.RECORD_VERSION: the record is DeadLetter's layout).
--
-- Returns {raw, deliveries, state, texts, cancel mark or '', 1 if from the bulk list else 0}
-- per message moved in flight
-- (the mark saves the consumer a round trip): state 'live' (serve it),
-- 'expired' (no caller waits: acknowledge without computing), 'dead' (delivered more than
-- allowed, each delivery ending with its worker process dead) or 'redead' (sent again after it
-- was dead-lettered). A dead message goes to the dead letters here, in the same atomic step as
-- its judgement: a worker process killed right after cannot bring it back; the caller only
-- tells its producer. Texts are counted from the envelope's
-- JSON headers (cjson), exactly as the Python side reads them.
local budget, most, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now, already, dead_mark = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local TEXTS, DEADLINE, ENQUEUED = ARGV[7], ARGV[8], ARGV[9]
local lifo_after, clear_most = tonumber(ARGV[10]), tonumber(ARGV[11])
local queue, bulk, inflight, deliveries, backlog = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local cancels, dead = KEYS[6], KEYS[7]
local record_version = tonumber(ARGV[13])

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

local out, total, count, alone, drained = {}, tonumber(ARGV[12]), 0, false, 0
local from_bulk = 0
local function deliver(raw, id, n_texts, h)
  local mark = type(h.id) == 'string' and redis.call('HGET', cancels, h.id) or ''
  local n = -1
  if redis.call('HGET', deliveries, id) ~= dead_mark then
    n = redis.call('HINCRBY', deliveries, id, 1)
  end
  if n < 0 or n > limit then
    local why = 'sent again after it was dead-lettered'
    if n > 0 then
      why = 'delivered ' .. (n - 1) .. ' times, and each delivery ended with the worker ' ..
        'process dead (killed, out of memory or crashed); a poison message?'
    end
    redis.call('LREM', inflight, 1, raw)
    redis.call('HSET', deliveries, id, dead_mark)
    redis.call('LPUSH', dead, cmsgpack.pack({record_version, why, queue, now, math.max(0, n - 1), raw}))
    out[#out + 1] = {raw, math.max(0, n - 1), n < 0 and 'redead' or 'dead', n_texts, '', from_bulk}
  else
    out[#out + 1] = {raw, n, 'live', n_texts, mark or '', from_bulk}
  end
  return n
end

-- What this consumer already holds: earlier calls' messages (counted) and what a blocking wait
-- moved in since (the newest `#held - already`, not counted yet).
local held = redis.call('LRANGE', inflight, 0, -1)
count = #held
for i = #held - already, 1, -1 do
  local h = headers(held[i])
  local n = texts(h)
  drained = drained + n  -- a blocking wait takes from the interactive queue only
  if expired(h) then
    out[#out + 1] = {held[i], 0, 'expired', n, '', 0}
  else
    total = total + n
    if deliver(held[i], redis.sha1hex(held[i]), n, h) > 1 then alone = true end
  end
end

-- Messages nobody waits for any more are cleared from the oldest end, uncomputed.
for _ = 1, clear_most do
  local raw = redis.call('LINDEX', queue, -1)
  if not raw then break end
  local h = headers(raw)
  if not expired(h) then break end
  redis.call('LMOVE', queue, inflight, 'RIGHT', 'LEFT')
  out[#out + 1] = {raw, 0, 'expired', texts(h), '', 0}
  drained = drained + texts(h)
end

-- Adaptive LIFO: once the oldest waiting request has waited past the target, serve the newest
-- first; those are the requests whose callers are still there.
local side = 'RIGHT'
if lifo_after > 0 then
  local oldest = redis.call('LINDEX', queue, -1)
  local enqueued = oldest and number(headers(oldest)[ENQUEUED])
  if enqueued and now - enqueued > lifo_after then side = 'LEFT' end
end

for _, source in ipairs({{queue, side}, {bulk, 'RIGHT'}}) do
  local list, from = source[1], source[2]
  if list == bulk then from_bulk = 1 end
  while not alone and total < budget and count < most do
    local raw = redis.call('LINDEX', list, from == 'RIGHT' and -1 or 0)
    if not raw then break end
    local id = redis.sha1hex(raw)
    -- A message delivered before (its worker process died on it) is a poison suspect: it is
    -- claimed alone, as the first of a claim of its own.
    local suspect = redis.call('HEXISTS', deliveries, id) == 1
    if suspect and (total > 0 or #held > 0) then break end
    redis.call('LMOVE', list, inflight, from, 'LEFT')
    count = count + 1
    local h = headers(raw)
    local n = texts(h)
    if list == queue then drained = drained + n end
    if expired(h) then
      out[#out + 1] = {raw, 0, 'expired', n, '', from_bulk}
    else
      total = total + n
      if deliver(raw, id, n, h) > 1 or suspect then alone = true end
    end
  end
end

if drained > 0 and redis.call('DECRBY', backlog, drained) < 0 then redis.call('SET', backlog, 0) end
if redis.call('LLEN', queue) == 0 then redis.call('SET', backlog, 0) end
return out
