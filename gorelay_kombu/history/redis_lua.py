"""The Lua scripts of the Redis task history (see :mod:`.redis`).

Every history key starts with the stem ``P{%h}:`` (``P`` the store's
prefix), so the whole history shares one hash tag, ``{%h}``, and one Redis
Cluster slot: a record batch touches a task's hash, its timeline and five
indexes at once, and one slot is what lets that be one atomic script.  (No
queue can take the tag: the store escapes ``%`` in queue names.)  Scripts
get the stem in ``ARGV[1]`` and derive their keys from it; ``KEYS[1]`` is
``<stem>all``, which routes the script to the slot.  Keys:

* ``t:<id>``  hash: the record's fields (``TASK_FIELDS``), ``state``,
  ``updated_at``, ``sent_at``, ``received_at``, ``started_at``,
  ``finished_at``, ``seq`` (from ``seq``, when the task was first recorded);
  ``@state``: the ``at`` of the event that set the state.
  An event not older than ``updated_at`` overwrites the fields it carries
  (``HSET``), an older one only fills missing ones (``HSETNX``).
* ``e:<id>``  list: the timeline, JSON ``[at, event, worker, info]`` in
  arrival order (readers sort it by ``at``, stably).
* ``seq``: counter, the last ``seq`` given to a new task.
* ``all``, ``s:<state>``, ``q:<queue>``, ``n:<name>``, ``r:<root_id>``: zsets
  task id -> ``seq``, the indexes every listing walks (an update touches one
  only when it changes that column); state counts are the ``ZCARD`` of
  ``s:<state>``.
* ``u:<state>``: zset task id -> ``updated_at`` of the tasks in that state
  (what ``prune`` walks).
* ``names``: zset name -> 0 (lexicographic).
* ``tp``: hash ``s<minute>`` / ``f<minute>`` -> succeeded / failed+dead
  events of that minute; ``tpm``: zset of the minutes ``tp`` holds.
* ``rt``: hash ``b<i>`` -> runtimes that fell in bucket ``i`` (not
  cumulative; ``i`` = 13 is +Inf), ``count``, ``sum``.
* ``workers``: zset hostname -> last_seen; ``w:<hostname>``: hash pid,
  pool, concurrency, queues (JSON), started_at, last_seen, done, failed,
  stopped (``1``/``0``).

Times travel as Python's ``repr`` of the float and are stored as given
(Lua's ``tostring`` keeps only 14 digits); Lua compares them with
``tonumber``.
"""

from __future__ import annotations

_COMMON = """
local stem = ARGV[1]
local DIMS = {'s:', 'q:', 'n:', 'r:'}
local HEAD = {'state', 'queue', 'name', 'root_id', 'updated_at', 'seq'}
"""

# record: apply task events in arrival order (History.record).  ARGV: stem, then per
# event 11 items: task id, at, state or '', stamp field ('sent_at' / 'received_at' /
# 'started_at' or ''), final ('1' or ''), throughput kind ('s' / 'f' / ''), minute,
# runtime bucket or '', runtime or '', timeline JSON, n; then n pairs field, value.
RECORD = _COMMON + """
local function newer(at, stored) return (not stored) or at >= tonumber(stored) end
local i = 2
while i <= #ARGV do
  local id, at_text, state, stamp = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local final, tp, minute, bucket = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local runtime, line, n = ARGV[i + 8], ARGV[i + 9], tonumber(ARGV[i + 10])
  local at = tonumber(at_text)
  local tk = stem .. 't:' .. id
  local old = redis.call('HMGET', tk, unpack(HEAD))
  local leading = true  -- not older than the record: its fields overwrite
  if not old[5] then  -- a new task: PENDING until an event says otherwise
    local seq = redis.call('INCR', stem .. 'seq')
    redis.call('HSET', tk, 'state', 'PENDING', 'updated_at', at_text, 'seq', seq)
    redis.call('ZADD', stem .. 'all', seq, id)
  else
    leading = at >= tonumber(old[5])
    if at > tonumber(old[5]) then redis.call('HSET', tk, 'updated_at', at_text) end
  end
  for j = i + 11, i + 9 + 2 * n, 2 do
    if leading then
      redis.call('HSET', tk, ARGV[j], ARGV[j + 1])
    else  -- an older event only fills fields still missing
      redis.call('HSETNX', tk, ARGV[j], ARGV[j + 1])
    end
  end
  if state ~= '' and newer(at, redis.call('HGET', tk, '@state')) then
    redis.call('HSET', tk, 'state', state, '@state', at_text)
  end
  if stamp ~= '' and newer(at, redis.call('HGET', tk, stamp)) then
    redis.call('HSET', tk, stamp, at_text)
  end
  if final == '1' and newer(at, redis.call('HGET', tk, 'finished_at')) then
    redis.call('HSET', tk, 'finished_at', at_text)
  end
  local new = redis.call('HMGET', tk, unpack(HEAD))
  for k, dim in ipairs(DIMS) do
    if old[k] ~= new[k] then
      if old[k] then redis.call('ZREM', stem .. dim .. old[k], id) end
      if new[k] then redis.call('ZADD', stem .. dim .. new[k], new[6], id) end
    end
  end
  if old[1] ~= new[1] then
    if old[1] then redis.call('ZREM', stem .. 'u:' .. old[1], id) end
    redis.call('ZADD', stem .. 'u:' .. new[1], new[5], id)
  elseif old[5] ~= new[5] then
    redis.call('ZADD', stem .. 'u:' .. new[1], new[5], id)
  end
  if new[3] and new[3] ~= old[3] then redis.call('ZADD', stem .. 'names', 0, new[3]) end
  redis.call('RPUSH', stem .. 'e:' .. id, line)
  if tp ~= '' then
    redis.call('HINCRBY', stem .. 'tp', tp .. minute, 1)
    redis.call('ZADD', stem .. 'tpm', minute, minute)
  end
  if bucket ~= '' then
    redis.call('HINCRBY', stem .. 'rt', 'b' .. bucket, 1)
    redis.call('HINCRBY', stem .. 'rt', 'count', 1)
    redis.call('HINCRBYFLOAT', stem .. 'rt', 'sum', runtime)
  end
  i = i + 11 + 2 * n
end
return 1
"""

# drop(id): delete a task, its timeline and its index entries; 1 if it existed.
_DROP_FN = """
local function drop(id)
  local tk = stem .. 't:' .. id
  local v = redis.call('HMGET', tk, unpack(HEAD))
  if not v[5] then return 0 end
  for k, dim in ipairs(DIMS) do
    if v[k] then redis.call('ZREM', stem .. dim .. v[k], id) end
  end
  redis.call('ZREM', stem .. 'u:' .. v[1], id)
  redis.call('ZREM', stem .. 'all', id)
  redis.call('DEL', tk, stem .. 'e:' .. id)
  return 1
end
"""

# delete: History.delete_tasks.  ARGV: stem, task ids.  Returns how many existed.
DELETE = _COMMON + _DROP_FN + """
local n = 0
for i = 2, #ARGV do n = n + drop(ARGV[i]) end
return n
"""

# prune: History.prune.  ARGV: stem, limit, then pairs state, exclusive cutoff
# ('(' .. updated_at).  Deletes at most limit tasks; returns how many.
PRUNE = _COMMON + _DROP_FN + """
local left = tonumber(ARGV[2])
for i = 3, #ARGV, 2 do
  if left <= 0 then break end
  local ids = redis.call('ZRANGEBYSCORE', stem .. 'u:' .. ARGV[i], '-inf', ARGV[i + 1],
                         'LIMIT', 0, left)
  for _, id in ipairs(ids) do left = left - drop(id) end
end
return tonumber(ARGV[2]) - left
"""

# list: one chunk of a filtered listing (History.tasks with several filters or a
# search).  KEYS: the index to walk.  ARGV: stem, start, count, newest first ('1' or
# ''), then state, queue, name, root_id, search, each '' (not given) or '=' .. value.
# Returns the ids of index[start .. start + count - 1] that match every filter
# (search: an id prefix, or a substring of args or kwargs) and, last, how many ids
# that range held (fewer than count: the index is exhausted).  Reads only.
LIST = _COMMON + """
local start, count = tonumber(ARGV[2]), tonumber(ARGV[3])
local ids
if ARGV[4] == '1' then
  ids = redis.call('ZREVRANGE', KEYS[1], start, start + count - 1)
else
  ids = redis.call('ZRANGE', KEYS[1], start, start + count - 1)
end
local want = {}
for k = 1, 4 do
  if ARGV[4 + k] ~= '' then want[k] = string.sub(ARGV[4 + k], 2) end
end
local search = nil
if ARGV[9] ~= '' then search = string.sub(ARGV[9], 2) end
local out = {}
for _, id in ipairs(ids) do
  local v = redis.call('HMGET', stem .. 't:' .. id, 'state', 'queue', 'name', 'root_id',
                       'args', 'kwargs')
  local ok = true
  for k = 1, 4 do
    if want[k] ~= nil and v[k] ~= want[k] then ok = false end
  end
  if ok and search ~= nil then
    ok = string.sub(id, 1, #search) == search
      or (v[5] and string.find(v[5], search, 1, true) ~= nil)
      or (v[6] and string.find(v[6], search, 1, true) ~= nil)
  end
  if ok then out[#out + 1] = id end
end
out[#out + 1] = #ids
return out
"""

# heartbeat: History.heartbeat.  ARGV: stem, then per beat 10 items: hostname, at,
# pid, pool, concurrency, queues JSON, started_at, done, failed, stopped ('1' / '0';
# pid ... started_at and stopped are '' when not given).  Given values overwrite
# (a new worker's stopped is '0'); done / failed add up.
HEARTBEAT = _COMMON + """
local NAMES = {'pid', 'pool', 'concurrency', 'queues', 'started_at'}
for i = 2, #ARGV, 10 do
  local wk = stem .. 'w:' .. ARGV[i]
  for k, name in ipairs(NAMES) do
    if ARGV[i + 1 + k] ~= '' then redis.call('HSET', wk, name, ARGV[i + 1 + k]) end
  end
  if ARGV[i + 9] ~= '' then
    redis.call('HSET', wk, 'stopped', ARGV[i + 9])
  else
    redis.call('HSETNX', wk, 'stopped', '0')
  end
  redis.call('HSET', wk, 'last_seen', ARGV[i + 1])
  redis.call('HINCRBY', wk, 'done', ARGV[i + 7])
  redis.call('HINCRBY', wk, 'failed', ARGV[i + 8])
  redis.call('ZADD', stem .. 'workers', ARGV[i + 1], ARGV[i])
end
return 1
"""

# forget: History.forget_workers.  ARGV: stem, exclusive cutoff ('(' .. seen_before).
# Returns how many workers were deleted.
FORGET = _COMMON + """
local hosts = redis.call('ZRANGEBYSCORE', stem .. 'workers', '-inf', ARGV[2])
for _, host in ipairs(hosts) do
  redis.call('DEL', stem .. 'w:' .. host)
  redis.call('ZREM', stem .. 'workers', host)
end
return #hosts
"""
