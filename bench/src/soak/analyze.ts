/**
 * What a soak run proves, from three records: the messages the sender pushed (and how WeChat's
 * side ended with each), every customer-service send the fake WeChat API accepted, and the
 * workers' `send in doubt` log lines. Pure (no I/O), so it is unit-tested on sample data.
 *
 * Matching: every message carries a unique token (`soak-<seq>`) in its text and the worker's answer
 * echoes it. A send may answer several messages (answers packed into one text) and a long answer
 * may be split over several sends, so each delivered text is scanned for every token in it; one
 * send is never assumed to be one message.
 */
import { percentileSorted } from '../stats.ts';

/** How WeChat's side of one message ended. */
export type SendOutcome = 'acked' | 'gave-up' | 'pending';

export interface SentMessage {
  /** Global sequence number; the token in the text is `soak-<seq>`. */
  readonly seq: number;
  /** The openid it came from. */
  readonly user: string;
  readonly msgId: string;
  /** Its queue job id (the gateway's `jobIdFor`: `msg-<account>-<MsgId>`), as `send in doubt` names it. */
  readonly jobId: string;
  /** First request sent (ms). */
  readonly firstSentAt: number;
  readonly outcome: SendOutcome;
  /** When the `success` (or empty) answer arrived (ms), acked only. */
  readonly ackedAt?: number;
  /** Requests made (1–3). */
  readonly tries: number;
}

/** One accepted customer-service send. */
export interface DeliveryRecord {
  /** Order of acceptance by the fake API. */
  readonly i: number;
  readonly at: number;
  readonly touser: string;
  readonly text: string;
}

export const tokenOf = (seq: number): string => `soak-${seq}`;

/** Every `soak-<seq>` in a text, with where it starts (a token is never a prefix of another). */
export function tokensIn(text: string): { seq: number; offset: number }[] {
  const found: { seq: number; offset: number }[] = [];
  for (const m of text.matchAll(/soak-(\d+)(?!\d)/g)) found.push({ seq: Number(m[1]), offset: m.index });
  return found;
}

/**
 * Job ids named by the workers' `send in doubt` warnings (pino NDJSON: `"msg":"send in doubt"`,
 * `jobId`, and `jobs`: the jobs whose answers the re-sent part may carry). Other lines, and lines
 * that are not JSON, are ignored.
 */
export function inDoubtJobIds(lines: Iterable<string>): Set<string> {
  const ids = new Set<string>();
  for (const line of lines) {
    if (!line.includes('send in doubt')) continue;
    let entry: unknown;
    try {
      entry = JSON.parse(line);
    } catch {
      continue;
    }
    if (typeof entry !== 'object' || entry === null) continue;
    const e = entry as { msg?: unknown; jobId?: unknown; jobs?: unknown };
    if (e.msg !== 'send in doubt') continue;
    if (typeof e.jobId === 'string') ids.add(e.jobId);
    if (Array.isArray(e.jobs)) for (const j of e.jobs) if (typeof j === 'string') ids.add(j);
  }
  return ids;
}

export interface Latency {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

function latency(values: number[]): Latency {
  const sorted = Float64Array.from(values).sort();
  return {
    count: sorted.length,
    p50: percentileSorted(sorted, 50),
    p99: percentileSorted(sorted, 99),
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!,
  };
}

export interface SoakReport {
  readonly sent: number;
  readonly acked: number;
  /** WeChat gave up after 3 requests (the user saw an error; not a loss of ours). */
  readonly givenUp: number;
  /** Neither acked nor given up when the sender stopped (should be 0). */
  readonly pending: number;
  /** Acked on the 1st / 2nd / 3rd request. */
  readonly ackedOnTry: readonly number[];
  /** Acked messages with at least one delivery. */
  readonly answered: number;
  /** Given-up messages that were answered anyway (the gateway had queued them; fine). */
  readonly answeredGivenUp: number;
  /** Acked but never answered. */
  readonly lost: number;
  readonly lostSeqs: readonly number[];
  /** Messages whose answer was delivered more than once, in doubt or not. */
  readonly duplicates: { readonly total: number; readonly inDoubt: number; readonly other: number; readonly extraDeliveries: number; readonly otherSeqs: readonly number[] };
  /** Acked messages answered ahead of a message of the same user acked before they were first sent. */
  readonly orderViolations: number;
  readonly orderViolationSamples: readonly { readonly user: string; readonly earlier: number; readonly later: number }[];
  /** A token delivered to a user who did not send it. */
  readonly misdelivered: number;
  readonly deliveries: number;
  /** Sends with no token of ours (an apology, a welcome…). */
  readonly deliveriesWithoutToken: number;
  /** Jobs named by `send in doubt` lines. */
  readonly inDoubtJobs: number;
  /** First request → `success`, acked messages (ms). */
  readonly ackLatencyMs: Latency;
  /** First request → first delivery at the fake API, acked and answered messages (ms). */
  readonly endToEndMs: Latency;
  /** Why the run failed (empty: passed): any loss, duplicate not in doubt, or misdelivery. */
  readonly failures: readonly string[];
}

const SAMPLE = 20;

export function analyze(messages: readonly SentMessage[], deliveries: readonly DeliveryRecord[], inDoubt: ReadonlySet<string>): SoakReport {
  const bySeq = new Map<number, SentMessage>();
  for (const m of messages) bySeq.set(m.seq, m);
  /** Per token: the deliveries carrying it, with the token's position (for order within one send). */
  const seen = new Map<number, { i: number; offset: number; at: number }[]>();
  let withoutToken = 0;
  let misdelivered = 0;
  for (const d of [...deliveries].sort((a, b) => a.i - b.i)) {
    const tokens = tokensIn(d.text);
    if (tokens.length === 0) withoutToken += 1;
    const inThisSend = new Set<number>();
    for (const t of tokens) {
      if (inThisSend.has(t.seq)) continue; // the same token twice in one text is one answer
      inThisSend.add(t.seq);
      const m = bySeq.get(t.seq);
      if (m !== undefined && m.user !== d.touser) {
        misdelivered += 1;
        continue;
      }
      const list = seen.get(t.seq) ?? [];
      list.push({ i: d.i, offset: t.offset, at: d.at });
      seen.set(t.seq, list);
    }
  }

  const acked = messages.filter((m) => m.outcome === 'acked');
  const lostSeqs = acked.filter((m) => !seen.has(m.seq)).map((m) => m.seq);
  const ackedOnTry = [1, 2, 3].map((n) => acked.filter((m) => m.tries === n).length);

  let dupTotal = 0;
  let dupInDoubt = 0;
  let extraDeliveries = 0;
  const otherSeqs: number[] = [];
  for (const [seq, list] of seen) {
    if (list.length < 2) continue;
    const m = bySeq.get(seq);
    dupTotal += 1;
    extraDeliveries += list.length - 1;
    if (m !== undefined && inDoubt.has(m.jobId)) dupInDoubt += 1;
    else otherSeqs.push(seq);
  }

  // Order: among acked, answered messages of one user, A must be answered before B whenever A was
  // acked before B was first sent (then A was surely queued first; overlapping ones have no order).
  const byUser = new Map<string, { m: SentMessage; pos: { i: number; offset: number } }[]>();
  for (const m of acked) {
    const first = seen.get(m.seq)?.[0];
    if (first === undefined) continue;
    const list = byUser.get(m.user) ?? [];
    list.push({ m, pos: first });
    byUser.set(m.user, list);
  }
  const before = (a: { i: number; offset: number }, b: { i: number; offset: number }) => a.i < b.i || (a.i === b.i && a.offset < b.offset);
  let orderViolations = 0;
  const orderViolationSamples: { user: string; earlier: number; later: number }[] = [];
  for (const [user, list] of byUser) {
    for (const b of list) {
      const overtaken = list.find((a) => a !== b && a.m.ackedAt! < b.m.firstSentAt && before(b.pos, a.pos));
      if (overtaken === undefined) continue;
      orderViolations += 1;
      if (orderViolationSamples.length < SAMPLE) orderViolationSamples.push({ user, earlier: overtaken.m.seq, later: b.m.seq });
    }
  }

  const ackLatencies = acked.map((m) => m.ackedAt! - m.firstSentAt);
  const e2e = acked.flatMap((m) => {
    const first = seen.get(m.seq)?.[0];
    return first === undefined ? [] : [first.at - m.firstSentAt];
  });

  const failures: string[] = [];
  if (lostSeqs.length > 0) failures.push(`${lostSeqs.length} acked message(s) never answered (lost)`);
  if (otherSeqs.length > 0) failures.push(`${otherSeqs.length} message(s) answered more than once without a "send in doubt" for them`);
  if (misdelivered > 0) failures.push(`${misdelivered} answer(s) delivered to a user who did not send the message`);

  return {
    sent: messages.length,
    acked: acked.length,
    givenUp: messages.filter((m) => m.outcome === 'gave-up').length,
    pending: messages.filter((m) => m.outcome === 'pending').length,
    ackedOnTry,
    answered: acked.length - lostSeqs.length,
    answeredGivenUp: messages.filter((m) => m.outcome === 'gave-up' && seen.has(m.seq)).length,
    lost: lostSeqs.length,
    lostSeqs: lostSeqs.slice(0, SAMPLE),
    duplicates: { total: dupTotal, inDoubt: dupInDoubt, other: otherSeqs.length, extraDeliveries, otherSeqs: otherSeqs.slice(0, SAMPLE) },
    orderViolations,
    orderViolationSamples,
    misdelivered,
    deliveries: deliveries.length,
    deliveriesWithoutToken: withoutToken,
    inDoubtJobs: inDoubt.size,
    ackLatencyMs: latency(ackLatencies),
    endToEndMs: latency(e2e),
    failures,
  };
}

const ms = (v: number): string => (Number.isFinite(v) ? (v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${v.toFixed(0)} ms`) : '–');

/** The report as an aligned two-column table (plain text). */
export function formatReport(r: SoakReport): string {
  const rows: [string, string][] = [
    ['sent', String(r.sent)],
    ['acked', `${r.acked}  (1st try ${r.ackedOnTry[0]}, 2nd ${r.ackedOnTry[1]}, 3rd ${r.ackedOnTry[2]})`],
    ['given up by WeChat', `${r.givenUp}  (answered anyway: ${r.answeredGivenUp})`],
    ['pending at the end', String(r.pending)],
    ['acked and answered', String(r.answered)],
    ['LOST (acked, never answered)', `${r.lost}${r.lostSeqs.length > 0 ? `  e.g. ${r.lostSeqs.slice(0, 5).map(tokenOf).join(', ')}` : ''}`],
    ['duplicates', `${r.duplicates.total}  (in doubt ${r.duplicates.inDoubt}, OTHER ${r.duplicates.other}; extra sends ${r.duplicates.extraDeliveries})`],
    ['order violations', `${r.orderViolations}${r.orderViolationSamples.length > 0 ? `  e.g. ${r.orderViolationSamples.slice(0, 3).map((v) => `${tokenOf(v.later)} before ${tokenOf(v.earlier)}`).join(', ')}` : ''}`],
    ['misdelivered', String(r.misdelivered)],
    ['sends accepted (without a token)', `${r.deliveries}  (${r.deliveriesWithoutToken})`],
    ['jobs named "send in doubt"', String(r.inDoubtJobs)],
    ['ack latency p50 / p99 / max', `${ms(r.ackLatencyMs.p50)} / ${ms(r.ackLatencyMs.p99)} / ${ms(r.ackLatencyMs.max)}`],
    ['end-to-end p50 / p99 / max', `${ms(r.endToEndMs.p50)} / ${ms(r.endToEndMs.p99)} / ${ms(r.endToEndMs.max)}`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`);
  lines.push('', r.failures.length === 0 ? '  PASS: no loss, no duplicate that was not in doubt' : `  FAIL: ${r.failures.join('; ')}`);
  return lines.join('\n');
}
