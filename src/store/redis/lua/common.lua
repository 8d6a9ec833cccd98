-- Shared prelude of every Herald script (prepended at build time).
--
-- ARGV[1] is the key prefix including its hash tag (e.g. "{herald}"), so
-- every key of one deployment lives in one Redis Cluster slot and a script
-- may touch any of them. ARGV[2] is the caller's clock, microseconds since
-- the epoch, as a decimal string.
--
-- Timestamps stay strings from end to end: Lua numbers are doubles, exact
-- for integers below 2^53 (fine for comparisons), but converting a large
-- one back to text may use an exponent and drop digits. So scripts compare
-- timestamps numerically but only ever store the strings they were given.
local P = ARGV[1]
local NOW = ARGV[2]
local DEPTH = P .. ':depth'
local EXPIRY = P .. ':expiry'
local DELAYED = P .. ':delayed'
local WEBHOOKS = P .. ':webhooks'
local WORK = P .. ':work'
local SEC, HOUR, DAY = 1000000, 3600000000, 86400000000

-- Connectors whose queues got work during this call; wake() publishes them.
local woken = {}
-- Ready-count changes per class, written once by gauges().
local depth_delta = {}
-- Kept early receipts per connector, counted once per call (most calls
-- have none, which saves a lookup per part).
local early_count = {}

local function mkey(id) return P .. ':m:' .. id end
local function qkey(conn, class) return P .. ':q:' .. conn .. ':' .. class end
local function smsc_key(conn) return P .. ':smsc:' .. conn end
local function early_key(conn) return P .. ':early:' .. conn end
local function claimed_key(node) return P .. ':claimed:' .. node end

local function count_depth(class, delta)
  local key = tostring(class)
  depth_delta[key] = (depth_delta[key] or 0) + delta
end

-- "a\nb\nc" -> {"a", "b", "c"}
local function split(s)
  local out = {}
  if s then
    for part in string.gmatch(s, '[^\n]+') do out[#out + 1] = part end
  end
  return out
end

-- The connector at route position `ri` ("\n"-joined route).
local function connector_at(route, ri)
  return split(route)[(tonumber(ri) or 0) + 1]
end

-- Puts a message in the ready queue of `conn` (its current connector).
local function enqueue_at(id, conn, class, seq, ex)
  if redis.call('ZADD', qkey(conn, class), seq, id) == 1 then
    count_depth(class, 1)
    redis.call('ZADD', EXPIRY, ex, id)
  end
  woken[conn] = true
end

-- Puts a message in the ready queue of its current connector.
local function enqueue(id, mk)
  local f = redis.call('HMGET', mk, 'rt', 'ri', 'cl', 'sq', 'ex')
  local conn = connector_at(f[1], f[2])
  if not conn then return false end
  enqueue_at(id, conn, f[3], f[4], f[5])
  return true
end

-- Takes a message out of the ready queue of `conn` if it is (still) there:
-- a claim took it out already, unless a takeover put it back meanwhile.
local function dequeue_at(id, conn, class)
  if conn and redis.call('ZREM', qkey(conn, class), id) == 1 then
    count_depth(class, -1)
    redis.call('ZREM', EXPIRY, id)
  end
end

local function dequeue(id, mk)
  local f = redis.call('HMGET', mk, 'rt', 'ri', 'cl')
  dequeue_at(id, connector_at(f[1], f[2]), f[3])
end

-- Member lists of groups (`glist:<id>`, immutable once written): `lcur`
-- marks those a group points at, `lpins` counts the broadcasts holding
-- each. A list that is neither goes.
local function release_list(list, delta, uncurrent)
  if uncurrent then redis.call('HDEL', P .. ':lcur', list) end
  local pins = redis.call('HINCRBY', P .. ':lpins', list, delta)
  if pins <= 0 then
    redis.call('HDEL', P .. ':lpins', list)
    if redis.call('HEXISTS', P .. ':lcur', list) == 0 then
      redis.call('UNLINK', P .. ':glist:' .. list)
    end
  end
end

-- The counter of a broadcast's messages in a status (see
-- `store::broadcast::StatusCounts`).
local function bcount_key(bc) return P .. ':b:' .. bc .. ':n' end
local function count_slot(status)
  if status == 'rejected' or status == 'rate_limited' then return 'failed' end
  return status
end

-- A message of broadcast `bc` moved from status `old` (nil: new) to `new`.
local function count_broadcast(bc, old, new)
  if old then redis.call('HINCRBY', bcount_key(bc), count_slot(old), -1) end
  redis.call('HINCRBY', bcount_key(bc), count_slot(new), 1)
end

-- How long a message is kept once its work is done (milliseconds), as the
-- last maintenance pass wrote it from `[retention] messages`; 30 days
-- until one has run.
local keep_ms
local function retain(mk)
  if keep_ms == nil then
    keep_ms = redis.call('HGET', P .. ':retention', 'm') or '2592000000'
  end
  redis.call('PEXPIRE', mk, keep_ms)
end

-- A final status: recorded (with `extra` field/value pairs in the same
-- write), its status webhook queued (`cb`: whether it has a callback URL;
-- nil to look it up), the record returned. With no webhook to deliver its
-- work is done, and its retention starts (a key TTL); otherwise it starts
-- when the webhook is finished.
local function finish(id, mk, status, at, finals, cb, extra)
  local before = redis.call('HMGET', mk, 'st', 'bc')
  if before[2] and before[1] ~= status then count_broadcast(before[2], before[1], status) end
  local args = { mk, 'st', status, 'da', at }
  for _, v in ipairs(extra or {}) do args[#args + 1] = v end
  redis.call('HSET', unpack(args))
  -- A sealed clear text (an OTP's) never outlives its message.
  redis.call('HDEL', mk, 'sb')
  -- Parts taken on an earlier try no longer count: their links go.
  local pt = redis.call('HMGET', mk, 'ptc', 'pti')
  if pt[1] and pt[2] then
    for sid in string.gmatch(pt[2], '[^\n]+') do redis.call('HDEL', smsc_key(pt[1]), sid) end
  end
  if cb == nil then cb = redis.call('HGET', mk, 'cb') end
  if cb == '1' then
    local member = 'm:' .. id
    redis.call('ZADD', WEBHOOKS, NOW, member)
    redis.call('HSET', P .. ':wh:' .. member, 'c', NOW, 'a', '0')
  else
    retain(mk)
  end
  finals[#finals + 1] = redis.call('HGETALL', mk)
end

-- One delivery receipt; kept aside when its submit is not recorded yet.
-- It counts for a message submitted through its connector, or for a long
-- message still queued whose parts taken on an earlier try it belongs to
-- (counted, not final until every part is in).
local function apply_receipt(conn, sid, delivered, err, at, finals)
  local id = redis.call('HGET', smsc_key(conn), sid)
  if not id then
    early_count[conn] = nil
    redis.call('HSET', early_key(conn), sid, delivered .. '\n' .. at .. '\n' .. err)
    redis.call('ZADD', P .. ':early_age', at, conn .. '\n' .. sid)
    return
  end
  redis.call('HDEL', smsc_key(conn), sid)
  local mk = mkey(id)
  local f = redis.call('HMGET', mk, 'st', 'cn', 'ptc', 'pd', 'pf', 'np', 'cb')
  local waiting_part = f[1] == 'queued' and f[3] == conn
  local submitted_here = f[1] == 'submitted' and f[2] == conn
  if not waiting_part and not submitted_here then return end
  local pd, pf = tonumber(f[4]) or 0, tonumber(f[5]) or 0
  local counted
  if delivered == '1' then
    pd = pd + 1
    counted = { 'pd', tostring(pd) }
  else
    pf = pf + 1
    counted = { 'pf', tostring(pf), 'er', err }
  end
  if submitted_here and pd + pf >= (tonumber(f[6]) or 1) then
    local status = 'failed'
    if pf == 0 then status = 'delivered' end
    finish(id, mk, status, at, finals, f[7] or '0', counted)
  else
    redis.call('HSET', mk, unpack(counted))
  end
end

-- Maps carrier ids of a message's parts to it, so their receipts find it;
-- receipts that came before are collected in `early` to apply afterwards.
local function link_parts(conn, sids, id, early)
  if early_count[conn] == nil then
    early_count[conn] = redis.call('HLEN', early_key(conn))
  end
  for _, sid in ipairs(sids) do
    redis.call('HSET', smsc_key(conn), sid, id)
    if early_count[conn] > 0 then
      local kept = redis.call('HGET', early_key(conn), sid)
      if kept then
        redis.call('HDEL', early_key(conn), sid)
        redis.call('ZREM', P .. ':early_age', conn .. '\n' .. sid)
        local delivered, at, err = string.match(kept, '^(%d)\n([^\n]*)\n(.*)$')
        if delivered then early[#early + 1] = { conn, sid, delivered, err, at } end
      end
    end
  end
end

local function apply_early(early, finals)
  for _, r in ipairs(early) do apply_receipt(r[1], r[2], r[3], r[4], r[5], finals) end
end

-- Forgets the parts a carrier took on earlier tries of a long message (it
-- moves to a connector that gets every part): their ids no longer lead to
-- it and their receipts no longer count.
local function unlink_partial(mk)
  local f = redis.call('HMGET', mk, 'ptc', 'pti')
  if f[1] then
    for _, sid in ipairs(split(f[2])) do redis.call('HDEL', smsc_key(f[1]), sid) end
    redis.call('HDEL', mk, 'pt', 'ptc', 'pti')
    redis.call('HSET', mk, 'pd', '0', 'pf', '0')
  end
end

-- The members of `sids` not in `known` (both arrays of strings).
local function without(sids, known)
  local seen = {}
  for _, k in ipairs(known) do seen[k] = true end
  local out = {}
  for _, s in ipairs(sids) do
    if not seen[s] then out[#out + 1] = s end
  end
  return out
end

-- Puts the claims of `node` that are still queued back in their queues.
local function requeue_claims(node)
  local n = 0
  local key = claimed_key(node)
  for _, id in ipairs(redis.call('SMEMBERS', key)) do
    local mk = mkey(id)
    if redis.call('HGET', mk, 'st') == 'queued' and enqueue(id, mk) then n = n + 1 end
  end
  redis.call('DEL', key)
  return n
end

local function wake()
  for conn in pairs(woken) do redis.call('PUBLISH', WORK, conn) end
end

-- Ready depth per class, retries waiting, webhooks waiting (after writing
-- this call's ready-count changes).
local function gauges()
  for class, delta in pairs(depth_delta) do
    if delta ~= 0 then redis.call('HINCRBY', DEPTH, class, delta) end
  end
  depth_delta = {}
  local d = redis.call('HMGET', DEPTH, '0', '1', '2', '3')
  return {
    tonumber(d[1]) or 0, tonumber(d[2]) or 0, tonumber(d[3]) or 0, tonumber(d[4]) or 0,
    redis.call('ZCARD', DELAYED), redis.call('ZCARD', WEBHOOKS),
  }
end
