-- A unit's counts, only while its job exists (a deleted job gets nothing back).
-- KEYS[1] job hash, KEYS[2] its scanned hash. ARGV: ttl, unit, scanned, from_source.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3], ARGV[2] .. ':src', ARGV[4])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[1]))
return 1
