-- One round trip for a poll (reads only): the job's own hash, its computation's hash, and the
-- progress sums. KEYS[1] job hash. Returns {} when gone, else {own, computation (empty when
-- itself), done, scanned}.
local own = redis.call('HGETALL', KEYS[1])
if #own == 0 then return {} end
local primary = redis.call('HGET', KEYS[1], 'primary')
local base = KEYS[1]
local comp = {}
if primary and primary ~= '' then
  base = JOB .. primary
  comp = redis.call('HGETALL', base)
end
local done, scanned = 0, 0
for _, v in ipairs(redis.call('HVALS', base .. DONE)) do done = done + tonumber(v) end
for _, v in ipairs(redis.call('HVALS', base .. SCANNED)) do scanned = scanned + tonumber(v) end
return {own, comp, done, scanned}
