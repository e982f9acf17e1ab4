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
 *   *later* is unfinished, the backlog this one answers together stops before it. Earlier means an
 *   earlier enqueue time, a tie going to the layout with fewer shards, so two jobs never wait for
 *   each other. A job leaving its turn wakes the user's next job in the other layout.
 * - **The pending-answer inbox** (passive mode, {@link crossLayoutAnswers}): a message that fetches a
 *   pending answer looks in the user's inbox of the other layout first, then in its own.
 */

/** How a job may take its turn given the user's jobs in the other layout. */
export type GateAnswer =
  /** A job of the user queued earlier there is unfinished: wait. */
  | { readonly kind: 'wait' }
  /** None unfinished there (or only earlier ones, now finished). */
  | { readonly kind: 'free' }
  /** One queued later there (at `before`) is unfinished: answer no message of this queue queued at or after it. */
  | { readonly kind: 'alone'; readonly before: number };

export interface TurnGate {
  check(openid: string, jobId: string, score: number): Promise<GateAnswer>;
  /** The enqueue times of `jobIds` in the user's turn list of this queue (undefined: not there). */
  scores(openid: string, jobIds: readonly string[]): Promise<(number | undefined)[]>;
  /** A job of the user left its turn here: wakes the user's next job in the other layout, if it waits. */
  released(openid: string): Promise<void>;
}

/* KEYS: 1 the user's turn list in the other queue. ARGV: 1 that queue's job key prefix, 2 the job's
 * score, 3 '1' when a job there with the same score counts as earlier.
 * Returns {'wait'}, {'free'} or {'alone', the score of the earliest later unfinished job}. */
const GATE_LUA = `
local list, prefix, score, tie = KEYS[1], ARGV[1], ARGV[2], ARGV[3] == '1'
local function unfinished(id)
  local h = redis.call('HMGET', prefix .. id, 'timestamp', 'finishedOn')
  return h[1] and not h[2]
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', list, '-inf', tie and score or ('(' .. score))) do
  if unfinished(id) then return {'wait'} end
end
local later = redis.call('ZRANGEBYSCORE', list, tie and ('(' .. score) or score, '+inf', 'WITHSCORES', 'LIMIT', 0, 100)
for i = 1, #later, 2 do
  if unfinished(later[i]) then return {'alone', later[i + 1]} end
end
return {'free'}`;

/** Not a job id (those never contain `:`): `release` of it only brings the turn lists up to date. */
const PROBE = 'wxrelay:layout-probe';

export interface LayoutGateDeps {
  readonly redis: RedisClient;
  readonly appId: string;
  readonly layouts: QueueLayouts;
  /** The turns of every queue in use (this process consumes them all). */
  readonly turnsOf: (queue: QueueShard) => UserTurns;
  /** Moves a job of `queue` that waits (delayed) back to the wait list; best effort. */
  readonly promote: (queue: QueueShard, jobId: string) => Promise<void>;
}

/** The gate of each queue's jobs (undefined with one layout); the script is defined once, here. */
export function createLayoutGates(deps: LayoutGateDeps): (queue: QueueShard) => TurnGate | undefined {
  const { layouts, redis } = deps;
  if (layouts.also === undefined) return () => undefined;
  const gate = defineScript(redis, 'wxrelayLayoutGate', 1, GATE_LUA);
  const listOf = (queue: QueueShard, openid: string): string => turnKeys(deps.appId, queue.jobPrefix).turnsPrefix + openid;
  return (queue) => ({
    async check(openid, _jobId, score) {
      const other = layouts.counterpart(queue, openid);
      if (other === undefined) return { kind: 'free' };
      // The other queue's turn lists, up to date with every job added there so far.
      await deps.turnsOf(other).release(openid, PROBE);
      const tie = layouts.arbiter?.shards === other.shards ? '1' : '0';
      const answer = (await gate([listOf(other, openid)], [other.jobPrefix, score, tie])) as unknown[];
      const kind = String(answer[0]);
      if (kind === 'wait') return { kind: 'wait' };
      if (kind === 'alone') return { kind: 'alone', before: Number(answer[1]) };
      return { kind: 'free' };
    },
    async scores(openid, jobIds) {
      if (jobIds.length === 0) return [];
      const found = await redis.zmscore(listOf(queue, openid), ...jobIds);
      return found.map((v) => (v === null ? undefined : Number(v)));
    },
    async released(openid) {
      const other = layouts.counterpart(queue, openid);
      if (other === undefined) return;
      const head = await deps.turnsOf(other).release(openid, PROBE);
      if (head !== undefined) await deps.promote(other, head);
    },
  });
}

/**
 * `turns` of one queue, passed through `gate`: `enter` and `take` ask it first (and a job holding
 * its turn answers together only the messages queued before the user's next one in the other
 * layout); `release` also wakes the user's next job in the other layout (it would otherwise sleep
 * out its back-off).
 */
export function gatedTurns(turns: UserTurns, gate: TurnGate | undefined): UserTurns {
  if (gate === undefined) return turns;
  return {
    ...turns,
    async enter(openid, jobId, enqueuedAt, followers) {
      const may = await gate.check(openid, jobId, enqueuedAt);
      if (may.kind === 'wait') return { kind: 'wait' };
      const turn = await turns.enter(openid, jobId, enqueuedAt, followers);
      if (may.kind === 'free' || turn.kind !== 'turn' || turn.followers.length === 0) return turn;
      const scores = await gate.scores(openid, turn.followers.map((f) => f.jobId));
      const cut = scores.findIndex((s) => s === undefined || s >= may.before);
      return cut < 0 ? turn : { kind: 'turn', followers: turn.followers.slice(0, cut) };
    },
    async take(openid, jobId, enqueuedAt) {
      if ((await gate.check(openid, jobId, enqueuedAt)).kind === 'wait') return false;
      return turns.take(openid, jobId, enqueuedAt);
    },
    async release(openid, jobId) {
      const head = await turns.release(openid, jobId);
      await gate.released(openid).catch(() => undefined);
      return head;
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
