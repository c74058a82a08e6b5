-- Move a job's status by compare-and-set.
-- KEYS[1] job hash; ARGV[1] new status; ARGV[2] comma-separated statuses it may come from;
-- ARGV[3..] more field/value pairs to write with it. Returns 1 when moved, 0 when not, -1 when gone.
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return -1 end
for allowed in string.gmatch(ARGV[2], '[^,]+') do
  if allowed == cur then
    redis.call('HSET', KEYS[1], 'status', ARGV[1], unpack(ARGV, 3))
    return 1
  end
end
return 0
