-- receive.lua: a worker took an attempt's message off the queue but has not started it (Fleet.received).
-- Receipts are written late, in batches: one for an attempt that already started (claim.lua removed it
-- from dispatched_key) is dropped.
--
-- KEYS
--   received_key     <t>:received, hash: attempt member -> encoded receipt
--   dispatched_key   <t>:dispatched, sorted set: attempt member -> dispatch deadline
-- ARGV
--   member           "<workflow id>\0<seq>\0<attempt>"
--   info             the encoded receipt (run id, worker)
-- Returns 0.

local received_key, dispatched_key = KEYS[1], KEYS[2]
local member, info = ARGV[1], ARGV[2]

if redis.call('ZREM', dispatched_key, member) == 1 then redis.call('HSET', received_key, member, info) end
return 0
