import type { InboundJobPayload } from '@wxrelay/shared';
import { hashTagOf } from '@wxrelay/shared';
import type { RedisClient } from '@wxrelay/shared/redis';
import { LOCK_LOST, createJobScripts, jobScriptKeys, type LedgerGrantArgs } from '@wxrelay/shared/queue';
import { LEDGER_LUA, triggerTime, WINDOW_RULES, windowTrigger, type QuotaLedger, type WindowTrigger } from '../delivery/ledger.js';
import { LockLost } from '../errors.js';
import type { Follower, UserTurns } from '../user-turns.js';
import type { JobContext, ReplyProgress } from './job.js';

/**
 * The Redis side of a job's steps, as few round trips as the keys allow: what the pipeline asks of
 * Redis beyond BullMQ, in three calls — start (the window the message opened, the turn), plan (the
 * quota and the planned progress, before the first send) and finish (the turn released, the next
 * job of the user woken). {@link createRedisSteps} makes each one command (queue/job-scripts.ts in
 * the shared package); {@link separateSteps} makes them of the ledger's and the turns' own calls
 * (in-memory stand-ins in tests).
 */

/** A customer-service window a message opened, as the ledger records it. */
export interface WindowGrant {
  readonly trigger: WindowTrigger;
  /** When the user acted (Unix ms). */
  readonly at: number;
  /** The message's dedup key: recording it again changes nothing. */
  readonly triggerId: string;
}

/** The window `payload`'s message opened, if it opens one. */
export function windowGrant(payload: InboundJobPayload): WindowGrant | undefined {
  const trigger = windowTrigger(payload.message);
  return trigger === undefined ? undefined : { trigger, at: triggerTime(payload), triggerId: payload.dedupKey };
}

export type StartedTurn =
  | { readonly kind: 'wait' }
  /** An earlier job of the user answered this one's message. */
  | { readonly kind: 'answered'; readonly by: string }
  /** The job holds its user's turn; `inbox`: a fetch from the user's inbox would find something (when asked). */
  | { readonly kind: 'turn'; readonly followers: readonly Follower[]; readonly inbox: boolean };

export interface StartRequest {
  /** The job's place in its user's list. */
  readonly score: number;
  /** How many jobs waiting behind it to return (to be answered together). */
  readonly followers: number;
  /** Recorded before the turn is taken. */
  readonly grant?: WindowGrant;
  /** Passive mode: say whether the user's inbox holds anything for a fetch. */
  readonly peekInbox?: boolean;
}

export interface PlanRequest {
  /** The windows of the messages answered together (later than the job's own). */
  readonly grants: readonly WindowGrant[];
  /** Messages wanted (0: none, no reservation). */
  readonly want: number;
  /** The progress to save when `granted` messages may be sent. */
  readonly planned: (granted: number) => ReplyProgress;
  /** The jobs answered together with this one, marked as such with the plan. */
  readonly absorbed: readonly string[];
  readonly now: number;
}

type StepJob = Pick<JobContext, 'openid' | 'jobId' | 'token'>;

export interface JobSteps {
  /** The job's first step: the window its message opened recorded, its user's turn taken (or not). */
  start(job: StepJob, req: StartRequest): Promise<StartedTurn>;
  /**
   * Before the first send, only while the attempt holds the job's lock (else {@link LockLost}):
   * the absorbed messages' windows, the quota reserved once for every part (idempotent per job),
   * and the planned progress saved with the absorbed jobs' markers. Returns how many messages were
   * granted; the progress then is `planned(granted)` (saved, with the markers, unless nothing was
   * granted of what was wanted: then the answers as they are, so a slow one is not asked again).
   */
  plan(job: StepJob & Pick<JobContext, 'progress'>, req: PlanRequest): Promise<number>;
  /** Releases the job's turn (only while the attempt still holds the job's lock) and wakes the next job of the user. */
  finish(job: StepJob): Promise<void>;
}

/** The grant as the ledger's Lua takes it. */
function grantArgs(g: WindowGrant): LedgerGrantArgs {
  const rule = WINDOW_RULES[g.trigger];
  return { at: g.at, limit: rule.limit, validityMs: rule.validityMs, triggerId: g.triggerId };
}

function parseFollowers(flat: readonly (number | string)[]): Follower[] {
  const list: Follower[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) {
    let data: unknown;
    try {
      data = JSON.parse(String(flat[i + 1]));
    } catch {
      data = undefined;
    }
    list.push({ jobId: String(flat[i]), data });
  }
  return list;
}

export interface RedisStepsDeps {
  readonly redis: RedisClient;
  readonly appId: string;
  /** BullMQ's job key prefix of the queue, `<prefix>:<queue>:`. */
  readonly jobKeyPrefix: string;
  /** Its keys must carry the queue's hash tag when the prefix has one (one slot per script). */
  readonly ledger: QuotaLedger;
  /** A turn list (and the cursor, and the markers) outlives its last activity by this long (default 7 days). */
  readonly ttlMs?: number;
}

/** The steps as one Redis command each (production). */
export function createRedisSteps(deps: RedisStepsDeps): JobSteps {
  const keys = jobScriptKeys(deps.appId, deps.jobKeyPrefix);
  // The ledger's keys go into the same scripts as the queue's: they must share its slot.
  const tag = hashTagOf(deps.jobKeyPrefix);
  const sample = deps.ledger.keys('o');
  if (tag !== undefined && (hashTagOf(sample.window) !== tag || hashTagOf(sample.sends) !== tag)) {
    throw new Error(`quota ledger keys (${sample.window}) do not carry the queue's hash tag {${tag}}: build the ledger with hashTag: '${tag}'`);
  }
  const scripts = createJobScripts(deps.redis, keys, { ledgerLua: LEDGER_LUA, ...(deps.ttlMs === undefined ? {} : { ttlMs: deps.ttlMs }) });
  return {
    async start(job, req) {
      const answer = await scripts.start({
        openid: job.openid,
        jobId: job.jobId,
        score: req.score,
        followers: req.followers,
        window: deps.ledger.keys(job.openid).window,
        ...(req.grant === undefined ? {} : { grant: grantArgs(req.grant) }),
        ...(req.peekInbox === true ? { peekInbox: true } : {}),
      });
      if (answer.kind !== 'turn') return answer;
      return { kind: 'turn', followers: parseFollowers(answer.followers), inbox: answer.inbox };
    },
    async plan(job, req) {
      const { progress } = job;
      const { window, sends } = deps.ledger.keys(job.openid);
      const before = progress.current;
      const call = async (want: number, data: ReplyProgress, otherwise: ReplyProgress | undefined, grants: readonly WindowGrant[]): Promise<number> => {
        const granted = await scripts.plan({
          jobId: job.jobId,
          token: job.token ?? '',
          window,
          sends,
          grants: grants.map(grantArgs),
          want,
          now: req.now,
          reservationId: job.jobId,
          dataIfGranted: progress.encode(data),
          dataOtherwise: otherwise === undefined ? '' : progress.encode(otherwise),
          absorbed: req.absorbed,
        });
        if (granted === LOCK_LOST) throw new LockLost(job.jobId);
        return granted;
      };
      const whole = req.planned(req.want);
      const granted = await call(req.want, whole, before, req.grants);
      if (granted >= req.want) {
        progress.saved(whole);
        return req.want;
      }
      progress.saved(before);
      if (granted === 0) return 0;
      // Cut to what the quota allows: the reservation is the job's, so asking again for as many gets them all.
      const cut = req.planned(granted);
      const again = await call(granted, cut, undefined, []);
      if (again !== granted) throw new Error(`the job's quota reservation changed between two reads (${granted}, then ${again})`);
      progress.saved(cut);
      return granted;
    },
    async finish(job) {
      const released = await scripts.finish({ openid: job.openid, jobId: job.jobId, token: job.token ?? '' });
      if (released.kind === LOCK_LOST) throw new LockLost(job.jobId);
    },
  };
}

export interface SeparateStepsDeps {
  readonly ledger: QuotaLedger;
  readonly turns: UserTurns;
  /** Wakes a job waiting for its turn (best effort). */
  readonly promote?: (jobId: string) => Promise<void>;
}

/**
 * The steps made of the ledger's and the turns' own calls, one round trip each, not atomic (a
 * crash between two of them is not covered as the scripts cover it): for in-memory stand-ins.
 */
export function separateSteps(deps: SeparateStepsDeps): JobSteps {
  const { ledger, turns } = deps;
  return {
    async start(job, req) {
      if (req.grant !== undefined) await ledger.grant(job.openid, req.grant.trigger, req.grant.at, req.grant.triggerId);
      const turn = await turns.enter(job.openid, job.jobId, req.score, req.followers);
      return turn.kind === 'turn' ? { ...turn, inbox: true } : turn;
    },
    async plan(job, req) {
      const { progress } = job;
      for (const g of req.grants) await ledger.grant(job.openid, g.trigger, g.at, g.triggerId);
      const granted = req.want === 0 ? 0 : await ledger.reserve(job.openid, req.want, job.jobId, req.now);
      if (granted < req.want) await progress.save(progress.current);
      if (granted === 0 && req.want > 0) return 0;
      if (req.absorbed.length > 0) await turns.markAnswered(job.jobId, req.absorbed);
      await progress.save(req.planned(Math.min(granted, req.want)));
      return Math.min(granted, req.want);
    },
    async finish(job) {
      const next = await turns.release(job.openid, job.jobId);
      if (next !== undefined && deps.promote !== undefined) await deps.promote(next).catch(() => undefined);
    },
  };
}
