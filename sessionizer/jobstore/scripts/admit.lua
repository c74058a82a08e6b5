-- Admit a request: the client address's failed-authentication bucket, then the key's rate.
-- KEYS[1] the address's failures bucket, KEYS[2] the owner's rate bucket ('' = no rate check).
-- ARGV: failures per s (0 = off), failures burst, wrong key ('1'/'0'), rate per s (0 = off), burst.
-- Returns {'blocked', ms} (the address spent its failures: any key is refused before it is
-- judged), {'denied', 0} (a wrong key, counted), {'rate', ms} (the key is over its rate) or {'ok', 0}.
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function tokens_of(key, rate, burst)
  local h = redis.call('HMGET', key, 'tokens', 'ts_ms')
  local tokens = tonumber(h[1]) or burst
  local ts = tonumber(h[2]) or now
  return math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
end
local function spend(key, tokens, rate, burst)
  redis.call('HSET', key, 'tokens', tostring(tokens - 1), 'ts_ms', now)
  redis.call('PEXPIRE', key, math.ceil(burst * 1000 / rate) + 1000)
end
local frate, fburst = tonumber(ARGV[1]), tonumber(ARGV[2])
if frate > 0 then
  local tokens = tokens_of(KEYS[1], frate, fburst)
  if tokens < 1 then return {'blocked', math.ceil((1 - tokens) * 1000 / frate)} end
  if ARGV[3] == '1' then
    spend(KEYS[1], tokens, frate, fburst)
    return {'denied', 0}
  end
elseif ARGV[3] == '1' then
  return {'denied', 0}
end
local rate, burst = tonumber(ARGV[4]), tonumber(ARGV[5])
if KEYS[2] ~= '' and rate > 0 then
  local tokens = tokens_of(KEYS[2], rate, burst)
  if tokens < 1 then return {'rate', math.ceil((1 - tokens) * 1000 / rate)} end
  spend(KEYS[2], tokens, rate, burst)
end
return {'ok', 0}
