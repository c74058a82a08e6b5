-- Forget a job. KEYS[1] job hash, KEYS[2] owner's list. Returns 1 when forgotten, 0 when gone.
-- Its computation's keys go too unless another job still follows it.
local own = redis.call('HMGET', KEYS[1], 'id', 'primary', 'idem', 'fingerprint', 'deleted')
if not own[1] or own[5] then return 0 end
local id, cid = own[1], own[2]
if not cid or cid == '' then cid = id end
local ck = JOB .. cid
redis.call('ZREM', KEYS[2], id)
if own[3] and own[3] ~= '' then redis.call('DEL', own[3]) end
redis.call('SREM', ck .. SHARERS, id)
if cid ~= id then redis.call('DEL', KEYS[1]) else redis.call('HSET', KEYS[1], 'deleted', '1') end
if redis.call('SCARD', ck .. SHARERS) == 0 and redis.call('HGET', ck, 'deleted') then
  local fp = redis.call('HGET', ck, 'fingerprint')
  if fp and fp ~= '' and redis.call('GET', SHARE .. fp) == cid then redis.call('DEL', SHARE .. fp) end
  for _, s in ipairs(FAMILY) do redis.call('DEL', ck .. s) end
end
return 1
