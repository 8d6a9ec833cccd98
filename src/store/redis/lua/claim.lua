-- Claims up to ARGV[4] ready messages of connector ARGV[3] for node ARGV[5]:
-- every emergency before any otp, and so on; FIFO within a class. A claim
-- lives in the node's claimed set until its outcome is recorded; if the node
-- dies, maintenance on another node puts it back (requeue_claims).
local conn, left, node = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local out, ids = {}, {}
for class = 0, 3 do
  if left <= 0 then break end
  local popped = redis.call('ZPOPMIN', qkey(conn, class), left)
  for i = 1, #popped, 2 do
    local id = popped[i]
    count_depth(class, -1)
    redis.call('ZREM', EXPIRY, id)
    local record = redis.call('HGETALL', mkey(id))
    if #record > 0 then
      ids[#ids + 1] = id
      out[#out + 1] = record
      left = left - 1
    end
  end
end
if #ids > 0 then redis.call('SADD', claimed_key(node), unpack(ids)) end
return { out, gauges() }
