-- Idempotency: reserve a key, or say what it already holds. KEYS[1] idem key. ARGV: body digest,
-- pending ttl. Returns {'new'} | {'pending'} | {'mismatch'} | {'replay', job id}.
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], cjson.encode({body = ARGV[1], job = ''}), 'EX', tonumber(ARGV[2]))
  return {'new'}
end
local d = cjson.decode(v)
if d.body ~= ARGV[1] then return {'mismatch'} end
if d.job == '' then return {'pending'} end
return {'replay', d.job}
