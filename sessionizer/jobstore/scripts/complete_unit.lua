-- A unit's result, only while its job exists (a deleted job gets nothing back), its keys' ttl
-- renewed, and only from the holder of the unit's lease (fenced by its token; '' = unfenced).
-- KEYS[1] job hash. ARGV: ttl, unit, sessions JSON, stats JSON, users, lease token.
-- Returns 1 when every unit is now done, 0 when not (or the job is gone), -1 when the caller
-- no longer holds the lease: another worker took the unit over, and nothing was written.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[6] ~= '' then
  local raw = redis.call('HGET', KEYS[1] .. LEASES, ARGV[2])
  if not raw or cjson.decode(raw).token ~= ARGV[6] then return -1 end
  redis.call('HDEL', KEYS[1] .. LEASES, ARGV[2])
end
local ttl = tonumber(ARGV[1])
redis.call('HSET', KEYS[1] .. SESSIONS, ARGV[2], ARGV[3])
redis.call('HSET', KEYS[1] .. UNITSTATS, ARGV[2], ARGV[4])
redis.call('HSET', KEYS[1] .. DONE, ARGV[2], ARGV[5])
for _, s in ipairs(FAMILY) do redis.call('EXPIRE', KEYS[1] .. s, ttl) end
local total = tonumber(redis.call('HGET', KEYS[1], 'units_total') or '0')
return (total > 0 and redis.call('HLEN', KEYS[1] .. DONE) >= total) and 1 or 0
