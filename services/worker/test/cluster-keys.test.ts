import { createRequire } from 'node:module';
import { QueueKeys } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { clusterKeyLayoutProblem, hashTagOf, INBOUND_QUEUE, loadWorkerConfig } from '@wxrelay/shared';
import { ADD_STANDARD_JOB_KEYS, PROMOTE_KEYS, answerKeys, jobScriptKeys, lockKey, queueKeys, turnKeys } from '@wxrelay/shared/queue';
import { ledgerKeys } from '../src/delivery/ledger.js';
import { memoryKey } from '../src/replies/memory.js';
import { tokenKeys } from '../src/wechat/token-store.js';

/**
 * The cluster key inventory: every Lua script and multi-key command the project runs, with the keys
 * one call touches (declared as KEYS or reached from inside the script), for a sample queue prefix,
 * appid, openid and job id. Under a prefix with a hash tag each call must stay in one hash slot
 * (Redis Cluster refuses the call otherwise: CROSSSLOT, or "Script attempted to access keys that do
 * not hash to the same slot"). Slots are computed by the function ioredis itself routes with
 * (cluster-key-slot, its dependency). The Cluster tests run the same code against a real cluster.
 */

const requireFromIoredis = createRequire(createRequire(import.meta.url).resolve('ioredis'));
const keySlot = requireFromIoredis('cluster-key-slot') as (key: string) => number;

const APP = 'wx5823bf96d3bd56c7';
const OPENID = 'oia2TjuEGTNoeX76QEjQNrcURxG8';
const OTHER_OPENID = 'oOtherUserEGTNoeX76QEjQNrcU';
const JOB = 'msg-6054768590064713728';
const OTHER_JOB = 'msg-6054768590064713729';

interface ScriptCall {
  readonly script: string;
  readonly where: string;
  readonly keys: readonly string[];
}

/** Every script / multi-key command, and the keys one call touches, under `prefix`. */
function inventory(prefix: string): ScriptCall[] {
  const q = queueKeys(prefix, INBOUND_QUEUE);
  const turns = turnKeys(APP, q.jobPrefix);
  const ledger = ledgerKeys(APP, OPENID, hashTagOf(prefix));
  const job = jobScriptKeys(APP, q.jobPrefix);
  const token = tokenKeys(APP);
  const answers = answerKeys(q.jobPrefix);
  // Every key type BullMQ's own scripts use (its Worker, Queue, Job: moveToActive, moveToFinished,
  // extendLocks, …), as BullMQ derives them, plus a job's hash, lock and logs.
  const bullmqKeys = [...Object.values(new QueueKeys(prefix).getKeys(INBOUND_QUEUE)), q.jobPrefix + JOB, lockKey(q.jobPrefix, JOB), `${q.jobPrefix}${JOB}:logs`];
  return [
    // The gateway (packages/shared/src/queue/producer.ts).
    { script: 'wxrelayAddStandardJobs (batch Lua: BullMQ addStandardJob per job)', where: 'gateway', keys: [...ADD_STANDARD_JOB_KEYS.map((t) => q.key(t)), q.jobPrefix + JOB, q.dedupPrefix + JOB, q.jobPrefix + OTHER_JOB, q.dedupPrefix + OTHER_JOB] },
    { script: 'addBulk fallback pipeline (HSETNX meta, EXISTS dedup+job)', where: 'gateway', keys: [q.key('meta'), q.dedupPrefix + JOB, q.jobPrefix + JOB, q.dedupPrefix + OTHER_JOB, q.jobPrefix + OTHER_JOB] },
    { script: "BullMQ's own scripts (Queue, Worker, Job)", where: 'gateway, worker, cli', keys: bullmqKeys },
    // The worker's turns (packages/shared/src/queue/turns.ts, services/worker/src/user-turns.ts).
    {
      script: 'wxTurns (take / release)',
      where: 'worker',
      keys: [turns.turnsPrefix + OPENID, turns.events, turns.cursorKey, turns.gapSeenKey, turns.active, turns.wait, turns.jobPrefix + JOB, turns.jobPrefix + OTHER_JOB, turns.turnsPrefix + OTHER_OPENID, turns.markerPrefix + JOB],
    },
    { script: 'wxTurnsUnmark', where: 'worker', keys: [turns.markerPrefix + JOB, turns.markerPrefix + OTHER_JOB] },
    // The per-job scripts (packages/shared/src/queue/job-scripts.ts, services/worker/src/pipeline/redis-steps.ts).
    {
      script: 'wxJobStart (ledger grant + turn take + inbox peek)',
      where: 'worker',
      keys: [
        ...[turns.turnsPrefix + OPENID, turns.events, turns.cursorKey, turns.gapSeenKey, turns.active, turns.wait, ledger.window, answers.inboxPrefix + OPENID, answers.answerPrefix + JOB],
        // Reached from inside: job hashes, other users' turn lists (registering), the marker.
        turns.jobPrefix + JOB,
        turns.jobPrefix + OTHER_JOB,
        turns.turnsPrefix + OTHER_OPENID,
        turns.markerPrefix + JOB,
      ],
    },
    {
      script: 'wxJobPlan (ledger grants + reservation + progress under the lock + markers)',
      where: 'worker',
      keys: [q.jobPrefix + JOB, lockKey(q.jobPrefix, JOB), ledger.window, ledger.sends, turns.markerPrefix + OTHER_JOB, turns.markerPrefix + 'msg-3'],
    },
    {
      script: "wxJobFinish (turn release + BullMQ's promote of the new head)",
      where: 'worker, along with moveToFinished',
      keys: [
        ...[turns.turnsPrefix + OPENID, lockKey(q.jobPrefix, JOB), ...job.promote],
        turns.jobPrefix + JOB,
        turns.jobPrefix + OTHER_JOB,
      ],
    },
    { script: 'markAnswered MULTI (SET per marker)', where: 'worker', keys: [turns.markerPrefix + JOB, turns.markerPrefix + OTHER_JOB] },
    // Progress writes under the job's lock (packages/shared/src/queue/job-data.ts).
    { script: 'wxrelayWriteJobDataIfLocked', where: 'worker', keys: [q.jobPrefix + JOB, lockKey(q.jobPrefix, JOB)] },
    // Passive answers (packages/shared/src/queue/answers.ts): the worker records and fetches, the gateway claims.
    { script: 'wxAnswerRecord (+ PUBLISH)', where: 'worker', keys: [answers.answerPrefix + JOB] },
    { script: 'wxAnswerClaim', where: 'gateway', keys: [answers.answerPrefix + JOB, answers.inboxPrefix + OPENID, answers.due] },
    { script: 'wxAnswerFetch', where: 'worker', keys: [answers.inboxPrefix + OPENID, answers.due, answers.answerPrefix + OTHER_JOB, answers.answerPrefix + JOB] },
    { script: 'wxAnswerSweep', where: 'worker', keys: [answers.due, answers.inboxPrefix + OPENID, answers.inboxPrefix + OTHER_OPENID, answers.answerPrefix + JOB] },
    // The quota ledger (services/worker/src/delivery/ledger.ts).
    { script: 'wxQuotaGrant', where: 'worker', keys: [ledger.window] },
    { script: 'wxQuotaReserve', where: 'worker', keys: [ledger.window, ledger.sends] },
    // The token store (services/worker/src/wechat/token-store.ts).
    { script: 'token compare-and-delete (EVAL)', where: 'worker', keys: [token.key] },
    { script: 'token lock compare-and-delete (EVAL)', where: 'worker', keys: [token.lockKey] },
    { script: 'token write MULTI (HSET, PEXPIREAT)', where: 'worker', keys: [token.key] },
    // The chatbot's memory (services/worker/src/replies/memory.ts).
    { script: 'memory append MULTI (RPUSH, LTRIM, EXPIRE)', where: 'worker', keys: [memoryKey(APP, OPENID)] },
  ];
}

const slotsOf = (call: ScriptCall): Set<number> => new Set(call.keys.map(keySlot));

describe('cluster key inventory', () => {
  it('ioredis routes by the slots Redis documents', () => {
    expect(keySlot('123456789')).toBe(0x31c3); // CRC16-XMODEM check value
    expect(keySlot('foo')).toBe(12182);
    expect(keySlot('{user1000}.following')).toBe(keySlot('{user1000}.followers'));
    expect(keySlot('a{}b')).not.toBe(keySlot('c{}d')); // an empty tag is no tag
  });

  it.each(['{wx}', 'app-{wx}', '{tenant_a-01}x'])('under QUEUE_PREFIX=%s every call stays in one slot', (prefix) => {
    const tag = hashTagOf(prefix)!;
    for (const call of inventory(prefix)) {
      expect([...slotsOf(call)], `${call.script}: ${call.keys.join(' ')}`).toHaveLength(1);
      // Everything tied to the queue is in the queue's slot (the ledger too); the single-key calls need not be.
      if (!/token|memory/.test(call.script)) expect([...slotsOf(call)], call.script).toEqual([keySlot(`{${tag}}`)]);
    }
    // The ledger's keys carry the queue's tag, as the turn lists: one script reserves the quota and
    // writes the job's planned progress; another grants the window and takes the turn.
    expect(ledgerKeys(APP, OPENID, tag).sends).toBe(`wx:cs-sends:{${tag}}:${APP}:${OPENID}`);
    expect(keySlot(ledgerKeys(APP, OPENID, tag).window)).toBe(keySlot(`{${tag}}`));
    // BullMQ's promote keys, as the finish script declares them, are the queue's.
    expect(jobScriptKeys(APP, queueKeys(prefix, INBOUND_QUEUE).jobPrefix).promote).toEqual(PROMOTE_KEYS.map((t) => queueKeys(prefix, INBOUND_QUEUE).key(t)));
  });

  it('without a hash tag the key names stay as they were, and the scripts would cross slots: hence the startup check', () => {
    const calls = inventory('wx');
    const turns = calls.find((c) => c.script.startsWith('wxTurns ('))!;
    expect(turns.keys[0]).toBe(`wx:turns:${APP}:${OPENID}`);
    expect(ledgerKeys(APP, OPENID).window).toBe(`wx:cs-window:${APP}:${OPENID}`);
    expect(slotsOf(turns).size).toBeGreaterThan(1);
    expect(slotsOf(calls.find((c) => c.script === 'wxQuotaReserve')!).size).toBeGreaterThan(1);
    expect(ledgerKeys(APP, OPENID).sends).toBe(`wx:cs-sends:${APP}:${OPENID}`);
    expect(slotsOf(calls.find((c) => c.script.startsWith('wxJobPlan'))!).size).toBeGreaterThan(1);
    expect(clusterKeyLayoutProblem({ kind: 'cluster' }, 'wx')).toMatch(/^QUEUE_PREFIX must carry a hash tag in Redis Cluster, e\.g\. QUEUE_PREFIX=\{wx\}/);
    expect(clusterKeyLayoutProblem({ kind: 'cluster' }, '{wx}')).toBeUndefined();
    expect(clusterKeyLayoutProblem({ kind: 'sentinel' }, 'wx')).toBeUndefined();
    expect(() => loadWorkerConfig({ WECHAT_APP_ID: APP, WECHAT_APP_SECRET: 's', REDIS_CLUSTER_NODES: 'r1:6379', QUEUE_PREFIX: 'wx' })).toThrow(/QUEUE_PREFIX must carry a hash tag in Redis Cluster/);
  });
});
