#!lua flags=no-writes
-- read.lua: a run's fields and events, read at one instant (RedisStore.load, history). Flagged
-- no-writes: Redis runs it while it is out of memory (maxmemory, noeviction), which refuses every
-- command of a MULTI, reads included; and so does a replica.
--
-- KEYS
--   run_key         <t>:<id>:run, hash: run_id, status, summary, version, e:1 ... e:8, ...
--   events_key      <t>:<id>:events, stream of the events once more than 8 (lib/events.lua)
-- ARGV
--   after           the events wanted come after this id
--   #fields         how many field names follow
--   fields...       the run hash's fields wanted
-- Returns the fields' values (false where missing), then the run's version, then 1 when its history
-- looks whole (its first and last events where the version says: lib/events.lua's events_whole) else 0,
-- then its encoded events after `after`, in order (false for an inline one that is missing).

-- #include "lib/events.lua"

local run_key, events_key = KEYS[1], KEYS[2]
local after, n_fields = tonumber(ARGV[1]), tonumber(ARGV[2])
local fields = {}
for i = 1, n_fields do fields[i] = ARGV[2 + i] end
fields[n_fields + 1] = 'version'
local out = redis.call('HMGET', run_key, unpack(fields))
local version = tonumber(out[n_fields + 1]) or 0
out[n_fields + 1] = version
out[n_fields + 2] = events_whole(run_key, events_key, version) and 1 or 0
for _, event in ipairs(events_read(run_key, events_key, version, after)) do out[#out + 1] = event end
return out
