import type { RedisClient } from '@wxrelay/shared/redis';
import { turnKeys, type AnswerStore, type FetchResult, type QueueLayouts, type QueueShard } from '@wxrelay/shared/queue';
import { defineScript } from './redis-script.js';
import type { UserTurns } from './user-turns.js';

/**
 * What a worker does while QUEUE_SHARDS changes (QUEUE_SHARDS_ALSO set): it consumes the queues of
 * both layouts, and a user's messages may sit in both at once (their old messages in the layout
 * being left, their new ones in the other; during the gateways' rolling restart, alternately in
 * either). Two things keep that user whole, both used only while there are two layouts:
 *
 * - **Order** ({@link createLayoutGate}): before a job takes its user's turn in its own queue, the
 *   user's queue in the other layout is read (its turn list, brought up to date with its event
 *   stream first, as the turns script does): while a job of the user queued there *earlier* is
 *   unfinished, this one waits (back to `delayed`, as for its own queue's turn); while one queued
 *   *later* is unfinished, this one answers only its own message (no backlog answered together, which
 *   could jump over it). Earlier means an earlier enqueue time, a tie going to the layout with fewer
 *   shards, so two jobs never wait for each other.
 * - **The pending-answer inbox** (passive mode, {@link crossLayoutAnswers}): a message that fetches a
 *   pending answer looks in the user's inbox of the other layout first, then in its own.
 */

/** How a job may take its turn given the user's jobs in the other layout. */
export type GateAnswer = 'wait' | 'alone' | 'free';

export interface TurnGate {
  /** `wait`: an earlier job of the user in the other layout is unfinished; `alone`: a later one is (answer nothing with this job); `free`. */
  check(openid: string, jobId: string, score: number): Promise<GateAnswer>;
}

/* KEYS: 1 the user's turn list in the other queue. ARGV: 1 that queue's job key prefix, 2 the job's
 * score, 3 '1' when a job there with the same score counts as earlier. Returns 'wait', 'alone' or 'free'. */
const GATE_LUA = `
local list, prefix, score, tie = KEYS[1], ARGV[1], ARGV[2], ARGV[3] == '1'
local function unfinished(id)
  local h = redis.call('HMGET', prefix .. id, 'timestamp', 'finishedOn')
  return h[1] and not h[2]
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', list, '-inf', tie and score or ('(' .. score))) do
  if unfinished(id) then return 'wait' end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', list, tie and ('(' .. score) or score, '+inf', 'LIMIT', 0, 100)) do
  if unfinished(id) then return 'alone' end
end
return 'free'`;

/** Not a job id (those never contain `:`): `release` of it only brings the turn lists up to date. */
const PROBE = 'wxrelay:layout-probe';

export interface LayoutGateDeps {
  readonly redis: RedisClient;
  readonly appId: string;
  readonly layouts: QueueLayouts;
  /** The turns of every queue in use (this process consumes them all), by prefix. */
  readonly turnsOf: (queue: QueueShard) => UserTurns;
}

/** The gate of each queue's jobs (undefined with one layout); the script is defined once, here. */
export function createLayoutGates(deps: LayoutGateDeps): (queue: QueueShard) => TurnGate | undefined {
  const { layouts } = deps;
  if (layouts.also === undefined) return () => undefined;
  const gate = defineScript(deps.redis, 'wxrelayLayoutGate', 1, GATE_LUA);
  return (queue) => ({
    async check(openid, _jobId, score) {
      const other = layouts.counterpart(queue, openid);
      if (other === undefined) return 'free';
      // The other queue's turn lists, up to date with every job added there so far.
      await deps.turnsOf(other).release(openid, PROBE);
      const tie = layouts.arbiter?.shards === other.shards ? '1' : '0';
      return String(await gate([turnKeys(deps.appId, other.jobPrefix).turnsPrefix + openid], [other.jobPrefix, score, tie])) as GateAnswer;
    },
  });
}

/** `turns` of one queue, its `enter` and `take` passed through `gate` first. */
export function gatedTurns(turns: UserTurns, gate: TurnGate | undefined): UserTurns {
  if (gate === undefined) return turns;
  return {
    ...turns,
    async enter(openid, jobId, enqueuedAt, followers) {
      const may = await gate.check(openid, jobId, enqueuedAt);
      if (may === 'wait') return { kind: 'wait' };
      return turns.enter(openid, jobId, enqueuedAt, may === 'alone' ? 0 : followers);
    },
    async take(openid, jobId, enqueuedAt) {
      if ((await gate.check(openid, jobId, enqueuedAt)) === 'wait') return false;
      return turns.take(openid, jobId, enqueuedAt);
    },
  };
}

/**
 * The answer store of one queue, whose `fetch` (a message asking for the user's pending answer)
 * looks in the user's inbox of the other layout first. A page found there is recorded there as this
 * message's answer (atomically with taking it from that inbox, by the same script as always), then
 * copied to this queue's answer, where the gateways claim it; a retried job finds either record and
 * takes no second page.
 */
export function crossLayoutAnswers(redis: RedisClient, own: AnswerStore, queue: QueueShard, layouts: QueueLayouts, storeOf: (queue: QueueShard) => AnswerStore): AnswerStore {
  if (layouts.also === undefined) return own;
  return {
    keys: own.keys,
    record: (...args) => own.record(...args),
    claim: (...args) => own.claim(...args),
    sweep: (...args) => own.sweep(...args),
    pending: () => own.pending(),
    async fetch(openid, jobId, placeholderPage): Promise<FetchResult> {
      const counterpart = layouts.counterpart(queue, openid);
      if (counterpart === undefined) return own.fetch(openid, jobId, placeholderPage);
      if ((await redis.hexists(own.keys.answerPrefix + jobId, 'count')) === 1) return { kind: 'kept', expired: 0 };
      const other = storeOf(counterpart);
      const there = await other.fetch(openid, jobId, placeholderPage);
      if (there.kind === 'empty') {
        const here = await own.fetch(openid, jobId, placeholderPage);
        return { ...here, expired: here.expired + there.expired };
      }
      const [count, page, from] = await redis.hmget(other.keys.answerPrefix + jobId, 'count', 'p0', 'from');
      const source = from === 'inbox' || from === 'placeholder' ? from : '';
      await own.record(jobId, count === '0' || page === null || page === undefined ? [] : [page], source);
      return there;
    },
  };
}
