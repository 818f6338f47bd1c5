#!lua flags=no-writes
-- index_page.lua: the next entries of one shard's listing index that a page may show (RedisStore.list,
-- beluga/stores/redis_listing.py): past the cursor, in the page's order, passing the listing's
-- conditions on ids, so that only those cross the network. The index is read in batches from the
-- cursor's score on: a page costs the same whichever page it is.
--
-- KEYS
--   index_key       <t>:index:<name>, sorted set: workflow id -> creation time
-- ARGV
--   backward        '1': oldest first from the cursor (the page before it), '': newest first
--   score           the cursor's creation time, or '' for none (from the newest, or the oldest)
--   workflow_id     the cursor's workflow id (ties of one creation time are ordered by id)
--   prefix          the ids' prefix, or '' for any
--   kept_copies     '1': kept copies of retried runs (<id>/runs/<n>) too, '': not them
--   count           how many entries at most
-- Returns {id, score, id, score, ...}: at most `count` entries, in the page's order.

-- #include "lib/index.lua"

local index_key = KEYS[1]
local backward, score, workflow_id = ARGV[1], ARGV[2], ARGV[3]
local prefix, kept_copies, count = ARGV[4], ARGV[5], tonumber(ARGV[6])
backward, kept_copies = backward == '1', kept_copies == '1'

local bound = tonumber(score)
local function past(id, s)
  if not bound then return true end
  if backward then return s > bound or (s == bound and id > workflow_id) end
  return s < bound or (s == bound and id < workflow_id)
end

local out, offset = {}, 0
local batch = math.max(count, 100)
local edge = score ~= '' and score or (backward and '-inf' or '+inf')
while #out < 2 * count do
  local got
  if backward then
    got = redis.call('ZRANGEBYSCORE', index_key, edge, '+inf', 'WITHSCORES', 'LIMIT', offset, batch)
  else
    got = redis.call('ZREVRANGEBYSCORE', index_key, edge, '-inf', 'WITHSCORES', 'LIMIT', offset, batch)
  end
  for i = 1, #got, 2 do
    local id, s = got[i], tonumber(got[i + 1])
    if #out < 2 * count and past(id, s) and index_id_matches(id, prefix, kept_copies) then
      out[#out + 1] = id
      out[#out + 1] = got[i + 1]
    end
  end
  if #got < 2 * batch then break end
  offset = offset + batch
end
return out
