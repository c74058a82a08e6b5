-- Take a unit's lease, as a worker starts it. KEYS[1] job hash. ARGV: unit, token, owner,
-- lease ms, max lost, token of a holder known dead ('' = none), ttl.
-- Returns {'ok', runs, lost} (taken), {'gone'} (the job is not running), {'done'} (the unit is in),
-- {'held', owner, token} (a live lease holds it: this copy is a duplicate), {'lost', lost} (its
-- holders died `max lost` times: the caller fails the job).
-- A lease is JSON {token, owner, exp (epoch ms, Redis' clock), runs, lost}; token '' = released
-- (handed back at a clean stop, which does not count as lost).
if redis.call('HGET', KEYS[1], 'status') ~= RUNNING then return {'gone'} end
local unit = ARGV[1]
if redis.call('HEXISTS', KEYS[1] .. DONE, unit) == 1 then return {'done'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local runs, lost = 0, 0
local raw = redis.call('HGET', KEYS[1] .. LEASES, unit)
if raw then
  local l = cjson.decode(raw)
  runs, lost = l.runs, l.lost
  if l.token ~= '' then
    if l.exp > now and l.token ~= ARGV[6] then return {'held', l.owner, l.token} end
    lost = lost + 1  -- its holder stopped renewing it: died, hung, or cut off
  end
end
if lost >= tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1] .. LEASES, unit, cjson.encode({token = '', owner = '', exp = 0, runs = runs, lost = lost}))
  return {'lost', lost}
end
runs = runs + 1
local lease = {token = ARGV[2], owner = ARGV[3], exp = now + tonumber(ARGV[4]), runs = runs, lost = lost}
redis.call('HSET', KEYS[1] .. LEASES, unit, cjson.encode(lease))
redis.call('EXPIRE', KEYS[1] .. LEASES, tonumber(ARGV[7]))
return {'ok', runs, lost}
