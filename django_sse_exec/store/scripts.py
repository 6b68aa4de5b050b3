"""The Redis store's Lua scripts: each log operation is one atomic step in Redis.

Keys of one execution (sharing a hash tag), the store's epoch marker, and the
two sets that watch for stalls (one of each per host)::

    KEYS[1] <prefix>:{<id>}:last     the last id assigned (INCR)
    KEYS[2] <prefix>:{<id>}:closed   set once closed (holds the stream-closed id)
    KEYS[3] <prefix>:{<id>}:events   LIST of "<id>\\n<event>\\n<data>", contiguous ids
    KEYS[4] <prefix>:{<id>}:bytes    total bytes of the entries in the list
    KEYS[5] <prefix>:epoch           the store's incarnation (see below)
    KEYS[6] <prefix>:{<id>}:keys     ZSET of the keys of keyed sends, scored by their id
    KEYS[7] <prefix>:{<id>}:cancel   set once a cancel was requested (holds its id)
    KEYS[8] <prefix>:activity        ZSET of open executions by their last report (ms)
    KEYS[9] <prefix>:stalled         ZSET of stalled ones: -last report while their
                                     notice is pending, +last report once it is logged

Keys of sends: an append with a key already in ``keys`` appends nothing and
answers that event's id; ``keys`` keeps the newest ``send_keys_max`` (trimmed by
rank on every keyed append) and expires with the log.

Epochs. ``<prefix>:epoch`` is written once, when the first log is created, and
never expires. If it is missing later, Redis lost data (restarted empty,
``FLUSHDB``, evicted): the first process that knew the old value and touches
the store writes a new epoch, ``max(Redis time in seconds, old epoch + 1)``.
A log created under epoch ``E > 0`` starts its ids at ``E * EPOCH_SPAN + 1``,
so no id of a lost log can be read as a position in a new one. A store that
never lost data stays at epoch 0, and its logs count 1, 2, 3 ...
"""

from __future__ import annotations

from ..wire import STREAM_CLOSED
from .base import EPOCH_SPAN

# Sets local `epoch`: the store's epoch, writing a new one when the marker is
# missing. SEEN is the argument holding the epoch this process last saw ('' if
# none: a store that was never seen starts at 0).
_EPOCH = """
local epoch = redis.call('GET', KEYS[5])
if not epoch then
  epoch = 0
  if SEEN ~= '' then
    epoch = math.max(tonumber(redis.call('TIME')[1]), tonumber(SEEN) + 1)
  end
  redis.call('SET', KEYS[5], epoch)
end
epoch = tonumber(epoch)
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[6], KEYS[7])
  if epoch > 0 then redis.call('SET', KEYS[1], epoch * EPOCH_SPAN) end
end
""".replace("EPOCH_SPAN", str(EPOCH_SPAN))

# Appends `entry` and trims the list to MAX_EVENTS entries and MAX_BYTES bytes
# (always keeping the newest entry).
_PUSH = """
redis.call('RPUSH', KEYS[3], entry)
local size = redis.call('INCRBY', KEYS[4], #entry)
local n = redis.call('LLEN', KEYS[3])
while n > 1 and (n > tonumber(MAX_EVENTS) or size > tonumber(MAX_BYTES)) do
  size = redis.call('DECRBY', KEYS[4], #redis.call('LPOP', KEYS[3]))
  n = n - 1
end
"""

# ARGV: event, data, max events, max bytes, ttl seconds, seen epoch, key ('' for
# none), kind (report, notice, cancel, stalled), keys kept, stall watch (1/0),
# execution id, then the delivery tail's arguments from ARGV[12] (`d`). Returns
# {id, epoch, flags}: id -1 when the execution is closed, 0 when nothing was
# appended; flags: 1 repeated key, 2 cancel requested, 4 resumed, 8 skipped.
APPEND_BODY = """
if ARGV[8] == 'stalled' and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[9], ARGV[11])
  return {0, tonumber(redis.call('GET', KEYS[5]) or '-1'), 8}
end
""" + _EPOCH.replace("SEEN", "ARGV[6]") + """
local flags = 0
if redis.call('EXISTS', KEYS[7]) == 1 or ARGV[8] == 'cancel' then flags = 2 end
if redis.call('EXISTS', KEYS[2]) == 1 then return {-1, epoch, flags} end
if ARGV[7] ~= '' then
  local seen = redis.call('ZSCORE', KEYS[6], ARGV[7])
  if seen then return {tonumber(seen), epoch, flags + 1} end
end
if ARGV[8] == 'stalled' and tonumber(redis.call('ZSCORE', KEYS[9], ARGV[11]) or '0') >= 0 then
  return {0, epoch, flags + 8}
end
local id = redis.call('INCR', KEYS[1])
local entry = string.format('%d', id) .. '\\n' .. ARGV[1] .. '\\n' .. ARGV[2]
""" + _PUSH.replace("MAX_EVENTS", "ARGV[3]").replace("MAX_BYTES", "ARGV[4]") + """
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[3], ARGV[5])
redis.call('EXPIRE', KEYS[4], ARGV[5])
if ARGV[7] ~= '' then
  redis.call('ZADD', KEYS[6], id, ARGV[7])
  redis.call('ZREMRANGEBYRANK', KEYS[6], 0, -1 - tonumber(ARGV[9]))
  redis.call('EXPIRE', KEYS[6], ARGV[5])
end
if ARGV[8] == 'cancel' and redis.call('EXISTS', KEYS[7]) == 0 then redis.call('SET', KEYS[7], id) end
if flags == 2 then redis.call('EXPIRE', KEYS[7], ARGV[5]) end
if ARGV[10] == '1' then
  if ARGV[8] == 'report' then
    local t = redis.call('TIME')
    local stalled = tonumber(redis.call('ZSCORE', KEYS[9], ARGV[11]) or '0')
    if stalled ~= 0 then redis.call('ZREM', KEYS[9], ARGV[11]) end
    if stalled > 0 then flags = flags + 4 end
    redis.call('ZADD', KEYS[8], t[1] * 1000 + math.floor(t[2] / 1000), ARGV[11])
  elseif ARGV[8] == 'stalled' then
    redis.call('ZADD', KEYS[9], -tonumber(redis.call('ZSCORE', KEYS[9], ARGV[11])), ARGV[11])
  end
end
local d = 12
"""
APPEND_RESULT = "return {id, epoch, flags}\n"
APPEND = APPEND_BODY + APPEND_RESULT

# ARGV: max events, max bytes, closed ttl seconds, seen epoch, execution id.
# Returns {id of stream-closed, 1 if this call closed it, epoch}.
CLOSE = _EPOCH.replace("SEEN", "ARGV[4]") + """
local done = redis.call('GET', KEYS[2])
if done then return {tonumber(done), 0, epoch} end
local id = redis.call('INCR', KEYS[1])
local entry = string.format('%d', id) .. '\\n""" + STREAM_CLOSED + """\\n'
""" + _PUSH.replace("MAX_EVENTS", "ARGV[1]").replace("MAX_BYTES", "ARGV[2]") + """
redis.call('SET', KEYS[2], id, 'EX', ARGV[3])
for _, k in ipairs({1, 3, 4, 6, 7}) do redis.call('EXPIRE', KEYS[k], ARGV[3]) end
redis.call('ZREM', KEYS[8], ARGV[5])
redis.call('ZREM', KEYS[9], ARGV[5])
return {id, 1, epoch}
"""

# ARGV: after, upto (-1: to the end), at most this many events, at most about
# this many bytes (always at least one event). Returns {last id, closed 0/1,
# first retained id, {entries...}, epoch or -1 if the marker is missing}.
READ = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local closed = redis.call('EXISTS', KEYS[2])
local first = last - redis.call('LLEN', KEYS[3]) + 1
local upto = tonumber(ARGV[2])
if upto < 0 or upto > last then upto = last end
local start = math.max(tonumber(ARGV[1]) + 1, first) - first
local stop = upto - first
if tonumber(ARGV[3]) >= 0 then stop = math.min(stop, start + tonumber(ARGV[3]) - 1) end
local items = {}
if stop >= start then
  local budget = tonumber(ARGV[4])
  for _, item in ipairs(redis.call('LRANGE', KEYS[3], start, stop)) do
    if #items > 0 and budget < #item then break end
    budget = budget - #item
    items[#items + 1] = item
  end
end
return {last, closed, first, items, tonumber(redis.call('GET', KEYS[5]) or '-1')}
"""

# KEYS: the epoch marker. ARGV: seen epoch. Writes a new epoch if the marker is
# missing (see _EPOCH); returns the epoch.
ENSURE_EPOCH = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = math.max(tonumber(redis.call('TIME')[1]), tonumber(ARGV[1]) + 1)
  redis.call('SET', KEYS[1], epoch)
end
return tonumber(epoch)
"""

_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# Memberships of one or more streams, 5 KEYS each: members, then the log's keys
# (last, closed, events, bytes). ARGV: ttl ms, 'XX' to refresh only existing
# members or '', then each stream's member. A log with open streams is kept at
# least as long as its members (as the memory store keeps it). One call touches
# many (the heartbeat of a process serving thousands of streams).
TOUCH_MEMBER = _NOW_MS + """
local ttl = tonumber(ARGV[1])
for m = 3, #ARGV do
  local k = (m - 3) * 5
  local member = ARGV[m]
  if ARGV[2] ~= 'XX' or redis.call('ZSCORE', KEYS[k + 1], member) ~= false then
    redis.call('ZADD', KEYS[k + 1], now + ttl, member)
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 1], '-inf', now)
    for i = 1, 5 do
      local left = redis.call('PTTL', KEYS[k + i])
      if left < ttl and (i == 1 or left >= 0) then
        redis.call('PEXPIRE', KEYS[k + i], ttl)
      end
    end
  end
end
return 1
"""

# KEYS: members. Drops expired entries, returns how many are left.
COUNT = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""

# -- operations: leases, stalls and the admin listing --------------------------

# KEYS: activity, stalled. ARGV: stall after ms, limit, forget after ms. Returns
# {id, last report ms, ...} of open executions silent that long, each moved to
# `stalled` (score -last: its notice pending) in the same atomic step, so exactly
# one caller gets each; stalled entries older than `forget after` are dropped.
CLAIM_STALLED = _NOW_MS + """
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]),
  'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
for i = 1, #rows, 2 do
  redis.call('ZREM', KEYS[1], rows[i])
  redis.call('ZADD', KEYS[2], -tonumber(rows[i + 1]), rows[i])
end
local old = now - tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], 0, old)
redis.call('ZREMRANGEBYSCORE', KEYS[2], -old, '(0')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', old)
return rows
"""

# KEYS: leases. ARGV: execution id, ttl ms. Expiry by Redis's clock.
HOLD_LEASE = _NOW_MS + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""

# KEYS: leases. ARGV: grace ms, limit. Returns the expired ids, each pushed
# `grace` ahead in the same atomic step (so exactly one caller gets each).
CLAIM_LEASES = _NOW_MS + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), id) end
return ids
"""

# KEYS: last, closed, events, members (one hash slot). Returns {last id, closed
# 0/1, PTTL of last, last event name, data of the first event if it is
# execution-start (else ''), unexpired members}.
SUMMARY = _NOW_MS + """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local closed = redis.call('EXISTS', KEYS[2])
local pttl = redis.call('PTTL', KEYS[1])
local name = ''
local tip = redis.call('LINDEX', KEYS[3], -1)
if tip then
  local a = string.find(tip, '\\n', 1, true)
  local b = string.find(tip, '\\n', a + 1, true)
  name = string.sub(tip, a + 1, (b or 0) - 1)
end
local start = ''
local first = redis.call('LINDEX', KEYS[3], 0)
if first and string.len(first) < 4096 then
  local a = string.find(first, '\\n', 1, true)
  local b = string.find(first, '\\n', a + 1, true)
  if b and string.sub(first, a + 1, b - 1) == 'execution-start' then start = string.sub(first, b + 1) end
end
local viewers = redis.call('ZCOUNT', KEYS[4], '(' .. now, '+inf')
return {last, closed, pttl, name, start, viewers}
"""
