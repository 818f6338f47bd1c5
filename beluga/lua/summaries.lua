#!lua flags=no-writes
-- summaries.lua: the summary fields of many runs of one shard, read at one instant in one call
-- (RedisStore.load_summaries: what a listing reads to tell its runs apart) rather than one HMGET a run.
-- Flagged no-writes, as read.lua: it runs on a Redis out of memory, and on a replica.
--
-- KEYS
--   index_key       <t>:index:all, a key of the shard: routes the call to the shard's node on a Redis Cluster
-- ARGV
--   tag             <t>, the shard's hash tag: the run hash of a workflow id is <t>:<id>:run
--   #fields         how many field names follow
--   #workflow_ids   how many workflow ids follow them (each of this shard)
--   fields...       the run hash's fields wanted
--   workflow_ids...  the runs
-- Returns the fields' values of each run in turn (false where missing), one flat list.

local index_key = KEYS[1]
local tag, n_fields, n_workflow_ids = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local fields = {}
for i = 1, n_fields do fields[i] = ARGV[3 + i] end
local out = {}
for i = 1, n_workflow_ids do
  local got = redis.call('HMGET', tag .. ':' .. ARGV[3 + n_fields + i] .. ':run', unpack(fields))
  for j = 1, n_fields do out[#out + 1] = got[j] end
end
return out
