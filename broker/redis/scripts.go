package redis

import goredis "github.com/redis/go-redis/v9"

// The keys of one stream, all under one hash tag:
// KEYS[1] history (Redis Stream), KEYS[2] epoch, KEYS[3] offset counter,
// KEYS[4] index (sorted set: offset -> stream entry id), so that a page of
// history starts at its offset without reading what comes before it.

// A stream's state is valid only with both its epoch and its counter: if
// either is missing (lost, evicted, expired) the offsets would restart under
// an epoch clients already hold, so a new epoch starts instead.
const resetLua = `
local function state(newEpoch, keep)
  local epoch = redis.call('GET', KEYS[2])
  if (not epoch) or redis.call('EXISTS', KEYS[3]) == 0 then
    epoch = newEpoch
    redis.call('DEL', KEYS[1], KEYS[4])
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
-- trim drops expired entries (ttl > 0) and keeps the index to the entries
-- the history holds: both lose their oldest entries only, so the surplus
-- of the index is its lowest-ranked members.
local function trim(ttl)
  if ttl > 0 then
    redis.call('XTRIM', KEYS[1], 'MINID', tostring(nowms() - ttl))
  end
  local extra = redis.call('ZCARD', KEYS[4]) - redis.call('XLEN', KEYS[1])
  if extra > 0 then
    redis.call('ZREMRANGEBYRANK', KEYS[4], 0, extra - 1)
  end
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
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[4], '*', 'o', off, 'n', ARGV[2], 'd', ARGV[3])
redis.call('ZADD', KEYS[4], off, id)
trim(ttl)
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[4], keep)
redis.call('PUBLISH', ARGV[1], ARGV[2] .. '\n' .. epoch .. '\n' .. off .. '\n' .. ARGV[3])
return {off, epoch}
`)

// sinceScript returns the stream's epoch, last offset, and at most `limit`
// entries from offset client+1 on (oldest first) after dropping expired
// ones. The index finds the entry of offset client+1; without it (history
// written before the index existed) the newest `need` entries are read
// instead. An empty list where entries are due means they were evicted. It
// never creates state: a stream without a valid epoch and counter answers
// {"", 0, {}} and writes nothing, so reads of streams that are never
// published cost Redis no memory.
// ARGV: client offset, ttl ms, size, limit.
// Returns {epoch, last, entries}.
var sinceScript = goredis.NewScript(resetLua + `
local epoch = redis.call('GET', KEYS[2])
local last = redis.call('GET', KEYS[3])
if (not epoch) or (not last) then
  return {'', 0, {}}
end
last = tonumber(last)
trim(tonumber(ARGV[2]))
local from = tonumber(ARGV[1]) + 1
local need = last - from + 1
local limit = tonumber(ARGV[4])
if limit <= 0 or limit > need then
  limit = need
end
local entries = {}
if need <= 0 or need > tonumber(ARGV[3]) then
  return {epoch, last, entries}
end
local id = redis.call('ZRANGEBYSCORE', KEYS[4], from, from)
if #id == 1 then
  return {epoch, last, redis.call('XRANGE', KEYS[1], id[1], '+', 'COUNT', limit)}
end
if redis.call('ZCARD', KEYS[4]) >= redis.call('XLEN', KEYS[1]) then
  return {epoch, last, entries} -- indexed and not found: evicted
end
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', need)
if #newest == need then
  for i = need, need - limit + 1, -1 do
    entries[#entries + 1] = newest[i]
  end
end
return {epoch, last, entries}
`)
