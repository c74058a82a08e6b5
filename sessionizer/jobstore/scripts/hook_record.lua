-- Record one attempt of the sender holding the claim (another's, or a redelivery since, makes it
-- a no-op). ARGV: job id, token, attempt JSON, outcome ('retry', 'delivered', 'stopped', 'failed'),
-- next_ms (for 'retry'), ttl, attempts kept. Returns 1 when recorded.
local hk = HOOK .. ARGV[1]
if redis.call('HGET', hk, 'claim') ~= ARGV[2] then return 0 end
local ttl = tonumber(ARGV[6])
redis.call('RPUSH', hk .. HOOK_LOG, ARGV[3])
redis.call('LTRIM', hk .. HOOK_LOG, -tonumber(ARGV[7]), -1)
redis.call('HINCRBY', hk, 'attempts', 1)
redis.call('HDEL', hk, 'claim')
if ARGV[4] == 'retry' then
  redis.call('HSET', hk, 'state', 'pending', 'next_ms', ARGV[5])
  redis.call('ZADD', HOOKS_DUE, ARGV[5], ARGV[1])
else
  redis.call('HSET', hk, 'state', ARGV[4], 'next_ms', '')
  redis.call('ZREM', HOOKS_DUE, ARGV[1])
end
redis.call('EXPIRE', hk, ttl)
redis.call('EXPIRE', hk .. HOOK_LOG, ttl)
return 1
