-- Points group ARGV[3] at member list ARGV[5] ("" for none) with the
-- summary ARGV[4] ("count updated_at list"); an empty ARGV[4] deletes the
-- group. The list it pointed at goes unless a broadcast holds it.
-- Returns 1 when the group existed.
local name, value, list = ARGV[3], ARGV[4], ARGV[5]
local groups = P .. ':groups'
local old = redis.call('HGET', groups, name)
if old then
  local old_list = string.match(old, '^%S+ %S+ (%d+)$')
  if old_list then release_list(old_list, 0, true) end
end
if value == '' then
  redis.call('HDEL', groups, name)
else
  redis.call('HSET', groups, name, value)
  if list ~= '' then
    redis.call('PERSIST', P .. ':glist:' .. list)
    redis.call('HSET', P .. ':lcur', list, '1')
  end
end
if old then return 1 end
return 0
