-- One more hand-out of a unit that lost its worker, only while its job exists.
-- KEYS[1] job hash; ARGV[1] the unit's field (lost:{unit}). Returns the count (0: job gone).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
