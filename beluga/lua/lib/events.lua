-- lib/events.lua: where a run's history lives. While a run has at most 8 events (RedisStore.INLINE_EVENTS)
-- they are fields e:1 ... e:8 of its run hash: a parked run then costs no key, and no stream node, of its
-- own. Once it has more, all its events are in the Redis Stream events_key, one entry per append: entry
-- 0-<id of the append's last event>, one field per event, named by the event's id ("12") and holding the
-- encoded event, in order (the inline events move there as one entry, merged with the append that
-- outgrows the hash). Streams written by earlier versions hold one entry per event, 0-<id> with the one
-- field 'e'; both layouts are read, and appended to, alike. Which of hash and stream holds the events
-- follows from the run's version alone. Included by every script that writes or reads events.

-- The most events kept in the run hash.
local function events_inline_max()
  return 8
end

-- The encoded events after `after` up to `version` (the run's current version), in order.
local function events_read(run_key, events_key, version, after)
  if after >= version then return {} end
  if version <= events_inline_max() then
    local fields = {}
    for i = after + 1, version do fields[#fields + 1] = 'e:' .. i end
    return redis.call('HMGET', run_key, unpack(fields))
  end
  local out = {}
  -- every entry whose last event is past `after`; of the first, only the events past it
  for _, entry in ipairs(redis.call('XRANGE', events_key, '0-' .. (after + 1), '+')) do
    local fields = entry[2]
    if fields[1] == 'e' then                -- an earlier version's entry: the event whose id is the entry's
      out[#out + 1] = fields[2]
    else
      for i = 1, #fields, 2 do
        if tonumber(fields[i]) > after then out[#out + 1] = fields[i + 1] end
      end
    end
  end
  return out
end

-- Whether the history of a run at `version` is whole, cheaply: its last event is where the version says
-- (the last inline field, or the stream's last entry 0-<version>) and, in the stream, the first entry
-- begins with event 1. A Redis that evicts keys (or a hand that deletes them) can take the stream alone;
-- an append past such a hole would record a history that no replay can follow.
local function events_whole(run_key, events_key, version)
  if version == 0 then return true end
  if version <= events_inline_max() then return redis.call('HEXISTS', run_key, 'e:' .. version) == 1 end
  local last = redis.call('XREVRANGE', events_key, '+', '-', 'COUNT', 1)
  if #last == 0 or last[1][1] ~= '0-' .. version then return false end
  local first = redis.call('XRANGE', events_key, '-', '+', 'COUNT', 1)[1]
  return first[2][1] == '1' or (first[2][1] == 'e' and first[1] == '0-1')
end

-- Appends `events` (encoded) to a run that has `version` events, moving them all to the stream when the
-- run outgrows its hash: one XADD for the append (with the inline events it moves, if any), one per
-- 1000 events for a larger one (Lua's unpack has a limit). `fields` ({name, value, ...}) are written to
-- the run hash in the same step: with the events in one HSET while they fit in the hash.
local function events_append(run_key, events_key, version, events, fields)
  local n = #events
  local inline = events_inline_max()
  if version + n <= inline then
    local args = fields
    for i, event in ipairs(events) do
      args[#args + 1] = 'e:' .. (version + i)
      args[#args + 1] = event
    end
    if #args > 0 then redis.call('HSET', run_key, unpack(args)) end
    return
  end
  if #fields > 0 then redis.call('HSET', run_key, unpack(fields)) end
  local first_id, all = version + 1, {}
  if version > 0 and version <= inline then
    local fields = {}
    for i = 1, version do fields[i] = 'e:' .. i end
    first_id, all = 1, redis.call('HMGET', run_key, unpack(fields))
    redis.call('HDEL', run_key, unpack(fields))
  end
  for _, event in ipairs(events) do all[#all + 1] = event end
  for first = 1, #all, 1000 do
    local last = math.min(first + 999, #all)
    local args = {events_key, '0-' .. (first_id + last - 1)}
    for i = first, last do
      args[#args + 1] = tostring(first_id + i - 1)
      args[#args + 1] = all[i]
    end
    redis.call('XADD', unpack(args))
  end
end

-- Forgets a run's history (a new run of the same workflow id starts afresh).
local function events_clear(run_key, events_key)
  local fields = {}
  for i = 1, events_inline_max() do fields[i] = 'e:' .. i end
  redis.call('HDEL', run_key, unpack(fields))
  redis.call('DEL', events_key)
end
