"""The Lua scripts of the Redis store, one atomic script per state change.

Per-queue scripts receive the same sixteen KEYS (see ``QUEUE_KEYS``), all
carrying the queue's hash tag ``{queue}``, so each runs on one cluster slot.
Message ids inside a queue are the queue's own sequence numbers (``seq``);
the store combines them with the queue's number into the public id.
Times are epoch seconds from the calling process (``ARGV``), as in SQLite.

Global scripts touch only keys tagged ``{%}`` (one slot).  The one
exception is ``ROUTE`` (``put_routed``'s direct routing and insert in one
round trip): it reads the bindings under ``{%}`` and derives the keys of each
matching queue from the prefix, so it spans slots and runs on a standalone
server only (the ``publish_routing="client"`` option avoids it).
"""

from __future__ import annotations

import hashlib


class Script:
    """A script's text and its SHA1 (``EVALSHA``; the store loads it on a miss)."""

    __slots__ = ("text", "sha")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


#: suffixes of the per-queue keys, in KEYS order (1-based in Lua)
QUEUE_KEYS = (
    "r0", "r1", "r2",  # 1-3  ready ids per lane (high, normal, low), zset scored by seq: FIFO
    "sc",              # 4    scheduled (ETA) ids, zset scored by visible_at
    "ls",              # 5    leased ids, zset scored by lease expiry
    "ex",              # 6    ids with an expiry, zset scored by expires_at
    "ln",              # 7    hash seq -> lane
    "dv",              # 8    hash seq -> deliveries
    "ow",              # 9    hash seq -> lease owner
    "m",               # 10   hash seq -> payload
    "dd",              # 11   dead ids, zset scored by seq
    "dr",              # 12   hash seq -> dead reason
    "meta",            # 13   hash: d (declared), t (message_ttl seconds)
    "seq",             # 14   string: last seq (kept a day after a delete: ids never repeat)
    "pt",              # 15   hash seq -> put time (for queue_stats' oldest_ready_at)
    "cn",              # 16   hash: s<lane> / l<lane> / d<lane> scheduled / leased / dead
                       #      counts per lane, exact once v=1 (STATS rebuilds it then)
)

_SUFFIXES = "local SUFFIXES = {" + ", ".join(f"'{k}'" for k in QUEUE_KEYS) + "}\n"

_PRELUDE = """
local R = {KEYS[1], KEYS[2], KEYS[3]}
local SC, LS, EX, LN, DV, OW = KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local M, DD, DR, META, SEQ = KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14]
local PT, CN = KEYS[15], KEYS[16]
local function lane_key(id)
  local lane = redis.call('HGET', LN, id)
  if lane then return R[tonumber(lane) + 1] end
  return nil
end
-- count(kind, id, n): add n to the per-lane count of kind s / l / d (see QUEUE_KEYS' cn)
local function count(kind, id, n)
  local lane = redis.call('HGET', LN, id)
  if lane then redis.call('HINCRBY', CN, kind .. lane, n) end
end
local function forget(id)
  local key = lane_key(id)
  if key then redis.call('ZREM', key, id) end
  if redis.call('ZREM', SC, id) == 1 then count('s', id, -1) end
  if redis.call('ZREM', LS, id) == 1 then count('l', id, -1) end
  redis.call('ZREM', EX, id)
  if redis.call('ZREM', DD, id) == 1 then count('d', id, -1) end
  redis.call('HDEL', M, id)
  redis.call('HDEL', LN, id)
  redis.call('HDEL', DV, id)
  redis.call('HDEL', OW, id)
  redis.call('HDEL', DR, id)
  redis.call('HDEL', PT, id)
end
-- due ETA messages and expired leases turn ready; then waiting messages
-- past their expiry are dropped (leased and dead ones are kept).
local function restore(now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', SC, '-inf', now, 'LIMIT', 0, 1000)) do
    redis.call('ZREM', SC, id)
    count('s', id, -1)
    redis.call('ZADD', lane_key(id), id, id)
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', LS, '-inf', now, 'LIMIT', 0, 1000)) do
    redis.call('ZREM', LS, id)
    count('l', id, -1)
    redis.call('HDEL', OW, id)
    redis.call('ZADD', lane_key(id), id, id)
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', EX, '-inf', now, 'LIMIT', 0, 1000)) do
    if not redis.call('ZSCORE', LS, id) and not redis.call('ZSCORE', DD, id) then
      forget(id)
    end
  end
end
"""

# put_messages(K, now, argv, from): the put logic, shared by PUT and ROUTE (now: the
# time as ARGV gave it).  K is a queue's key list in QUEUE_KEYS order; reads META.t
# and r0-r2, writes SEQ, M, LN, PT, r<lane> or SC (and CN), EX.  argv[from...] holds
# per message: lane, visible_at, expires_at or '', payload.  Returns the new seqs in
# order and whether consumers need a wake-up.
#
# Wake-ups: a consumer only waits after a reserve came back short, that is after
# it saw the queue with no ready message.  So a put wakes when the queue had no
# ready message before it (and always for an ETA message: waiters re-read the next
# due time); a put into a queue that already has ready messages wakes nobody, as
# every consumer of it is still busy or already woken.  Messages that turn ready
# without a put (due ETAs, expired leases) are found by the consumers' due timers.
_PUT_FN = """
local function put_messages(K, now_text, argv, from)
  local now = tonumber(now_text)
  local ttl = redis.call('HGET', K[13], 't')
  local wake = redis.call('ZCARD', K[1]) + redis.call('ZCARD', K[2])
               + redis.call('ZCARD', K[3]) == 0
  redis.call('PERSIST', K[14])
  local out = {}
  for i = from, #argv, 4 do
    local id = redis.call('INCR', K[14])
    local lane = tonumber(argv[i])
    local vis = tonumber(argv[i + 1])
    redis.call('HSET', K[10], id, argv[i + 3])
    redis.call('HSET', K[7], id, lane)
    redis.call('HSET', K[15], id, now_text)
    if vis > now then
      redis.call('ZADD', K[4], vis, id)
      redis.call('HINCRBY', K[16], 's' .. lane, 1)
      wake = true
    else
      redis.call('ZADD', K[lane + 1], id, id)
    end
    local e = nil
    if argv[i + 2] ~= '' then e = tonumber(argv[i + 2]) end
    if ttl then
      local t = now + tonumber(ttl)
      if (not e) or t < e then e = t end
    end
    if e then redis.call('ZADD', K[6], e, id) end
    out[#out + 1] = id
  end
  return out, wake
end
"""

# put: store messages of one queue; publish a wake-up when needed (see above).
# KEYS: QUEUE_KEYS.  ARGV: now, wake channel, then per message: lane, visible_at,
# expires_at or '', payload.  Returns the new seqs in order.
PUT = _PUT_FN + """
local out, wake = put_messages(KEYS, ARGV[1], ARGV, 3)
if wake then redis.call('PUBLISH', ARGV[2], '1') end
return out
"""

# route: direct routing and the put, in one step (put_routed; standalone servers
# only: the queues' keys are derived here, not declared, and span slots).
# KEYS: <stem>b:<exchange> (bindings hash, field JSON [routing_key, queue]) and
# <stem>queues (the registry set), both tagged {%}; per matching queue its
# QUEUE_KEYS under <prefix>{<tag of queue>}:.
# ARGV: prefix, the start of a matching field ('["<routing_key>", '), now, wake
# channel, lane, visible_at, expires_at or '', payload.  Returns how many queues got it.
ROUTE = _SUFFIXES + _PUT_FN + """
local head = ARGV[2]
local n, wake = 0, false
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, #head) == head then
    local q = cjson.decode(field)[2]
    local tag = '%00'
    if q ~= '' then
      tag = string.gsub(string.gsub(string.gsub(q, '%%', '%%25'), '{', '%%7B'), '}', '%%7D')
    end
    local stem = ARGV[1] .. '{' .. tag .. '}:'
    local K = {}
    for i, suffix in ipairs(SUFFIXES) do K[i] = stem .. suffix end
    local _, woke = put_messages(K, ARGV[3], ARGV, 5)
    wake = wake or woke
    redis.call('SADD', KEYS[2], q)
    n = n + 1
  end
end
if wake then redis.call('PUBLISH', ARGV[4], '1') end
return n
"""

# reserve: restore, then lease ready heads high lane first, FIFO per lane.
# KEYS: QUEUE_KEYS.  Writes SC, LS, EX, r0-r2, OW, DV, CN (and forgets dropped messages).
# ARGV: now, lease until, owner, limit, quota per lane (3).  limit 0: probe only,
# returning the ready count of each lane.  Returns seq, lane, deliveries, payload, ...
# and, last, how many ready messages are left.
RESERVE = _PRELUDE + """
restore(ARGV[1])
local limit = tonumber(ARGV[4])
if limit == 0 then
  return {redis.call('ZCARD', R[1]), redis.call('ZCARD', R[2]), redis.call('ZCARD', R[3])}
end
local out, n = {}, 0
for lane = 0, 2 do
  local want = math.min(tonumber(ARGV[5 + lane]), limit - n)
  if want > 0 then
    local popped = redis.call('ZPOPMIN', R[lane + 1], want)
    for j = 1, #popped, 2 do
      local id = popped[j]
      redis.call('ZADD', LS, ARGV[2], id)
      redis.call('HINCRBY', CN, 'l' .. lane, 1)
      redis.call('HSET', OW, id, ARGV[3])
      out[#out + 1] = id
      out[#out + 1] = lane
      out[#out + 1] = redis.call('HINCRBY', DV, id, 1)
      out[#out + 1] = redis.call('HGET', M, id) or ''
      n = n + 1
    end
  end
end
out[#out + 1] = redis.call('ZCARD', R[1]) + redis.call('ZCARD', R[2]) + redis.call('ZCARD', R[3])
return out
"""

# ack: delete messages in any state.  KEYS: QUEUE_KEYS (all but META, SEQ).  ARGV: seqs.
ACK = _PRELUDE + """
for _, id in ipairs(ARGV) do forget(id) end
return #ARGV
"""

# release: leases still held by owner turn ready at their FIFO place; wake consumers.
# KEYS: QUEUE_KEYS (LS, OW, LN, r0-r2, CN).  ARGV: owner, wake channel, seqs.
RELEASE = _PRELUDE + """
local n = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', OW, id) == ARGV[1] and redis.call('ZSCORE', LS, id) then
    redis.call('ZREM', LS, id)
    count('l', id, -1)
    redis.call('HDEL', OW, id)
    redis.call('ZADD', lane_key(id), id, id)
    n = n + 1
  end
end
if n > 0 then redis.call('PUBLISH', ARGV[2], '1') end
return n
"""

# renew: extend leases owner still holds.  KEYS: QUEUE_KEYS (LS, OW).
# ARGV: owner, until, seqs.  Returns how many were renewed.
RENEW = _PRELUDE + """
local n = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', OW, id) == ARGV[1] and redis.call('ZSCORE', LS, id) then
    redis.call('ZADD', LS, 'XX', ARGV[2], id)
    n = n + 1
  end
end
return n
"""

# dead: a stored message leaves every live set and joins DD with its reason.
# KEYS: QUEUE_KEYS (r0-r2, SC, LS, EX, OW, DD, DR, CN).  ARGV: seq, reason.
DEAD = _PRELUDE + """
local id = ARGV[1]
if redis.call('HEXISTS', M, id) == 0 then return 0 end
local key = lane_key(id)
if key then redis.call('ZREM', key, id) end
if redis.call('ZREM', SC, id) == 1 then count('s', id, -1) end
if redis.call('ZREM', LS, id) == 1 then count('l', id, -1) end
redis.call('ZREM', EX, id)
redis.call('HDEL', OW, id)
if redis.call('ZADD', DD, id, id) == 1 then count('d', id, 1) end
redis.call('HSET', DR, id, ARGV[2])
return 1
"""

# purge: forget ready and scheduled messages; leased and dead ones stay.
# KEYS: QUEUE_KEYS.  Returns the count.
PURGE = _PRELUDE + """
local n = 0
for _, key in ipairs({R[1], R[2], R[3], SC}) do
  for _, id in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    forget(id)
    n = n + 1
  end
end
return n
"""

# declare: mark the queue declared; the first message_ttl wins.
# KEYS: QUEUE_KEYS (META).  ARGV: message_ttl or ''.  Returns 1 when newly declared.
DECLARE = """
if redis.call('HSETNX', KEYS[13], 'd', '1') == 0 then return 0 end
if ARGV[1] ~= '' then redis.call('HSET', KEYS[13], 't', ARGV[1]) end
return 1
"""

# drop: delete every key of the queue; SEQ lives on for a day so ids never repeat.
# KEYS: QUEUE_KEYS.
DROP = """
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8],
           KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[15], KEYS[16])
if redis.call('EXISTS', KEYS[14]) == 1 then redis.call('EXPIRE', KEYS[14], 86400) end
return 1
"""

# stats: what waits in each lane, for queue_stats.  Restores first (as a reserve would),
# and rebuilds CN from the sets when it is not yet marked exact (a queue filled by an
# older release; every script keeps it exact from then on).  KEYS: QUEUE_KEYS.
# ARGV: now.  Returns declared (0/1), then per lane: ready, scheduled, leased, dead,
# put time of the oldest ready message or ''.
STATS = _PRELUDE + """
restore(ARGV[1])
if redis.call('HGET', CN, 'v') ~= '1' then
  local c = {}
  for _, kind in ipairs({'s', 'l', 'd'}) do
    for lane = 0, 2 do c[kind .. lane] = 0 end
  end
  for kind, key in pairs({s = SC, l = LS, d = DD}) do
    for _, id in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      local lane = redis.call('HGET', LN, id)
      if lane then c[kind .. lane] = c[kind .. lane] + 1 end
    end
  end
  local flat = {'v', '1'}
  for k, v in pairs(c) do flat[#flat + 1] = k; flat[#flat + 1] = v end
  redis.call('HSET', CN, unpack(flat))
end
local out = {redis.call('HEXISTS', META, 'd')}
local cn = redis.call('HMGET', CN, 's0', 'l0', 'd0', 's1', 'l1', 'd1', 's2', 'l2', 'd2')
for lane = 0, 2 do
  local head = redis.call('ZRANGE', R[lane + 1], 0, 0)
  local at = ''
  if head[1] then at = redis.call('HGET', PT, head[1]) or '' end
  out[#out + 1] = redis.call('ZCARD', R[lane + 1])
  for j = 1, 3 do out[#out + 1] = tonumber(cn[lane * 3 + j] or '0') end
  out[#out + 1] = at
end
return out
"""

# -- global scripts: keys tagged {%} --------------------------------------------------

# number: the queue's number (allocated once, never reused).
# KEYS: qno (hash queue -> n), qname (hash n -> queue), qseq (counter).  ARGV: queue.
NUMBER = """
local n = redis.call('HGET', KEYS[1], ARGV[1])
if n then return tonumber(n) end
n = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], ARGV[1], n)
redis.call('HSET', KEYS[2], n, ARGV[1])
return n
"""

# register: record a declared queue; a new queue's expires wins, an old one is touched.
# KEYS: queues (set), qexp (hash queue -> expires seconds), idle (zset queue -> deadline).
# ARGV: queue, created (0/1), expires or '', now.
REGISTER = """
redis.call('SADD', KEYS[1], ARGV[1])
if ARGV[3] == '' then return 0 end
if ARGV[2] == '1' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
local e = redis.call('HGET', KEYS[2], ARGV[1])
if e then redis.call('ZADD', KEYS[3], tonumber(ARGV[4]) + tonumber(e), ARGV[1]) end
return 1
"""

# touch: push back the idle deadline of queues declared with expires.
# KEYS: qexp, idle.  ARGV: now, queues.
TOUCH = """
for i = 2, #ARGV do
  local e = redis.call('HGET', KEYS[1], ARGV[i])
  if e then redis.call('ZADD', KEYS[2], tonumber(ARGV[1]) + tonumber(e), ARGV[i]) end
end
return 0
"""

# unregister: forget queues and their bindings (idle ones when ARGV[2] is '', else the
# queues named from ARGV[3] on).  Returns the queues forgotten.
# KEYS: queues, qexp, idle.  Also the {%} keys derived from ARGV[1] (the global key
# stem): <stem>bq:<queue> (set of JSON [exchange, field]) and <stem>b:<exchange>
# (hash field JSON [routing_key, queue] -> JSON pattern).
UNREGISTER = """
local stem = ARGV[1]
local names = {}
if ARGV[2] == '' then
  names = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[3])
else
  for i = 3, #ARGV do names[#names + 1] = ARGV[i] end
end
for _, q in ipairs(names) do
  redis.call('SREM', KEYS[1], q)
  redis.call('HDEL', KEYS[2], q)
  redis.call('ZREM', KEYS[3], q)
  local bq = stem .. 'bq:' .. q
  for _, member in ipairs(redis.call('SMEMBERS', bq)) do
    local pair = cjson.decode(member)
    redis.call('HDEL', stem .. 'b:' .. pair[1], pair[2])
  end
  redis.call('DEL', bq)
end
return names
"""

# -- key/value: one key each ---------------------------------------------------------

# kv_add: store ARGV[1] at KEYS[1] unless a value is there (an expired key is not).
# KEYS: P kv:<key>.  ARGV: value, ttl in ms ('' for none, '0' for already expired).
# Returns {} when stored, else {the value there} (left untouched).
KV_ADD = """
local v = redis.call('GET', KEYS[1])
if v then return {v} end
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
elseif ARGV[2] ~= '0' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return {}
"""
