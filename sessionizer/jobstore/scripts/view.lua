-- One round trip for a poll (reads only): the job's own hash, its computation's hash, and the
-- progress sums. KEYS[1] job hash. Returns {} when gone, else {own, computation (empty when
-- itself), done, scanned, from_source}.
local own = redis.call('HGETALL', KEYS[1])
if #own == 0 then return {} end
local primary = redis.call('HGET', KEYS[1], 'primary')
local base = KEYS[1]
local comp = {}
if primary and primary ~= '' then
  base = JOB .. primary
  comp = redis.call('HGETALL', base)
end
local done, scanned, from_source = 0, 0, 0
for _, v in ipairs(redis.call('HVALS', base .. DONE)) do done = done + tonumber(v) end
-- fields: '<unit>' documents used, '<unit>:src' of those read from the source itself
local counts = redis.call('HGETALL', base .. SCANNED)
for i = 1, #counts, 2 do
  if string.find(counts[i], ':src', 1, true) then
    from_source = from_source + tonumber(counts[i + 1])
  else
    scanned = scanned + tonumber(counts[i + 1])
  end
end
return {own, comp, done, scanned, from_source}
