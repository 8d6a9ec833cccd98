-- Stores API key ARGV[3] named ARGV[4] (record json ARGV[5]) unless the name
-- is taken. Returns 1 when stored.
if redis.call('HSETNX', P .. ':apikey_names', ARGV[4], ARGV[3]) == 0 then return 0 end
redis.call('HSET', P .. ':apikeys', ARGV[3], ARGV[5])
return 1
