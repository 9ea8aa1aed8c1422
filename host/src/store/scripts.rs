//! The protocol's atomic steps, as Lua scripts that touch only one job's keys (one slot).

use std::sync::LazyLock;

/// Claims one batch of a runnable job: a new queue entry, else one whose claim has been idle
/// past the lease (taken over with XAUTOCLAIM). Marks a queued job running.
///
/// KEYS: progress, queue. ARGV: group, consumer, lease ms.
/// Returns `nil` (nothing to claim), `{"state", STATE}` (job not runnable) or
/// `{"claim", ENTRY_ID, BATCH, ATTEMPT, DELIVERIES}`.
pub static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then
  return {'state', tostring(state)}
end
local id, fields, deliveries
local fresh = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', KEYS[2], '>')
if fresh then
  local entry = fresh[1][2][1]
  id, fields, deliveries = entry[1], entry[2], 1
else
  -- XAUTOCLAIM examines a bounded part of the pending list per call: follow its cursor.
  local cursor, entry = '0-0', nil
  repeat
    local stale = redis.call('XAUTOCLAIM', KEYS[2], ARGV[1], ARGV[2], ARGV[3], cursor, 'COUNT', 1)
    cursor, entry = stale[1], stale[2][1]
  until entry or cursor == '0-0'
  if not entry then return nil end
  id, fields = entry[1], entry[2]
  local pending = redis.call('XPENDING', KEYS[2], ARGV[1], id, id, 1)
  deliveries = pending[1][4]
  redis.call('HINCRBY', KEYS[1], 'reclaims', 1)
end
if state == 'queued' then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'state', 'running', 'started_ms', t[1] * 1000 + math.floor(t[2] / 1000))
end
local batch, attempt = '', '1'
for i = 1, #fields, 2 do
  if fields[i] == 'batch' then batch = fields[i + 1] end
  if fields[i] == 'attempt' then attempt = fields[i + 1] end
end
return {'claim', id, batch, attempt, tostring(deliveries)}
"#,
    )
});

/// Stores a batch's results, counts them once, acknowledges the entry, and finishes the job
/// when every batch is accounted for. With a dead-letter reason, the batch is also recorded in
/// the dead-letter stream and counted as dead.
///
/// KEYS: progress, done, out, errors, queue, dead, lasterror.
/// ARGV: batch, entry id, results, items ok, items failed, errors JSON or '', ttl seconds,
/// group, dead-letter reason or '', deliveries. Returns 1 if counted now, 0 if already counted.
pub static COMPLETE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local counted = redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[7])
if counted == 1 then
  redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[7])
  redis.call('HINCRBY', KEYS[1], 'items_ok', ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'items_failed', ARGV[5])
  if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[4], ARGV[1], ARGV[6])
    redis.call('EXPIRE', KEYS[4], ARGV[7])
  end
  if ARGV[9] ~= '' then
    redis.call('HINCRBY', KEYS[1], 'batches_dead', 1)
    redis.call('XADD', KEYS[6], '*', 'batch', ARGV[1], 'deliveries', ARGV[10], 'error', ARGV[9])
    redis.call('EXPIRE', KEYS[6], ARGV[7])
  else
    redis.call('HINCRBY', KEYS[1], 'batches_done', 1)
  end
  redis.call('HDEL', KEYS[7], ARGV[1])
end
redis.call('XACK', KEYS[5], ARGV[8], ARGV[2])
redis.call('XDEL', KEYS[5], ARGV[2])
local p = redis.call('HMGET', KEYS[1], 'batches_done', 'batches_dead', 'batch_count', 'items_failed', 'state')
local finished = tonumber(p[1] or '0') + tonumber(p[2] or '0')
if finished >= tonumber(p[3] or '0') and (p[5] == 'queued' or p[5] == 'running') then
  local state = 'done'
  if tonumber(p[4] or '0') > 0 or tonumber(p[2] or '0') > 0 then state = 'done-with-failures' end
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'state', state, 'finished_ms', t[1] * 1000 + math.floor(t[2] / 1000))
end
return counted
"#,
    )
});

/// Puts a failed batch back on the queue as a new entry with the next attempt number and
/// records its error, if this worker still owns the entry.
///
/// KEYS: queue, lasterror. ARGV: group, entry id, batch, next attempt, error, ttl seconds.
/// Returns 1 if requeued, 0 if the entry was no longer ours.
pub static RETRY: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 1 then
  redis.call('XDEL', KEYS[1], ARGV[2])
  redis.call('XADD', KEYS[1], '*', 'batch', ARGV[3], 'attempt', ARGV[4])
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[6])
end
return acked
"#,
    )
});
