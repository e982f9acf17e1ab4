import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BULLMQ_VERSION, DEDUP_OPTION, assertBullmqForTurns, checkBullmqInternals, problemsFor, queueKeys, type BullmqCheck } from './bullmq.js';
import { toInboundJob } from './contract.js';
import { loadAddStandardJob } from './producer.js';
import { jobIdFor, dedupKey } from '../protocol/dedup.js';
import type { InboundMessage } from '../protocol/messages.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

describe('the startup check of BullMQ internals', () => {
  it('accepts the installed bullmq: known digests, our key layout, the dedup option name', () => {
    const check = checkBullmqInternals();
    expect(check.problems).toEqual([]);
    expect(check.version).toBe(BULLMQ_VERSION);
    expect(check.addStandardJob).toMatch(/^--\[\[\n {2}Adds a job to the queue/);
    expect(loadAddStandardJob()).toHaveProperty('lua', check.addStandardJob);
    // Derived from bullmq's optsEncodeMap, and what the jobs written so far carry.
    expect(DEDUP_OPTION).toBe('de');
    expect(queueKeys('wx', 'wx-inbound')).toMatchObject({ jobPrefix: 'wx:wx-inbound:', dedupPrefix: 'wx:wx-inbound:de:' });
  });

  it('every package.json that lists bullmq pins exactly the version the check was written for', () => {
    for (const dir of ['packages/shared', 'services/gateway', 'services/worker', 'bench']) {
      const pkg = JSON.parse(readFileSync(`${ROOT}${dir}/package.json`, 'utf8')) as Record<string, Record<string, string> | undefined>;
      expect(pkg.dependencies?.bullmq ?? pkg.devDependencies?.bullmq, dir).toBe(BULLMQ_VERSION);
    }
  });

  it('a worker refuses what the per-user order relies on and the check does not recognise; the producer only falls back', () => {
    const unknown: BullmqCheck = {
      version: '99.0.0',
      problems: [
        { what: 'moveToFinished of bullmq 99.0.0 has sha1 abc', reliants: ['turns'] },
        { what: 'addStandardJob of bullmq 99.0.0 has sha1 def', reliants: ['producer', 'turns'] },
      ],
    };
    expect(() => assertBullmqForTurns(unknown)).toThrow(/bullmq 99\.0\.0 .*refusing to start.*moveToFinished.*addStandardJob/);
    expect(problemsFor(unknown, 'producer').map((p) => p.what)).toEqual(['addStandardJob of bullmq 99.0.0 has sha1 def']);
    expect(() => assertBullmqForTurns({ version: '99.0.0', problems: [{ what: 'x', reliants: ['producer'] }] })).not.toThrow();
    expect(() => assertBullmqForTurns()).not.toThrow();
  });
});

describe('toInboundJob', () => {
  it('is the job id WeChat retries share and the v1 payload', () => {
    const message: InboundMessage = { kind: 'text', toUserName: 'gh_1', fromUserName: 'o1', createTime: 1_700_000_000, msgId: '6054768590064713728', content: 'hi' };
    expect(toInboundJob(message, 'safe', 42)).toEqual({
      jobId: jobIdFor(message),
      payload: { v: 1, dedupKey: dedupKey(message), mode: 'safe', receivedAt: 42, message },
    });
  });
});
