-- Cancel a job for its client. KEYS[1] job hash. ARGV: error JSON, finished_at.
-- The job stops following its computation; the computation is cancelled when nobody follows it.
-- Returns 1 when the job is now cancelled, 0 when it had already finished, -1 when gone.
local own = redis.call('HMGET', KEYS[1], 'status', 'primary', 'view_status', 'id')
if not own[1] then return -1 end
if own[3] then return 0 end
local cid = own[2]
if not cid or cid == '' then cid = own[4] end
local ck = JOB .. cid
local st = redis.call('HGET', ck, 'status')
if st ~= QUEUED and st ~= RUNNING then return 0 end
redis.call('SREM', ck .. SHARERS, own[4])
if redis.call('SCARD', ck .. SHARERS) == 0 then
  redis.call('HSET', ck, 'status', CANCELLED, 'error', ARGV[1], 'finished_at', ARGV[2])
  if ck == KEYS[1] then return 1 end
end
redis.call('HSET', KEYS[1], 'view_status', CANCELLED, 'view_error', ARGV[1], 'view_finished_at', ARGV[2])
return 1
