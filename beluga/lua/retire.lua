-- retire.lua: stops a lost attempt from starting late, unless a later attempt was allowed meanwhile
-- (Fleet.retire).
--
-- KEYS
--   attempts_key   <p>:{id}:attempts, hash: seq -> the attempt allowed to run
-- ARGV
--   seq            the activity's seq
--   attempt        the lost attempt
-- Returns 1 when retired, else 0.

local attempts_key = KEYS[1]
local seq, attempt = ARGV[1], ARGV[2]

if redis.call('HGET', attempts_key, seq) == attempt then return redis.call('HDEL', attempts_key, seq) end
return 0
