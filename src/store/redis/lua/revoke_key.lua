-- Revokes the key named ARGV[3] at NOW. Returns 1 when there was one.
local id = redis.call('HGET', P .. ':apikey_names', ARGV[3])
if not id then return 0 end
redis.call('HDEL', P .. ':apikey_names', ARGV[3])
redis.call('HSET', P .. ':apikey_revoked', id, NOW)
return 1
