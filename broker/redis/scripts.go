package redis

import goredis "github.com/redis/go-redis/v9"

// The keys of one stream, all under one hash tag:
// KEYS[1] history (Redis Stream), KEYS[2] epoch, KEYS[3] offset counter.

// A stream's state is valid only with both its epoch and its counter: if
// either is missing (lost, evicted, expired) the offsets would restart under
// an epoch clients already hold, so a new epoch starts instead.
const resetLua = `
local function state(newEpoch, keep)
  local epoch = redis.call('GET', KEYS[2])
  if (not epoch) or redis.call('EXISTS', KEYS[3]) == 0 then
    epoch = newEpoch
    redis.call('DEL', KEYS[1])
    redis.call('SET', KEYS[2], epoch)
    redis.call('SET', KEYS[3], 0)
  end
  redis.call('PEXPIRE', KEYS[2], keep)
  redis.call('PEXPIRE', KEYS[3], keep)
  return epoch
end
local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// publishScript appends a message, assigns the next offset and publishes
// the wire message, atomically (one order for history and live delivery).
// ARGV: channel, node, data, size, ttl ms, key lifetime ms, new epoch.
// Returns {offset, epoch}.
var publishScript = goredis.NewScript(resetLua + `
local ttl = tonumber(ARGV[5])
local keep = tonumber(ARGV[6])
local epoch = state(ARGV[7], keep)
local off = redis.call('INCR', KEYS[3])
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[4], '*', 'o', off, 'n', ARGV[2], 'd', ARGV[3])
if ttl > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', tostring(nowms() - ttl))
end
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PUBLISH', ARGV[1], ARGV[2] .. '\n' .. epoch .. '\n' .. off .. '\n' .. ARGV[3])
return {off, epoch}
`)

// sinceScript returns the stream's epoch, last offset, and the newest
// `need` entries (newest first) after dropping expired ones. It never
// creates state: a stream without a valid epoch and counter answers
// {"", 0, {}} and writes nothing, so reads of streams that are never
// published cost Redis no memory.
// ARGV: client offset, ttl ms, size.
// Returns {epoch, last, entries}.
var sinceScript = goredis.NewScript(resetLua + `
local epoch = redis.call('GET', KEYS[2])
local last = redis.call('GET', KEYS[3])
if (not epoch) or (not last) then
  return {'', 0, {}}
end
last = tonumber(last)
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', tostring(nowms() - ttl))
end
local need = last - tonumber(ARGV[1])
local entries = {}
if need > 0 and need <= tonumber(ARGV[3]) then
  entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', need)
end
return {epoch, last, entries}
`)
