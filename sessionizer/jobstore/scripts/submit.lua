-- Create a job, joining the computation an identical request started when there is one.
-- KEYS: job hash, share key ('' = not shareable), owner's list, owner's active set, seq counter.
-- ARGV: job id, ttl, list ttl, fresh ('1' = never join), now_ms, active cap (0 = none),
-- field/value pairs... Returns {'capped', active count} when the owner already has `cap` active
-- jobs, else {'ok', id of the computation joined or '' when the job is its own computation}.
local id, ttl, list_ttl, fresh, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local cap = tonumber(ARGV[6])
if cap > 0 then
  local n = 0
  for _, other in ipairs(redis.call('SMEMBERS', KEYS[4])) do
    local h = redis.call('HMGET', JOB .. other, 'status', 'primary', 'view_status', 'deleted')
    local st = h[1]
    if h[2] and h[2] ~= '' then st = redis.call('HGET', JOB .. h[2], 'status') end
    if h[3] or h[4] or (st ~= QUEUED and st ~= RUNNING) then
      redis.call('SREM', KEYS[4], other)
    else
      n = n + 1
    end
  end
  if n >= cap then return {'capped', tostring(n)} end
end
local cid = nil
if KEYS[2] ~= '' and fresh == '0' then
  local cand = redis.call('GET', KEYS[2])
  if cand then
    local st = redis.call('HMGET', JOB .. cand, 'status', 'deadline_ms')
    local ok = st[1] == QUEUED or st[1] == RUNNING or st[1] == SUCCEEDED
    if ok and (st[1] == SUCCEEDED or not st[2] or tonumber(st[2]) > now) then cid = cand end
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
local seq = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[1], 'seq', seq)
if cid then
  local comp = redis.call('HMGET', JOB .. cid, 'deadline_at', 'deadline_ms')
  redis.call('HSET', KEYS[1], 'primary', cid, 'deadline_at', comp[1] or '', 'deadline_ms', comp[2] or '0')
  redis.call('SADD', JOB .. cid .. SHARERS, id)
  for _, s in ipairs(FAMILY) do
    redis.call('EXPIRE', JOB .. cid .. s, ttl)
  end
  redis.call('EXPIRE', KEYS[2], ttl)
else
  redis.call('SADD', JOB .. id .. SHARERS, id)
  redis.call('EXPIRE', JOB .. id .. SHARERS, ttl)
  if KEYS[2] ~= '' then redis.call('SET', KEYS[2], id, 'EX', ttl) end
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[3], seq, id)
redis.call('EXPIRE', KEYS[3], list_ttl)
redis.call('SADD', KEYS[4], id)
redis.call('EXPIRE', KEYS[4], list_ttl)
return {'ok', cid or ''}
