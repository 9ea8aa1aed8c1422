//! The protocol's atomic steps, as Lua scripts that touch only one job's keys (one slot).
//!
//! The scripts spell job states as [`JobState::as_str`](super::spec::JobState::as_str) does
//! (a test reads them to check), and answer [`GONE`] for a job whose progress does not exist.

use std::sync::LazyLock;

/// What `CLAIM` and `END` answer for a job whose progress does not exist (expired or deleted).
pub const GONE: &str = "gone";

/// Claims one batch of a runnable job: a new queue entry, else one whose claim has been idle
/// past the lease (taken over with XAUTOCLAIM). Marks a queued job running.
///
/// Safe to repeat when given a request id: the claim is recorded under the consumer with its
/// request id (in the `claims` hash, which expires with the job's progress), and a repeated
/// request gets the batch the first one claimed instead of a second batch. Without the third
/// key and the request id (protocol v1's first form), nothing is recorded.
///
/// KEYS: progress, queue[, claims]. ARGV: group, consumer, lease ms[, request id].
/// Returns `nil` (nothing to claim), `{"state", STATE}` (job not runnable; `gone` when its
/// progress does not exist) or `{"claim", ENTRY_ID, BATCH, ATTEMPT, DELIVERIES}`.
pub static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'state', 'gone'} end
if state ~= 'queued' and state ~= 'running' then
  return {'state', state}
end
local memo = KEYS[3] ~= nil and ARGV[4] ~= nil and ARGV[4] ~= ''
local last = memo and redis.call('HGET', KEYS[3], ARGV[2])
if last then
  local request, id, batch, attempt, deliveries = string.match(last, '^(%S+) (%S+) (%S*) (%S+) (%S+)$')
  if request == ARGV[4] then return {'claim', id, batch, attempt, deliveries} end
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
if memo then
  redis.call('HSET', KEYS[3], ARGV[2], table.concat({ARGV[4], id, batch, attempt, tostring(deliveries)}, ' '))
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
end
return {'claim', id, batch, attempt, tostring(deliveries)}
"#,
    )
});

/// Adds the queue entries of batches FIRST..=LAST with explicit ids `0-(B+1)`, so that repeating
/// it (after a lost reply) adds nothing twice: Redis refuses an id not above the stream's last.
///
/// KEYS: queue. ARGV: first batch, last batch. Returns the number of entries added.
pub static ENQUEUE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local added = 0
for b = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  local reply = redis.pcall('XADD', KEYS[1], '0-' .. (b + 1), 'batch', b, 'attempt', 1)
  if type(reply) == 'table' and reply.err then
    if not string.find(reply.err, 'equal or smaller') then return redis.error_reply(reply.err) end
  else
    added = added + 1
  end
end
return added
"#,
    )
});

/// Stores a batch's results, counts them once, acknowledges the entry, and finishes the job
/// when every batch is accounted for. With a dead-letter reason, the batch is also recorded in
/// the dead-letter stream and counted as dead.
///
/// KEYS: progress, done, out, errors, queue, dead, lasterror.
/// ARGV: batch, entry id, results, items ok, items failed, errors JSON or '', ttl seconds,
/// group, dead-letter reason or '', deliveries. Returns 1 if counted now, 0 if already counted
/// or the job is gone (nothing is written then).
pub static COMPLETE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
-- A job whose progress is gone (expired, or lost by Redis) is not brought back half-made.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
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

/// Puts a batch back on the queue as a new entry that starts at the given delivery (its
/// `attempt` field), if this worker still owns the entry: after a failure, with the deliveries
/// so far plus one and the error (recorded in `lasterror`); to hand it back unrun (a worker
/// stopping at its deadline or shutting down), with the deliveries so far and no error, so that
/// this delivery does not count.
///
/// KEYS: queue, lasterror. ARGV: group, entry id, batch, first delivery, error or '', ttl seconds.
/// Returns 1 if requeued, 0 if the entry was no longer ours.
pub static RETRY: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 1 then
  redis.call('XDEL', KEYS[1], ARGV[2])
  redis.call('XADD', KEYS[1], '*', 'batch', ARGV[3], 'attempt', ARGV[4])
  if ARGV[5] ~= '' then
    redis.call('HSET', KEYS[2], ARGV[3], ARGV[5])
    redis.call('EXPIRE', KEYS[2], ARGV[6])
  end
end
return acked
"#,
    )
});

/// Ends a job that is not finished yet with a final state (`cancelled` or `failed`) and, if
/// given, an error; with DROP = 1 also deletes its queue. A job already finished keeps its
/// state: read and write are one step, so a job that completes meanwhile is never overwritten.
///
/// KEYS: progress, queue. ARGV: state, error or '', DROP (1 or 0). Returns the state after, or
/// `gone` when the job's progress does not exist.
pub static END: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'gone' end
if state == 'done' or state == 'done-with-failures' or state == 'failed' or state == 'cancelled' then
  return state
end
redis.call('HSET', KEYS[1], 'state', ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[2]) end
if ARGV[3] == '1' then redis.call('DEL', KEYS[2]) end
return ARGV[1]
"#,
    )
});

#[cfg(test)]
mod tests {
    use super::GONE;
    use crate::queue::store::spec::JobState;

    /// Every `'word'` that a script compares a state with or writes as one.
    fn state_literals(source: &str) -> Vec<&str> {
        let markers = [
            "state == '",
            "state ~= '",
            "state = '",
            "'state', '",
            "return '",
        ];
        let mut found = Vec::new();
        for marker in markers {
            for (at, _) in source.match_indices(marker) {
                let rest = &source[at + marker.len()..];
                let word = &rest[..rest.find('\'').expect("a closing quote")];
                found.push(word);
            }
        }
        found
    }

    #[test]
    fn the_scripts_spell_job_states_as_job_state_does() {
        let source = include_str!("scripts.rs");
        let lua = &source[..source.find("#[cfg(test)]").expect("this test module")];
        let literals = state_literals(lua);
        assert!(literals.len() >= 10, "{literals:?}");
        for word in literals {
            assert!(
                word == GONE || (JobState::parse(word) != JobState::Unknown),
                "a script spells a job state `{word}`, which JobState does not"
            );
        }
        // CLAIM takes only runnable jobs, END keeps every final state.
        for state in JobState::ALL {
            if state.is_runnable() {
                assert!(lua.contains(&format!("state ~= '{state}'")), "{state}");
            }
            if state.is_final() {
                assert!(lua.contains(&format!("state == '{state}'")), "{state}");
            }
        }
        assert!(lua.contains(&format!("return '{GONE}'")));
    }
}
