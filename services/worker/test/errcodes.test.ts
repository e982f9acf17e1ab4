import { describe, expect, it } from 'vitest';
import { reactionFor, type Reaction } from '../src/wechat/errcodes.js';

/** The reactions of docs/wechat-protocol.md §10, as data. */
const table: { errcode: number | 'network' | 'http-5xx'; kind: Reaction['kind'] }[] = [
  { errcode: -1, kind: 'retry' },
  { errcode: 'network', kind: 'retry' },
  { errcode: 'http-5xx', kind: 'retry' },
  { errcode: 40001, kind: 'refresh-token' },
  { errcode: 40014, kind: 'refresh-token' },
  { errcode: 42001, kind: 'refresh-token' },
  { errcode: 45009, kind: 'rate-limit' },
  { errcode: 45011, kind: 'rate-limit' },
  { errcode: 45015, kind: 'give-up' },
  { errcode: 45047, kind: 'give-up' },
  { errcode: 48001, kind: 'give-up' },
  { errcode: 43004, kind: 'give-up' },
  { errcode: 40003, kind: 'give-up' },
  { errcode: 40164, kind: 'give-up' },
  { errcode: 45081, kind: 'ignore' },
  { errcode: 99999, kind: 'give-up' },
];

describe('reactionFor', () => {
  it.each(table)('$errcode → $kind', ({ errcode, kind }) => {
    expect(reactionFor(errcode).kind).toBe(kind);
  });

  it('retries -1 at most twice (each retry risks a duplicate, docs/wechat-protocol.md §9.4)', () => {
    expect(reactionFor(-1)).toEqual({ kind: 'retry', retries: 2 });
  });

  it('backs off at least a minute on the per-minute limit', () => {
    const r = reactionFor(45011);
    expect(r.kind === 'rate-limit' && r.pauseMs >= 60_000).toBe(true);
  });
});
