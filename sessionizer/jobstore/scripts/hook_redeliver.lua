-- Send a job's push again, now, with a fresh retry schedule (a send in flight is disowned).
-- ARGV: job id, now_ms, ttl. Returns 1, or 0 when the job has no push recorded.
local hk = HOOK .. ARGV[1]
if redis.call('EXISTS', hk) == 0 then return 0 end
redis.call('HSET', hk, 'state', 'pending', 'attempts', 0, 'next_ms', ARGV[2])
redis.call('HDEL', hk, 'claim')
redis.call('ZADD', HOOKS_DUE, ARGV[2], ARGV[1])
redis.call('EXPIRE', hk, tonumber(ARGV[3]))
return 1
