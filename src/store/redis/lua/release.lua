-- Puts node ARGV[3]'s claims back in their queues: at start (what a crashed
-- predecessor with the same node id left) and at close. With ARGV[4] = "1"
-- the node also leaves the node list (clean shutdown).
local n = requeue_claims(ARGV[3])
if ARGV[4] == '1' then
  redis.call('DEL', P .. ':alive:' .. ARGV[3])
  redis.call('SREM', P .. ':nodes', ARGV[3])
end
wake()
return { n, gauges() }
