import { describe, expect, it } from 'vitest';
import { analyze, inDoubtJobIds, tokensIn, type DeliveryRecord, type SentMessage } from '../bench/src/soak/analyze.ts';
import { faultSchedule, parseArgs } from '../bench/src/soak/options.ts';

/** How `pnpm soak` reads its records: tokens in packed/split answers, duplicates in doubt or not, order, loss. */
const U1 = 'oUser1';
const U2 = 'oUser2';

function msg(seq: number, user: string, firstSentAt: number, outcome: SentMessage['outcome'] = 'acked', ackedAt = firstSentAt + 10): SentMessage {
  return { seq, user, msgId: String(1000 + seq), jobId: `msg-gh_x-${1000 + seq}`, firstSentAt, outcome, tries: 1, ...(outcome === 'acked' ? { ackedAt } : {}) };
}
let nextI = 0;
function del(touser: string, text: string, at = 0): DeliveryRecord {
  return { i: nextI++, at, touser, text };
}
const echo = (...seqs: number[]) => seqs.map((s) => `2024-05-01 08:30:00\n你说：soak-${s} u1 n1`).join('\n\n');

describe('soak analysis', () => {
  it('finds every token of a text, never one inside a longer one', () => {
    expect(tokensIn('Echo: soak-12 u3 n1\n\nsoak-123 u3 n2 soak-1')).toEqual([
      { seq: 12, offset: 6 },
      { seq: 123, offset: 21 },
      { seq: 1, offset: 36 },
    ]);
    expect(tokensIn('抱歉，我暂时无法回答')).toEqual([]);
  });

  it('one send answering several messages (packed) answers each of them once', () => {
    const r = analyze([msg(1, U1, 0), msg(2, U1, 1), msg(3, U1, 2)], [del(U1, echo(1, 2)), del(U1, echo(3))], new Set());
    expect(r).toMatchObject({ sent: 3, acked: 3, answered: 3, lost: 0, duplicates: { total: 0, other: 0 }, orderViolations: 0, failures: [] });
  });

  it('an acked message without an answer is lost; a given-up one is not', () => {
    const r = analyze([msg(1, U1, 0), msg(2, U2, 0), msg(3, U2, 0, 'gave-up')], [del(U2, echo(2))], new Set());
    expect(r.lost).toBe(1);
    expect(r.lostSeqs).toEqual([1]);
    expect(r.givenUp).toBe(1);
    expect(r.answeredGivenUp).toBe(0);
    expect(r.failures).toHaveLength(1);
  });

  it('a token in two sends is a duplicate: in doubt when a "send in doubt" line names its job (in jobs or as jobId)', () => {
    const lines = [
      '{"level":40,"time":1,"msg":"replied"}',
      'not json at all, mentioning send in doubt',
      JSON.stringify({ level: 40, time: 2, jobId: 'msg-gh_x-1001', part: 0, jobs: ['msg-gh_x-1001', 'msg-gh_x-1002'], msg: 'send in doubt' }),
      JSON.stringify({ level: 40, time: 3, jobId: 'msg-gh_x-1004', msg: 'send in doubt' }),
    ];
    const doubt = inDoubtJobIds(lines);
    expect([...doubt].sort()).toEqual(['msg-gh_x-1001', 'msg-gh_x-1002', 'msg-gh_x-1004']);
    const messages = [msg(1, U1, 0), msg(2, U1, 1), msg(3, U2, 0), msg(4, U2, 50)];
    const deliveries = [del(U1, echo(1, 2)), del(U1, echo(1, 2)), del(U2, echo(3)), del(U2, echo(3)), del(U2, echo(3)), del(U2, echo(4)), del(U2, echo(4))];
    const r = analyze(messages, deliveries, doubt);
    expect(r.duplicates).toEqual({ total: 4, inDoubt: 3, other: 1, extraDeliveries: 5, otherSeqs: [3] });
    expect(r.lost).toBe(0);
    expect(r.failures).toEqual([expect.stringContaining('1 message(s) answered more than once')]);
  });

  it('a long answer split over two sends is one answer (its token in the first part only)', () => {
    const r = analyze([msg(1, U1, 0)], [del(U1, `Echo: soak-1 ${'x'.repeat(100)}`), del(U1, 'y'.repeat(50))], new Set());
    expect(r).toMatchObject({ answered: 1, duplicates: { total: 0 }, deliveriesWithoutToken: 1, failures: [] });
  });

  it('order: only a message acked before the other was first sent must be answered first', () => {
    // 1 acked at 10, 2 first sent at 20: 2 answered first is a violation.
    // 3 and 4 overlap (4 sent at 105, before 3 was acked at 110): any order is fine.
    const messages = [msg(1, U1, 0, 'acked', 10), msg(2, U1, 20, 'acked', 30), msg(3, U2, 100, 'acked', 110), msg(4, U2, 105, 'acked', 115)];
    const r = analyze(messages, [del(U1, echo(2)), del(U1, echo(1)), del(U2, echo(4, 3))], new Set());
    expect(r.orderViolations).toBe(1);
    expect(r.orderViolationSamples).toEqual([{ user: U1, earlier: 1, later: 2 }]);
    // Within one packed send, the position of the tokens is the order.
    const packed = analyze([msg(1, U1, 0, 'acked', 10), msg(2, U1, 20, 'acked', 30)], [del(U1, echo(2, 1))], new Set());
    expect(packed.orderViolations).toBe(1);
    const inOrder = analyze([msg(1, U1, 0, 'acked', 10), msg(2, U1, 20, 'acked', 30)], [del(U1, echo(1, 2))], new Set());
    expect(inOrder.orderViolations).toBe(0);
    // A given-up message takes no part in order.
    const gaveUp = analyze([msg(1, U1, 0, 'gave-up'), msg(2, U1, 20, 'acked', 30)], [del(U1, echo(2)), del(U1, echo(1))], new Set());
    expect(gaveUp.orderViolations).toBe(0);
  });

  it('an answer to the wrong user is a failure and not an answer', () => {
    const r = analyze([msg(1, U1, 0)], [del(U2, echo(1))], new Set());
    expect(r).toMatchObject({ misdelivered: 1, lost: 1 });
  });

  it('latencies: ack from the first request, end to end to the first delivery', () => {
    const r = analyze([msg(1, U1, 1000, 'acked', 1020), msg(2, U2, 1000, 'acked', 6000)], [del(U1, echo(1), 1100), del(U2, echo(2), 6100), del(U2, echo(2), 9000)], new Set());
    expect(r.ackLatencyMs).toMatchObject({ count: 2, p50: 20, max: 5000 });
    expect(r.endToEndMs).toMatchObject({ count: 2, p50: 100, max: 5100 });
  });
});

describe('soak settings', () => {
  it('the short profile fits the test suite; flags override it', () => {
    expect(parseArgs(['--short'])).toMatchObject({ profile: 'short', durationS: 45, rate: 50, workers: 3 });
    expect(parseArgs(['--', '--duration', '300', '--rate=120', '--json'])).toMatchObject({ profile: 'long', durationS: 300, rate: 120, json: true });
    expect(() => parseArgs(['--rate', 'fast'])).toThrow(/--rate/);
  });

  it('spreads every kind of process fault over the run, each repeated on a long one', () => {
    const short = faultSchedule(45, 5);
    expect(short.map((f) => f.kind)).toEqual(['worker-kill', 'redis-kill', 'gateway-term', 'worker-term', 'gateway-kill']);
    expect(short[0]!.atS).toBe(4.5);
    expect(short[4]!.atS).toBe(36);
    const long = faultSchedule(300, 12);
    expect(long.filter((f) => f.kind === 'redis-kill').length).toBeGreaterThanOrEqual(2);
    expect(Math.max(...long.map((f) => f.atS))).toBeLessThanOrEqual(240);
  });
});
