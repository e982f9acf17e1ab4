/**
 * The open-loop sender: WeChat pushing messages from many users at a fixed average rate, each push
 * delivered as WeChat does — 5 s budget per request, the identical request (same MsgId, signature
 * and timestamp) retried on a timeout, a non-200 status or a connection error, requests ~5 s apart,
 * 3 in all; `success` or an empty body is an ack.
 */
import { Agent, request } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { jobIdFor, parseInboundMessage } from '@wxrelay/shared';
import { buildCallbackRequest, buildInboundXml } from '@wxrelay/simulator';
import { nowMs } from '../stats.ts';
import { IDENTITY } from '../settings.ts';
import { tokenOf, type SendOutcome, type SentMessage } from './analyze.ts';

export const TRY_BUDGET_MS = 5000;
export const TRY_SPACING_MS = 5000;
export const MAX_TRIES = 3;

export interface SenderOptions {
  readonly gatewayUrl: string;
  /** Messages per second (average). */
  readonly rate: number;
  readonly users: number;
  readonly durationS: number;
  /** Poisson arrivals (exponential gaps) or a fixed interval. */
  readonly arrivals: 'poisson' | 'fixed';
}

interface Record_ {
  seq: number;
  user: string;
  msgId: string;
  jobId: string;
  firstSentAt: number;
  outcome: SendOutcome;
  ackedAt?: number;
  tries: number;
}

export interface Sender {
  readonly messages: readonly SentMessage[];
  /** Resolves once the last message has been pushed (its callbacks may still be in flight). */
  readonly sending: Promise<void>;
  /** Resolves once every message is acked or given up. */
  settled(): Promise<void>;
  /** Callbacks still in flight. */
  inFlight(): number;
}

export const openidOf = (user: number): string => `oSoak${String(user).padStart(23, '0')}`;

/**
 * One request within WeChat's budget: true when answered 200 with `success` or nothing. Plain
 * node:http over a bounded keep-alive pool (fetch would open a socket per request in flight, and a
 * stalled gateway would then face thousands of them); a wait for a free socket counts against the
 * budget, as WeChat's own queueing would.
 */
function tryOnce(agent: Agent, url: URL, body: string): Promise<boolean> {
  return new Promise((resolveTry) => {
    let done = false;
    const finish = (ok: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolveTry(ok);
    };
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': 'text/xml; charset=utf-8', 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        finish(res.statusCode === 200 && (text === '' || text === 'success'));
      });
      res.on('error', () => finish(false));
    });
    const timer = setTimeout(() => {
      req.destroy();
      finish(false);
    }, TRY_BUDGET_MS);
    req.on('error', () => finish(false));
    req.end(body);
  });
}

async function push(agent: Agent, url: URL, body: string, r: Record_): Promise<void> {
  for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
    const due = r.firstSentAt + attempt * TRY_SPACING_MS;
    const wait = due - nowMs();
    if (wait > 0) await delay(wait);
    r.tries = attempt + 1;
    if (await tryOnce(agent, url, body)) {
      r.outcome = 'acked';
      r.ackedAt = nowMs();
      return;
    }
  }
  r.outcome = 'gave-up';
}

export function startSender(opts: SenderOptions): Sender {
  const records: Record_[] = [];
  const flights = new Set<Promise<void>>();
  const perUser = new Map<number, number>();
  let msgId = 7_000_000_000_000_000_000n + BigInt(Math.floor(Math.random() * 1e15));
  const total = Math.round(opts.rate * opts.durationS);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });

  const sending = (async () => {
    const start = nowMs();
    let due = start;
    for (let seq = 1; seq <= total; seq++) {
      due += opts.arrivals === 'fixed' ? 1000 / opts.rate : (-Math.log(1 - Math.random()) * 1000) / opts.rate;
      const wait = due - nowMs();
      // Sleep in slices of ≥ 5 ms; messages that fell due meanwhile go out together.
      if (wait > 5) await delay(wait);
      else if (seq % 64 === 0) await new Promise<void>((r) => setImmediate(r)); // a late sender catching up still lets answers in
      const user = Math.floor(Math.random() * opts.users);
      const n = (perUser.get(user) ?? 0) + 1;
      perUser.set(user, n);
      msgId += 1n;
      const openid = openidOf(user);
      const xml = buildInboundXml(
        { type: 'text', content: `${tokenOf(seq)} u${user} n${n}` },
        { toUserName: IDENTITY.account, fromUserName: openid, createTime: Math.floor(Date.now() / 1000) },
        { msgId: msgId.toString(), nextId: () => '' },
      );
      const request = buildCallbackRequest({ gatewayUrl: opts.gatewayUrl, token: IDENTITY.token, appId: IDENTITY.appId, mode: 'plain', xml });
      const r: Record_ = { seq, user: openid, msgId: msgId.toString(), jobId: jobIdFor(parseInboundMessage(xml)), firstSentAt: nowMs(), outcome: 'pending', tries: 0 };
      records.push(r);
      const flight = push(agent, new URL(request.url), request.body, r);
      flights.add(flight);
      void flight.finally(() => flights.delete(flight));
    }
  })();

  return {
    messages: records,
    sending,
    async settled() {
      await sending;
      while (flights.size > 0) await Promise.all([...flights]);
      agent.destroy();
    },
    inFlight: () => flights.size,
  };
}
