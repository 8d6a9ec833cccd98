-- Creates broadcast ARGV[3]: record json ARGV[4], status ARGV[5], creator
-- ARGV[6], CAP key ARGV[7] ("" for none), ARGV[8] "1" when its directly
-- named numbers are staged in `b:<id>:rcp`, ARGV[9] the group count, then
-- the group names. The audience is fixed here, de-duplicated, as one sorted
-- set (server side: nothing of it crosses the network).
-- Returns {0, total}, or {1, name} for a group that does not exist.
local id, json, status, by, cap, staged, ng =
  ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local bk = P .. ':b:' .. id
local keys = {}
for i = 1, ng do
  local name = ARGV[9 + i]
  if redis.call('HEXISTS', P .. ':groups', name) == 0 then
    redis.call('DEL', bk .. ':rcp')
    return { 1, name }
  end
  keys[#keys + 1] = P .. ':group:' .. name
end
if staged == '1' then keys[#keys + 1] = bk .. ':rcp' end
local total = 0
if #keys > 0 then total = redis.call('ZUNIONSTORE', bk .. ':aud', #keys, unpack(keys)) end
redis.call('DEL', bk .. ':rcp')
redis.call('HSET', bk, 'j', json, 'st', status, 'cr', by, 'tot', tostring(total), 'fan', '0', 'ref', '0')
redis.call('ZADD', P .. ':broadcasts', 0, id)
redis.call('SADD', P .. ':bactive', id)
if cap ~= '' then redis.call('HSET', P .. ':bcap', cap, id) end
return { 0, total }
