#!lua
-- release.lua: a coordinator gives a run's lease back (Fleet.release).
--
-- KEYS
--   lease_key   <t>:<id>:lease, the coordinator's lease token
--   inbox_key   <t>:<id>:inbox, list of messages for the coordinator
-- ARGV
--   token       the caller's lease token: a lease another coordinator took since is left alone
-- Returns how many messages wait in the inbox.

local lease_key, inbox_key = KEYS[1], KEYS[2]
local token = ARGV[1]

if redis.call('GET', lease_key) == token then redis.call('DEL', lease_key) end
return redis.call('LLEN', inbox_key)
