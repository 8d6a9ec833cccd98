-- Changes the status of broadcast ARGV[3]: ARGV[4] is A (approve), R
-- (reject), C (cancel) or K (complete), ARGV[5] who, ARGV[6] when, ARGV[7]
-- a comment (ARGV[8] "1" when there is one), ARGV[9] its class, ARGV[10]
-- the count of its connectors, then their names, then the count of its
-- audience's member lists and their ids.
-- Returns {{0}} done, {{1}} not found, {{2, status}} wrong state, {{3}} an
-- approval by the creator, {{4}} not complete yet; and the gauges.
local id, kind, by, at = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local bk = P .. ':b:' .. id
local f = redis.call('HMGET', bk, 'st', 'cr', 'tot', 'fan', 'ref')
if not f[1] then return { { 1 }, gauges() } end
local st = f[1]

local function final()
  redis.call('HSET', bk, 'done', at)
  redis.call('SREM', P .. ':bactive', id)
  local nl = 11 + tonumber(ARGV[10])
  for i = 1, tonumber(ARGV[nl]) do release_list(ARGV[nl + i], -1, false) end
end

local function decided(status)
  redis.call('HSET', bk, 'st', status, 'by', by, 'dat', at)
  if ARGV[8] == '1' then redis.call('HSET', bk, 'cm', ARGV[7]) end
end

-- A queued message of this broadcast becomes canceled.
local function cancel(mid, finals)
  local mk = mkey(mid)
  local m = redis.call('HMGET', mk, 'bc', 'st')
  if m[1] == id and m[2] == 'queued' then
    finish(mid, mk, 'canceled', at, finals, nil, { 'er', 'broadcast canceled' })
    return true
  end
  return false
end

if kind == 'A' then
  if st ~= 'pending_approval' then return { { 2, st }, gauges() } end
  if by == f[2] then return { { 3 }, gauges() } end
  decided('sending')
elseif kind == 'R' then
  if st ~= 'pending_approval' then return { { 2, st }, gauges() } end
  decided('rejected')
  final()
elseif kind == 'C' then
  if st == 'completed' or st == 'canceled' or st == 'rejected' then return { { 2, st }, gauges() } end
  redis.call('HSET', bk, 'st', 'canceled', 'cby', by)
  local class, finals = ARGV[9], {}
  -- Claimed messages are not in a queue: they are on their way already.
  for i = 1, tonumber(ARGV[10]) do
    local conn = ARGV[10 + i]
    for _, mid in ipairs(redis.call('ZRANGE', qkey(conn, class), 0, -1)) do
      local mk = mkey(mid)
      if redis.call('HGET', mk, 'bc') == id then
        dequeue_at(mid, conn, class)
        cancel(mid, finals)
      end
    end
  end
  for _, mid in ipairs(redis.call('ZRANGE', DELAYED, 0, -1)) do
    if redis.call('HGET', mkey(mid), 'bc') == id then
      redis.call('ZREM', DELAYED, mid)
      cancel(mid, finals)
    end
  end
  final()
elseif kind == 'K' then
  if st ~= 'sending' then return { { 2, st }, gauges() } end
  local queued = tonumber(redis.call('HGET', bcount_key(id), 'queued') or '0')
  if tonumber(f[3]) - tonumber(f[4]) - tonumber(f[5]) > 0 or queued > 0 then
    return { { 4 }, gauges() }
  end
  redis.call('HSET', bk, 'st', 'completed')
  final()
end
return { { 0 }, gauges() }
