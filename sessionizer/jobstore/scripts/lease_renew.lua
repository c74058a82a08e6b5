-- Renew a unit's lease while its holder still has it. KEYS[1] job hash. ARGV: unit, token, lease ms.
-- Returns 1 when renewed, 0 when the unit has no lease any more (done, or the job gone), -1 when
-- the lease is someone else's (taken over, or handed back).
local raw = redis.call('HGET', KEYS[1] .. LEASES, ARGV[1])
if not raw then return 0 end
local l = cjson.decode(raw)
if l.token ~= ARGV[2] then return -1 end
local t = redis.call('TIME')
l.exp = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
redis.call('HSET', KEYS[1] .. LEASES, ARGV[1], cjson.encode(l))
return 1
