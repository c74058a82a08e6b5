-- Record the completion push of every job that has just ended and asked for one (callback_url),
-- once per job. KEYS[1] a job hash. ARGV: mode ('sharers': the jobs following this computation,
-- 'self': this job), now_ms, the event's time (ISO), ttl. Returns how many were recorded.
local targets
if ARGV[1] == 'sharers' then
  targets = redis.call('SMEMBERS', KEYS[1] .. SHARERS)
else
  targets = {string.sub(KEYS[1], #JOB + 1)}
end
local n = 0
for _, id in ipairs(targets) do
  local h = redis.call('HMGET', JOB .. id, 'callback_url', 'owner', 'deleted', 'view_status', 'primary', 'status')
  if h[1] and h[1] ~= '' and not h[3] then
    local st = h[4]
    if not st then
      if h[5] and h[5] ~= '' then st = redis.call('HGET', JOB .. h[5], 'status') else st = h[6] end
    end
    local hk = HOOK .. id
    if (st == SUCCEEDED or st == FAILED or st == CANCELLED) and redis.call('EXISTS', hk) == 0 then
      redis.call('HSET', hk, 'url', h[1], 'owner', h[2] or '', 'type', 'job.' .. st, 'msg_id', 'msg_' .. id,
                 'event_at', ARGV[3], 'state', 'pending', 'attempts', 0, 'next_ms', ARGV[2])
      redis.call('EXPIRE', hk, tonumber(ARGV[4]))
      redis.call('ZADD', HOOKS_DUE, ARGV[2], id)
      n = n + 1
    end
  end
end
return n
