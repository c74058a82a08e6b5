-- A unit's counts, only while its job exists (a deleted job gets nothing back); progress also
-- renews the unit's lease when its holder reports it. KEYS[1] job hash, KEYS[2] its scanned hash.
-- ARGV: ttl, unit, scanned, from_source, lease token ('' = none), lease ms.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3], ARGV[2] .. ':src', ARGV[4])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[1]))
if ARGV[5] ~= '' then
  local raw = redis.call('HGET', KEYS[1] .. LEASES, ARGV[2])
  if raw then
    local l = cjson.decode(raw)
    if l.token == ARGV[5] then
      local t = redis.call('TIME')
      l.exp = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[6])
      redis.call('HSET', KEYS[1] .. LEASES, ARGV[2], cjson.encode(l))
    end
  end
end
return 1
