-- Hand a unit's lease back (a clean stop: not counted as lost). KEYS[1] job hash. ARGV: unit,
-- token or '' , owner or '' (the lease is released if either matches). Returns 1 when released.
local raw = redis.call('HGET', KEYS[1] .. LEASES, ARGV[1])
if not raw then return 0 end
local l = cjson.decode(raw)
if l.token == '' or not ((ARGV[2] ~= '' and l.token == ARGV[2]) or (ARGV[3] ~= '' and l.owner == ARGV[3])) then
  return 0
end
l.token, l.owner, l.exp = '', '', 0
redis.call('HSET', KEYS[1] .. LEASES, ARGV[1], cjson.encode(l))
return 1
