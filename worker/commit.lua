-- Run a batch's writes (replies, acknowledgements, events, ...) as one atomic step: what a
-- MULTI/EXEC of the same commands does, for one broker command (this script's) instead of two.
--
-- KEYS: the key of each command that has one, in order.
-- ARGV: per command, its name, '1' if its first argument is the next of KEYS else '0', how many
--       further arguments it has, then those arguments.
--
-- As in a transaction, a command the broker refuses (a reply key of the wrong type, say) does
-- not stop the others; the refusals are returned ("name: error"), the rest is done. A broker
-- that refuses writes as such (out of memory, a failed disk, a read-only replica, too few
-- replicas) refuses the first write, before anything is written: then the script fails as a
-- whole, as EXEC does after such a refusal, and the caller retries. Going on would write the
-- acknowledgements that are not refused (DEL and HDEL may use memory beyond the limit) without
-- the replies that are: messages answered to nobody.
local WHOLE = {OOM = true, MISCONF = true, READONLY = true, NOREPLICAS = true}
local k, a, refused = 0, 1, {}
while a <= #ARGV do
  local name, n = ARGV[a], tonumber(ARGV[a + 2])
  local args = {}
  if ARGV[a + 1] == '1' then
    k = k + 1
    args[1] = KEYS[k]
  end
  for i = a + 3, a + 2 + n do args[#args + 1] = ARGV[i] end
  a = a + 3 + n
  local answer = redis.pcall(name, unpack(args))
  if type(answer) == 'table' and answer.err then
    if WHOLE[string.match(answer.err, '^%u+')] then return redis.error_reply(answer.err) end
    refused[#refused + 1] = name .. ': ' .. answer.err
  end
end
return refused
