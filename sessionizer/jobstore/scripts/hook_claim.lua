-- Take a due push for one sender: its due time moves to the end of the claim (a sender that dies
-- mid-send leaves it to be taken again then). A job deleted or gone sends nothing more: its push
-- is dropped. ARGV: job id, now_ms, claim ms, token. Returns the push's fields, or
-- 0 (not due, or taken by another sender), or -1 (dropped).
local id, now = ARGV[1], tonumber(ARGV[2])
local due = redis.call('ZSCORE', HOOKS_DUE, id)
if not due or tonumber(due) > now then return 0 end
local hk = HOOK .. id
if redis.call('EXISTS', hk) == 0 or redis.call('EXISTS', JOB .. id) == 0 or redis.call('HGET', JOB .. id, 'deleted') then
  redis.call('ZREM', HOOKS_DUE, id)
  redis.call('DEL', hk, hk .. HOOK_LOG)
  return -1
end
redis.call('ZADD', HOOKS_DUE, now + tonumber(ARGV[3]), id)
redis.call('HSET', hk, 'claim', ARGV[4])
return redis.call('HGETALL', hk)
