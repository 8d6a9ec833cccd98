-- Creates broadcast ARGV[3]: record json ARGV[4], status ARGV[5], creator
-- ARGV[6], CAP key ARGV[7] ("" for none), total ARGV[8], then ARGV[9]
-- groups as (name, list) pairs — the lists the caller read, "-" for an
-- empty group — then the count of lists to hold and their ids (the
-- groups' lists and the list of numbers named directly). Nothing of the
-- audience is copied: its lists are held until the broadcast ends.
-- Returns {0}, {1, name} for a group that does not exist, or {2} when a
-- group changed since the caller read it (read again).
local id, json, status, by, cap, total = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local ng = tonumber(ARGV[9])
for i = 0, ng - 1 do
  local name, list = ARGV[10 + 2 * i], ARGV[11 + 2 * i]
  local current = redis.call('HGET', P .. ':groups', name)
  if not current then return { 1, name } end
  local current_list = string.match(current, '^%S+ %S+ (%d+)$') or '-'
  if current_list ~= list then return { 2 } end
end
local b = 10 + 2 * ng
for i = 1, tonumber(ARGV[b]) do
  local list = ARGV[b + i]
  redis.call('HINCRBY', P .. ':lpins', list, 1)
  redis.call('PERSIST', P .. ':glist:' .. list)
end
local bk = P .. ':b:' .. id
redis.call('HSET', bk, 'j', json, 'st', status, 'cr', by, 'tot', total, 'fan', '0', 'ref', '0')
redis.call('ZADD', P .. ':broadcasts', 0, id)
redis.call('SADD', P .. ':bactive', id)
if cap ~= '' then redis.call('HSET', P .. ':bcap', cap, id) end
return { 0 }
