#!lua
-- append_attrs.lua: append.lua for a step that changes the run's search attributes (an upsert recorded by
-- its events): the same conditional append, and in the same atomic step the run listed under its new
-- attributes (lib/attrs.lua). A script of its own, so that append.lua, every other step's, is unchanged.
--
-- KEYS
--   run_key, events_key, inbox_key, lease_key, dispatched_key, timers_key
--                      as in append.lua
-- ARGV
--   run_id, expected_version, inbox_used, status, summary, updated, lease_token, dispatch_deadline,
--   workflow_id, index_prefix
--                      as in append.lua
--   attrs              the run's search-attribute index entries after the step, JSON (lib/attrs.lua), or ''
--   #attempts, #events, #timers, attempts..., events..., timers...
--                      as in append.lua
-- Returns what append.lua returns.

-- #include "lib/events.lua"
-- #include "lib/index.lua"
-- #include "lib/append.lua"
-- #include "lib/attrs.lua"

local a = {
  run_key = KEYS[1], events_key = KEYS[2], inbox_key = KEYS[3], lease_key = KEYS[4],
  dispatched_key = KEYS[5], timers_key = KEYS[6],
  run_id = ARGV[1], expected_version = tonumber(ARGV[2]), inbox_used = tonumber(ARGV[3]), status = ARGV[4],
  summary = ARGV[5], updated = ARGV[6], lease_token = ARGV[7], dispatch_deadline = ARGV[8], workflow_id = ARGV[9],
  index_prefix = ARGV[10], attempts = {}, events = {}, timers = {},
}
local attrs = ARGV[11]
local n_attempts, n_events, n_timers = tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])
for i = 1, 2 * n_attempts do a.attempts[i] = ARGV[14 + i] end
for i = 1, n_events do a.events[i] = ARGV[14 + 2 * n_attempts + i] end
for i = 1, 2 * n_timers do a.timers[i] = ARGV[14 + 2 * n_attempts + n_events + i] end

local result = {append_allowed(a)}  -- allowed, and 'lost' when the history is not whole
if result[2] == 'lost' then return -2 end
if not result[1] then return -1 end
local left = append_write(a)
attrs_index(a.index_prefix, a.run_key, a.workflow_id, attrs, redis.call('HGET', a.run_key, 'created'))
return left
