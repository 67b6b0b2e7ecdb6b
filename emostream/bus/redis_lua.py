"""The Redis bus's Lua scripts: publish with the trim rule, trim, and the atomic commit of outputs + acks.

Kept apart from :mod:`emostream.bus.redis` so the Python client code and the server-side scripts each
read on their own."""

LUA_ROOM = """
local function id_lt(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, bm = tonumber(am), tonumber(bm)
  if am ~= bm then return am < bm end
  return tonumber(as) < tonumber(bs)
end
local function after(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return ms .. '-' .. string.format('%.0f', tonumber(seq) + 1)
end
-- Oldest id some consumer group still needs (pending, or not yet delivered); false without groups.
local function needed(key)
  local low = false
  local groups = redis.call('XINFO', 'GROUPS', key)
  for _, g in ipairs(groups) do
    local f = {}
    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
    local id
    if tonumber(f['pending']) > 0 then
      id = redis.call('XPENDING', key, f['name'])[2]
    else
      id = after(f['last-delivered-id'])
    end
    if not low or id_lt(id, low) then low = id end
  end
  return low, #groups
end
-- Trim by retention and the cap, never past what a group still needs; true when `need` more entries fit.
local function room(key, maxlen, ret_ms, need)
  if need > maxlen then need = maxlen end
  local len = redis.call('XLEN', key)
  if len == 0 then return true end
  local cut = false
  if ret_ms > 0 then
    local t = redis.call('TIME')
    local edge_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - ret_ms
    local edge = string.format('%.0f', edge_ms) .. '-0'
    if id_lt(redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1][1], edge) then cut = edge end
  end
  local full = len + need > maxlen
  if not full and not cut then return true end
  local low, ngroups = needed(key)
  if full then
    local drop = len + need - maxlen
    if ngroups > 0 then drop = math.max(drop, len - math.floor(maxlen * 0.9)) end
    local rows = redis.call('XRANGE', key, '-', '+', 'COUNT', drop + 1)
    local edge
    if #rows > drop then edge = rows[drop + 1][1] else edge = after(rows[#rows][1]) end
    if not cut or id_lt(cut, edge) then cut = edge end
  end
  if low and id_lt(low, cut) then cut = low end
  redis.call('XTRIM', key, 'MINID', cut)
  return redis.call('XLEN', key) + need <= maxlen
end
-- Blobs: a hash (d = bytes, n = references). An entry's `b` field lists the refs its message holds
-- (a msgpack array of strings: a ref may contain any byte).
local function hold(prefix, refs, n, hold_ms)
  for _, ref in ipairs(cmsgpack.unpack(refs)) do
    local bk = prefix .. ref
    if redis.call('EXISTS', bk) == 1 then
      if n > 0 then redis.call('HINCRBY', bk, 'n', n) end
      local ttl = redis.call('PTTL', bk)
      if ttl >= 0 and ttl < hold_ms then redis.call('PEXPIRE', bk, hold_ms) end
    end
  end
end
local function unref(prefix, refs)
  for _, ref in ipairs(cmsgpack.unpack(refs)) do
    local bk = prefix .. ref
    if redis.call('EXISTS', bk) == 1 and redis.call('HINCRBY', bk, 'n', -1) <= 0 then
      redis.call('DEL', bk)
    end
  end
end
-- XADD one message (with its blob refs) and take one reference per consumer group of the stream.
local function add(key, payload, refs, prefix, hold_ms)
  if refs == '' then return redis.call('XADD', key, '*', 'd', payload) end
  local id = redis.call('XADD', key, '*', 'd', payload, 'b', refs)
  local groups = #redis.call('XINFO', 'GROUPS', key)
  if groups > 0 then hold(prefix, refs, groups, hold_ms) end
  return id
end
-- XACK ids one by one; each entry acked here (not before) gives back its blob references.
local function ack(key, group, prefix, first, last)
  local acked = 0
  for i = first, last do
    if redis.call('XACK', key, group, ARGV[i]) == 1 then
      acked = acked + 1
      local rows = redis.call('XRANGE', key, ARGV[i], ARGV[i])
      if #rows > 0 then
        local f = rows[1][2]
        for j = 1, #f, 2 do
          if f[j] == 'b' then unref(prefix, f[j + 1]) end
        end
      end
    end
  end
  return acked
end
"""
"""Shared Lua: the trim rule. Entries go by retention or the cap only once every group has read and
acked them (MINID up to the oldest entry still pending or undelivered across the stream's groups).
At the cap a stream with groups is trimmed to 90% (amortizes the group scan); a ring to maxlen."""

PUBLISH_SCRIPT = (
    LUA_ROOM
    + """
local maxlen, ret, prefix, hold_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local ids = {}
for i = 5, #ARGV, 2 do
  if not room(KEYS[1], maxlen, ret, 1) then break end
  ids[#ids + 1] = add(KEYS[1], ARGV[i], ARGV[i + 1], prefix, hold_ms)
end
return ids
"""
)
"""Append payloads while they fit; returns the ids added (fewer than given: the stream is full).
ARGV: maxlen, retention ms, key prefix, blob hold ms, then (payload, blob refs) pairs."""

ACK_SCRIPT = (
    LUA_ROOM
    + """
return ack(KEYS[1], ARGV[1], ARGV[2], 3, #ARGV)
"""
)
"""XACK that releases the acked entries' blobs. ARGV: group, key prefix, ids."""

RENEW_SCRIPT = (
    LUA_ROOM
    + """
for i = 3, #ARGV do hold(ARGV[1], ARGV[i], 0, tonumber(ARGV[2])) end
return 1
"""
)
"""Renew the lease of blobs whose messages were reclaimed. ARGV: key prefix, hold ms, then each
message's refs (its entry's ``b`` field)."""

PUT_SCRIPT = """
local bk, ttl = KEYS[1], tonumber(ARGV[2])
redis.call('HSET', bk, 'd', ARGV[1])
redis.call('HSETNX', bk, 'n', 0)
if redis.call('PTTL', bk) < ttl then redis.call('PEXPIRE', bk, ttl) end
return 1
"""
"""Store a blob (hash: d = bytes, n = references): a new one lives ARGV[2] ms; storing an existing key
again replaces the bytes and keeps its references and any longer life."""

TRIM_SCRIPT = (
    LUA_ROOM
    + """
return room(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), 0) and 1 or 0
"""
)

COMMIT_SCRIPT = (
    LUA_ROOM
    + """
local maxlen, n, prefix, hold_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local need, ret = {}, {}
for i = 1, n do
  need[KEYS[i]] = (need[KEYS[i]] or 0) + 1
  ret[KEYS[i]] = tonumber(ARGV[4 + i])
end
for key, k in pairs(need) do
  if not room(key, maxlen, ret[key], k) then return {-1, key} end
end
local a = 5 + n
for i = 1, n do
  add(KEYS[i], ARGV[a], ARGV[a + 1], prefix, hold_ms)
  a = a + 2
end
local acked = 0
for j = n + 1, #KEYS do
  local group, k = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  acked = acked + ack(KEYS[j], group, prefix, a, a + k - 1)
  a = a + k
end
return {acked}
"""
)
"""Publish outputs then ack inputs, atomically; nothing at all when an output stream is full (returns
{-1, key}). KEYS: output streams, then input streams. ARGV: maxlen, number of outputs, key prefix, blob
hold ms, retention ms per output, (payload, blob refs) per output, then per input stream: group, n, n
ids. Blob keys are not in KEYS (they are named by the entries): standalone Redis only, like the rest."""

ADVANCE_SCRIPT = (
    LUA_ROOM
    + """
local group, expected, last, maxlen = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local cur = false
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  if f['name'] == group then cur = f['last-delivered-id'] end
end
if not cur then return redis.error_reply('NOGROUP no consumer group ' .. group .. ' on ' .. KEYS[1]) end
if cur ~= expected then return {0, cur} end
local n = #KEYS - 1
local need, ret = {}, {}
for i = 1, n do
  need[KEYS[i + 1]] = (need[KEYS[i + 1]] or 0) + 1
  ret[KEYS[i + 1]] = tonumber(ARGV[4 + i])
end
for key, k in pairs(need) do
  if not room(key, maxlen, ret[key], k) then return {-1, key} end
end
for i = 1, n do
  redis.call('XADD', KEYS[i + 1], '*', 'd', ARGV[4 + n + i])
end
redis.call('XGROUP', 'SETID', KEYS[1], group, last)
return {1}
"""
)
"""Compare-and-set a group's cursor with publishing (Bus.advance_group): while ``group`` of KEYS[1] is
still at ``expected``, append the outputs and set the cursor to ``last``; {0, cursor} when it moved,
{-1, key} when an output stream is full (nothing done). KEYS: source, then one per output. ARGV:
group, expected, last, maxlen, retention ms per output, payload per output."""
