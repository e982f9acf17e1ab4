import type { RedisClient } from '../redis-connection.js';
import { PROMOTE_KEYS, assertBullmqForTurns, checkBullmqInternals, lockKey, queueKeysAt } from './bullmq.js';
import { answerKeys, type AnswerKeys } from './answers.js';
import { TURNS_FUNCTIONS_LUA, TURNS_TTL_MS, define, turnKeys, type TakeAnswer, type TurnKeys } from './turns.js';

/**
 * The worker's Redis steps of one job, fused: one command per step where the steps' keys share the
 * queue's hash slot, so a job costs the worker at most two round trips of its own beside BullMQ's
 * (README "The worker", issue #14):
 *
 * - **start** (`wxJobStart`): records the customer-service window the message opened (the quota
 *   ledger's grant) and takes the user's turn (turns.ts: the event stream caught up, the head, the
 *   "answered together" marker, the followers), and in passive mode says whether the user's inbox
 *   has anything a fetch would take;
 * - **plan** (`wxJobPlan`), before the first send and only while the attempt holds the job's lock:
 *   the windows of the messages answered together, the quota reservation, the planned progress
 *   (job-data.ts' lock-guarded write) and the markers of the jobs answered together — atomically, so
 *   no reservation is made without its plan and no marker without the set that names it;
 * - **finish** (`wxJobFinish`), sent in the same round trip as BullMQ's completion
 *   (completion.ts): releases the turn, only while the job's lock is still this attempt's, and
 *   wakes the new head when it waits in `delayed` for its turn, with BullMQ's own `promote` Lua
 *   (read from the installed bullmq, digest-checked in bullmq.ts).
 *
 * The quota ledger's Lua is the worker's (its rules and its keys): it is handed in as
 * {@link JobScriptsOptions.ledgerLua}, defining `ledgerGrant(window, at, limit, validityMs,
 * triggerId)` and `ledgerReserve(window, sends, want, now, reservationId)` (returning how many
 * messages it granted). Its keys must live in the queue's slot (the worker's `ledgerKeys` under the
 * queue's tag): `services/worker/test/cluster-keys.test.ts` holds every call to one slot.
 */

/** The keys the per-job scripts touch besides the caller's per-user ones, derived from the queue's. */
export interface JobScriptKeys {
  readonly turns: TurnKeys;
  readonly answers: AnswerKeys;
  /** BullMQ's `promote` keys, in its order ({@link PROMOTE_KEYS}). */
  readonly promote: readonly string[];
}

/** The per-job script keys for `appId` on the queue whose job key prefix is `jobKeyPrefix` (`<prefix>:<queue>:`). */
export function jobScriptKeys(appId: string, jobKeyPrefix: string): JobScriptKeys {
  const queue = queueKeysAt(jobKeyPrefix);
  return { turns: turnKeys(appId, jobKeyPrefix), answers: answerKeys(jobKeyPrefix), promote: PROMOTE_KEYS.map((t) => queue.key(t)) };
}

export interface JobScriptsOptions {
  /** Defines `ledgerGrant` and `ledgerReserve` (see the module comment). */
  readonly ledgerLua: string;
  /** A turn list (and the cursor, and the markers) outlives its last activity by this long. */
  readonly ttlMs?: number;
}

/** A window grant, as the ledger's `ledgerGrant` takes it. */
export interface LedgerGrantArgs {
  readonly at: number;
  readonly limit: number;
  readonly validityMs: number;
  readonly triggerId: string;
}

export interface StartRequest {
  readonly openid: string;
  readonly jobId: string;
  /** The job's place in the user's list (its enqueue time). */
  readonly score: number;
  /** How many of the jobs waiting behind it to return with their payloads when it gets its turn. */
  readonly followers: number;
  /** The ledger's window key of the user, and the grant to record first (none: nothing recorded). */
  readonly window: string;
  readonly grant?: LedgerGrantArgs;
  /** Passive mode: also say whether a fetch from the user's inbox would find anything. */
  readonly peekInbox?: boolean;
}

export type StartAnswer =
  | { readonly kind: 'wait' }
  | { readonly kind: 'answered'; readonly by: string }
  /** `inbox`: what {@link StartRequest.peekInbox} found (false when not asked). */
  | { readonly kind: 'turn'; readonly inbox: boolean; readonly followers: TakeAnswer };

export interface PlanRequest {
  readonly jobId: string;
  /** The attempt's lock token ('' : no check, for a job BullMQ did not hand out). */
  readonly token: string;
  /** The ledger's two keys of the user. */
  readonly window: string;
  readonly sends: string;
  /** Windows opened by the messages answered together, recorded before the reservation. */
  readonly grants: readonly LedgerGrantArgs[];
  /** Messages wanted (0: no reservation). */
  readonly want: number;
  readonly now: number;
  readonly reservationId: string;
  /** The job's data to write when all `want` are granted. */
  readonly dataIfGranted: string;
  /** The job's data to write when fewer are ('' : none). */
  readonly dataOtherwise: string;
  /** Marked as answered by `jobId` when all `want` are granted. */
  readonly absorbed: readonly string[];
}

/** What {@link JobScripts.plan} and {@link JobScripts.finish} answer when the attempt no longer holds the job's lock. */
export const LOCK_LOST = 'lock-lost';

export interface FinishRequest {
  readonly openid: string;
  readonly jobId: string;
  /** The attempt's lock token ('' : no check). */
  readonly token: string;
}

export type FinishAnswer = { readonly kind: 'released'; readonly head: string | undefined } | { readonly kind: typeof LOCK_LOST };

export interface JobScripts {
  readonly keys: JobScriptKeys;
  readonly ttlMs: number;
  start(req: StartRequest): Promise<StartAnswer>;
  /** How many messages were granted (what was written follows from it), or {@link LOCK_LOST} (nothing done). */
  plan(req: PlanRequest): Promise<number | typeof LOCK_LOST>;
  /** Released, with the new head of the user's list (woken when it waited in `delayed`), or the lock was lost (nothing done). */
  finish(req: FinishRequest): Promise<FinishAnswer>;
}

/*
 * START. KEYS: 1 turn list, 2 events, 3 cursor, 4 active, 5 wait, 6 ledger window, 7 the user's
 * inbox, 8 this job's answer. ARGV: 1 jobId, 2 score, 3 job key prefix, 4 turns prefix, 5 ttl,
 * 6 marker prefix, 7 followers, 8 grant ('1' or ''), 9 at, 10 limit, 11 validityMs, 12 triggerId,
 * 13 peek at the inbox ('1' or ''). Returns the take's answer; {1, …} gets the inbox flag second.
 */
function startLua(ledgerLua: string): string {
  return `${TURNS_FUNCTIONS_LUA}
${ledgerLua}
if ARGV[8] == '1' then ledgerGrant(KEYS[6], tonumber(ARGV[9]), ARGV[10], tonumber(ARGV[11]), ARGV[12]) end
local gap = turnsCatchUp(KEYS[2], KEYS[3], ARGV[3], ARGV[4], ARGV[5])
local out = turnsTake(KEYS[1], KEYS[4], KEYS[5], KEYS[3], gap, ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]))
if out[1] == 1 then
  -- What FETCH (answers.ts) would find: an answer of this job's own (fetched before) or an inbox entry.
  local pending = 0
  if ARGV[13] == '1' and (redis.call('HEXISTS', KEYS[8], 'count') == 1 or redis.call('LLEN', KEYS[7]) > 0) then pending = 1 end
  table.insert(out, 2, pending)
end
return out`;
}

/*
 * PLAN. KEYS: 1 job hash, 2 job lock, 3 ledger window, 4 ledger sends, 5.. the markers of the
 * absorbed jobs. ARGV: 1 lock token ('' : no check), 2 want, 3 now, 4 reservation id, 5 data when
 * all is granted, 6 data otherwise ('' : none), 7 absorber id, 8 marker ttl, 9 grants (n), then 4
 * per grant (at, limit, validityMs, triggerId). Returns how many were granted, or -1 (lock lost).
 */
function planLua(ledgerLua: string): string {
  return `${ledgerLua}
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
for i = 0, tonumber(ARGV[9]) - 1 do
  local a = 10 + 4 * i
  ledgerGrant(KEYS[3], tonumber(ARGV[a]), ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3])
end
local want = tonumber(ARGV[2])
local granted = 0
if want > 0 then granted = ledgerReserve(KEYS[3], KEYS[4], want, tonumber(ARGV[3]), ARGV[4]) end
if granted == want then
  redis.call('HSET', KEYS[1], 'data', ARGV[5])
  for i = 5, #KEYS do redis.call('SET', KEYS[i], ARGV[7], 'PX', ARGV[8]) end
elseif ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'data', ARGV[6])
end
return granted`;
}

/*
 * FINISH. KEYS: 1 turn list, 2 job lock, 3..11 BullMQ's promote keys (delayed, wait, paused, meta,
 * prioritized, active, pc, events, marker). ARGV: 1 jobId, 2 job key prefix, 3 lock token ('' : no
 * check). Returns {0} (lock lost) or {1, new head or false}.
 *
 * No catch-up with the event stream here (start does it): a release only needs the jobs that wait
 * for their turn, and each of those registered itself when it took (or tried) its turn. A job the
 * stream would register now has not tried yet: it is not in `delayed`, nothing to wake. (The
 * separate steps used while a layout change runs, turns.ts' release, still catch up: the order gate
 * across layouts relies on it, as shard-change.integration.test.ts shows.)
 */
function finishLua(promote: string): string {
  return `${TURNS_FUNCTIONS_LUA}
-- BullMQ's promote (verbatim below, from the installed bullmq).
local function bullmqPromote(KEYS, ARGV)
${promote}
end
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return {0} end
local head = turnsRelease(KEYS[1], ARGV[1])
if not head then return {1} end
if redis.call('ZSCORE', KEYS[3], head) then
  bullmqPromote({KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]}, {ARGV[2], head})
end
return {1, head}`;
}

/**
 * Defines the per-job scripts on `redis` (once per connection, at wiring time), after the startup
 * check of BullMQ's internals: throws, so the worker does not start, when the installed bullmq is
 * not one these scripts were written against (queue/bullmq.ts).
 */
export function createJobScripts(redis: RedisClient, keys: JobScriptKeys, opts: JobScriptsOptions): JobScripts {
  const check = checkBullmqInternals();
  assertBullmqForTurns(check);
  if (check.promote === undefined) throw new Error(`bullmq ${check.version}: promote script not found`);
  const ttlMs = opts.ttlMs ?? TURNS_TTL_MS;
  const { turns, answers } = keys;
  const start = define(redis, 'wxJobStart', 8, startLua(opts.ledgerLua));
  const plan = define(redis, 'wxJobPlan', undefined, planLua(opts.ledgerLua));
  const finish = define(redis, 'wxJobFinish', 11, finishLua(check.promote));
  return {
    keys,
    ttlMs,
    async start(req) {
      const g = req.grant;
      const answer = (await start(
        turns.turnsPrefix + req.openid,
        turns.events,
        turns.cursorKey,
        turns.active,
        turns.wait,
        req.window,
        answers.inboxPrefix + req.openid,
        answers.answerPrefix + req.jobId,
        req.jobId,
        req.score,
        turns.jobPrefix,
        turns.turnsPrefix,
        ttlMs,
        turns.markerPrefix,
        req.followers,
        g === undefined ? '' : '1',
        g?.at ?? 0,
        g?.limit ?? 0,
        g?.validityMs ?? 0,
        g?.triggerId ?? '',
        req.peekInbox === true ? '1' : '',
      )) as TakeAnswer;
      if (answer[0] === 2) return { kind: 'answered', by: String(answer[1]) };
      if (answer[0] !== 1) return { kind: 'wait' };
      return { kind: 'turn', inbox: answer[1] === 1, followers: answer.slice(2) };
    },
    async plan(req) {
      const markers = req.absorbed.map((id) => turns.markerPrefix + id);
      const grants = req.grants.flatMap((g) => [g.at, g.limit, g.validityMs, g.triggerId]);
      const granted = Number(
        await plan(
          4 + markers.length,
          turns.jobPrefix + req.jobId,
          lockKey(turns.jobPrefix, req.jobId),
          req.window,
          req.sends,
          ...markers,
          req.token,
          req.want,
          req.now,
          req.reservationId,
          req.dataIfGranted,
          req.dataOtherwise,
          req.jobId,
          ttlMs,
          req.grants.length,
          ...grants,
        ),
      );
      return granted < 0 ? LOCK_LOST : granted;
    },
    async finish(req) {
      const answer = (await finish(turns.turnsPrefix + req.openid, lockKey(turns.jobPrefix, req.jobId), ...keys.promote, req.jobId, turns.jobPrefix, req.token)) as unknown[];
      if (answer[0] !== 1) return { kind: LOCK_LOST };
      return { kind: 'released', head: typeof answer[1] === 'string' ? answer[1] : undefined };
    },
  };
}
