import type { FastifyReply, FastifyRequest } from 'fastify';
import { buildEncryptedReply, buildReplyXml, type AesKey, type InboundMessage, type PassiveReply } from '@wxrelay/shared/protocol';
import type { AnswerStore, CallbackMode, ClaimOp, ClaimResult } from '@wxrelay/shared/queue';
import type { GatewayMetrics } from './metrics.js';
import type { AnswerDesk, Waiter } from './plugins/answers.js';
import { WECHAT_ANSWER_BUDGET_MS } from './plugins/wechat-timeouts.js';

/** WeChat makes this many attempts of a push (t = 0, +5 s, +10 s; docs/wechat-protocol.md §3.3). */
export const WECHAT_ATTEMPTS = 3;
/** A lapsing attempt is dropped this long after it arrived if WeChat has not cut it (it cuts at 5 s). */
export const LAPSE_BOUND_MS = WECHAT_ANSWER_BUDGET_MS + 500;
/**
 * An attempt arriving this long after the message's CreateTime is taken for the last one even if
 * Redis counted fewer (an earlier attempt that never reached Redis, e.g. answered 503, was not
 * counted): a placeholder a little early beats WeChat's error page.
 */
export const LAST_ATTEMPT_AFTER_MS = 9_000;

/** What the route hands over once the message is queued. */
export interface HeldCallback {
  readonly jobId: string;
  readonly message: InboundMessage;
  readonly mode: CallbackMode;
  /** Redis held the message already: a retry of WeChat's (the answer may be older than this request). */
  readonly retry: boolean;
  readonly receivedAt: number;
  /** Registered before the enqueue (so a fast answer is not missed). */
  readonly waiter: Waiter;
  /** The answer store of the queue that holds the message (QUEUE_SHARDS: its shard's); default the desk's first. */
  readonly store?: AnswerStore;
}

export interface PassiveAnswerDeps {
  readonly desk: AnswerDesk;
  readonly metrics: GatewayMetrics;
  readonly token: string;
  readonly appId: string;
  /** The current EncodingAESKey (replies are encrypted when the callback was). */
  readonly aesKey: AesKey | undefined;
  readonly now: () => number;
}

const SUCCESS = 'success';

/**
 * Holds a queued callback for its answer (REPLY_MODE passive or auto) and answers it:
 *
 * - the answer, claimed for this attempt, as a passive reply (encrypted when the callback was);
 * - passive, not ready within `PASSIVE_HOLD_MS`: nothing — the attempt lapses, WeChat retries,
 *   and the retry (on any gateway) waits for the same answer; on the last attempt the answer goes
 *   to the user's inbox and the placeholder is said instead;
 * - auto, not ready within `AUTO_HOLD_MS`: `success`, and the customer-service API delivers it.
 *
 * The claim (one Redis round trip) is made only when an answer is published, when a retry arrives,
 * and when the wait ends with a decision to record (last attempt, auto's close).
 */
export async function answerHeld(deps: PassiveAnswerDeps, req: FastifyRequest, reply: FastifyReply, held: HeldCallback): Promise<void> {
  const { desk, metrics, now } = deps;
  const { config } = desk;
  const { jobId, message, waiter, receivedAt } = held;
  const openid = message.fromUserName;
  metrics.heldRequests.inc();
  const endHold = metrics.holdSeconds.startTimer();
  let result = 'error';
  const store = held.store ?? desk.store;
  const claim = (op: ClaimOp, attempt: number): Promise<ClaimResult> => store.claim(op, jobId, openid, attempt, now());
  const socket = req.raw.socket;
  const gone = (): boolean => socket.destroyed || reply.raw.writableEnded;
  try {
    let attempt = 1;
    let found: ClaimResult | undefined;
    if (held.retry) {
      found = await claim('take', 0);
      attempt = found.attempt;
      if (found.kind === 'pending') found = undefined;
    }
    const passive = config.mode === 'passive';
    const deadline = receivedAt + (passive ? config.passiveHoldMs : config.autoHoldMs);
    const last = passive && (attempt >= WECHAT_ATTEMPTS || now() - message.createTime * 1000 >= LAST_ATTEMPT_AFTER_MS);
    while (found === undefined && (await waiter.next(deadline))) {
      if (gone()) break;
      const r = await claim('take', attempt);
      if (r.kind !== 'pending') found = r;
    }
    if (found === undefined) {
      if (!passive) found = await claim('close', attempt);
      else if (last) found = await claim('last', attempt);
      else {
        result = 'lapsed';
        await lapse(req, reply, receivedAt, now);
        return;
      }
    }
    result = respond(deps, reply, held, found);
  } catch (err) {
    // Redis failed mid-hold: the message is queued; WeChat's retry claims the answer.
    req.log.warn({ err, jobId }, 'passive answer: Redis failed while holding; WeChat will retry');
    result = 'error';
    if (!reply.sent) void reply.code(503).type('text/plain; charset=utf-8').send('redis unavailable');
  } finally {
    waiter.done();
    metrics.heldRequests.dec();
    endHold({ result });
  }
}

/** Answers the callback as the claim says; the hold's result label. */
function respond(deps: PassiveAnswerDeps, reply: FastifyReply, held: HeldCallback, r: ClaimResult): string {
  const { metrics, desk } = deps;
  switch (r.kind) {
    case 'answer': {
      if (r.page === undefined) {
        ack(reply);
        return 'answer';
      }
      const channel = r.source === 'inbox' ? 'inbox' : `passive-${Math.min(r.attempt, WECHAT_ATTEMPTS)}`;
      if (r.source === 'placeholder') metrics.placeholders.inc();
      else metrics.answers.inc({ channel });
      const kind = r.source === 'placeholder' ? 'placeholder' : 'answer';
      sendPassive(deps, reply, held, JSON.parse(r.page) as PassiveReply, kind, r.attempt);
      return kind;
    }
    case 'inbox':
      metrics.placeholders.inc();
      sendPassive(deps, reply, held, { kind: 'text', content: desk.config.placeholder }, 'placeholder', r.attempt);
      return 'placeholder';
    case 'closed':
      ack(reply);
      return 'closed';
    case 'owned':
      // Delivered before: by the API, into the inbox, or in the answer to an earlier attempt that
      // WeChat did not take in time (the one case no server can know: README). At most once.
      if (/^\d$/.test(r.owner)) reply.log.warn({ jobId: held.jobId, attempt: r.attempt, claimedBy: Number(r.owner) }, 'passive answer went to an earlier attempt that WeChat retried: not sent again');
      ack(reply);
      return 'acked';
    case 'stale':
      // A later attempt of WeChat's holds the message: WeChat dropped this one.
      drop(reply);
      return 'lapsed';
    case 'pending':
      throw new Error('a pending claim is not an answer');
  }
}

function ack(reply: FastifyReply): void {
  void reply.type('text/plain; charset=utf-8').send(SUCCESS);
}

function drop(reply: FastifyReply): void {
  reply.hijack();
  reply.raw.destroy();
}

function sendPassive(deps: PassiveAnswerDeps, reply: FastifyReply, held: HeldCallback, page: PassiveReply, kind: 'answer' | 'placeholder', attempt: number): void {
  const { message } = held;
  const createTime = Math.floor(deps.now() / 1000);
  const xml = buildReplyXml(page, { toUserName: message.fromUserName, fromUserName: message.toUserName, createTime });
  const body =
    held.mode === 'plain' || deps.aesKey === undefined
      ? xml
      : buildEncryptedReply({ token: deps.token, key: deps.aesKey, appId: deps.appId, replyXml: xml, timestamp: String(createTime), nonce: nonce() });
  void reply.header('x-wxrelay-reply', kind).header('x-wxrelay-attempt', String(attempt)).type('application/xml; charset=utf-8').send(body);
}

function nonce(): string {
  return Math.floor(Math.random() * 1e10).toString(36);
}

/**
 * Lets an attempt lapse: no answer, so that WeChat, which cuts it at 5 s, retries. Bounded: a
 * connection still open {@link LAPSE_BOUND_MS} after the request arrived is dropped.
 */
async function lapse(req: FastifyRequest, reply: FastifyReply, receivedAt: number, now: () => number): Promise<void> {
  reply.hijack();
  const socket = req.raw.socket;
  const ms = receivedAt + LAPSE_BOUND_MS - now();
  if (ms > 0 && !socket.destroyed) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
  if (!socket.destroyed) socket.destroy();
}
