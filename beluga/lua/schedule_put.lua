#!lua
-- schedule_put.lua: writes a schedule's record if it is still at the version the writer read
-- (RedisSchedules.put): of the workers that plan the same tick, one stores its plan. The record, its
-- next look in the due set and its place in the list of all schedules change together.
--
-- KEYS
--   record_key        <p>:{schedules}:s:<id>, hash: version, data
--   due_key           <p>:{schedules}:due, sorted set: schedule id -> when to look at it next
--   all_key           <p>:{schedules}:all, sorted set of every schedule id
-- ARGV
--   schedule_id       the schedule's id
--   expected_version  the version the writer read (0: the schedule must not exist)
--   data              the encoded record, at expected_version + 1
--   due               when to look at it next, or '' for never
-- Returns 1 when written, 0 when the record is not at expected_version.

local record_key, due_key, all_key = KEYS[1], KEYS[2], KEYS[3]
local schedule_id, expected_version, data, due = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]

local found = tonumber(redis.call('HGET', record_key, 'version') or '0')
if found ~= expected_version then return 0 end
redis.call('HSET', record_key, 'version', expected_version + 1, 'data', data)
redis.call('ZADD', all_key, 0, schedule_id)
if due == '' then
  redis.call('ZREM', due_key, schedule_id)
else
  redis.call('ZADD', due_key, due, schedule_id)
end
return 1
