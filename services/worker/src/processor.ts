import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import { isInboundJobPayload, type InboundJobPayload, type JobName, type Logger } from '@wxrelay/shared';
import { customMessage, type Reply } from './cs-messages.js';
import { WechatApiError } from './errcodes.js';
import { LlmError } from './llm.js';
import type { JobOutcome, WorkerMetrics } from './metrics.js';
import { triggerTime, windowTrigger, type QuotaLedger } from './quota-ledger.js';
import { cutParts, expandReplies, packAnswers } from './reply-plan.js';
import type { Router } from './router.js';
import { startTyping, type TypingIndicator } from './typing.js';
import type { Follower, UserTurns } from './user-turns.js';
import type { WechatApi } from './wechat-api.js';

/**
 * What a job has done so far, saved on the job (`job.updateData`), so a retried or
 * stalled-and-restarted job never calls a slow handler (the LLM) again once it has an answer,
 * never reserves quota twice, and never re-sends a part WeChat accepted. Writes, per job: the jobs
 * it answers together with its own (when it has any) before it marks them; a slow handler's answer
 * as soon as it has it; the planned parts (with a fast handler's answer) before the first send;
 * `sent` after every part but the last — once the last part is accepted nothing is left that a
 * retry could repeat (the turn's release cannot fail the job any more), and the job's completion
 * records the rest.
 *
 * Every write that leaves `sent < parts.length` is made just before part `sent` is sent, so it also
 * says "part `sent` is starting" at no extra cost: an attempt that finds it, written by an earlier
 * attempt, with no outcome recorded (`notSent`), knows that send may have reached WeChat (the
 * worker died mid-send, or the call got no answer): the part is *in doubt* (see `inDoubtSends`).
 */
export interface ReplyProgress {
  /** The handler's answer. */
  readonly replies?: readonly Reply[];
  /** The jobs of the same user answered with this one, after it, in order; fixed once saved. */
  readonly absorbed?: readonly AbsorbedMessage[];
  /** The messages to send, after packing, chunking and the quota; fixed once reserved. */
  readonly parts?: readonly Reply[];
  /** Per part, the answers it carries (0 = this job's, i = `absorbed[i - 1]`'s); only when absorbing. */
  readonly carriers?: readonly (readonly number[])[];
  readonly cut?: boolean;
  /** `parts[0..sent)` were accepted by WeChat. */
  readonly sent: number;
  /** Failed tries of part `sent` so far, per errcode class: its retry budget (errcode table). */
  readonly retries?: Readonly<Record<string, number>>;
  /** WeChat answered the last try of part `sent` with an errcode: it was not sent (not in doubt). */
  readonly notSent?: boolean;
}

/** A later message of the user answered by the job that held the turn. */
export interface AbsorbedMessage {
  readonly jobId: string;
  readonly payload: InboundJobPayload;
  /** Its handler's answer, once it has one (a slow one is saved at once). */
  readonly replies?: readonly Reply[];
}

/** The payload plus the worker's own bookkeeping (payloads allow extra fields). */
export type InboundJobData = InboundJobPayload & { progress?: ReplyProgress };

export interface JobResult {
  readonly outcome: 'replied' | 'no-reply' | 'answered-together';
  readonly route?: string;
  readonly parts?: number;
  readonly cut?: boolean;
  /** The jobs whose messages this job answered too. */
  readonly answeredWith?: readonly string[];
  /** 'answered-together': the job that answered this one's message. */
  readonly answeredBy?: string;
}

/** What a new attempt does with a part in doubt: send it again (at least once) or not (at most once). */
export type InDoubtSends = 'resend' | 'skip';

/** At most this many messages are answered together (the head and up to 9 behind it). */
export const MAX_ANSWERED_TOGETHER = 10;

export interface ProcessorDeps {
  readonly api: WechatApi;
  readonly router: Router;
  readonly ledger: QuotaLedger;
  readonly turns: UserTurns;
  readonly log: Logger;
  readonly metrics?: WorkerMetrics;
  /** Stops the whole worker (all processes) for `ms`: `worker.rateLimit`. */
  readonly rateLimit: (ms: number) => Promise<void>;
  /** Wakes a job waiting for its turn (best effort; it would retry on its own anyway). */
  readonly promote?: (jobId: string) => Promise<void>;
  readonly chunkBytes?: number;
  readonly cutNotice?: string;
  readonly typingIntervalMs?: number;
  /** How long a job waiting for its user's turn sleeps before it checks again (default 250 ms, doubling to 2 s). */
  readonly turnRetryDelayMs?: number;
  /** Default 'resend'. */
  readonly inDoubtSends?: InDoubtSends;
  readonly now?: () => number;
}

export type InboundJob = Job<InboundJobData, JobResult, JobName>;
type JobHandler = (job: InboundJob, token: string | undefined, signal: AbortSignal) => Promise<JobResult>;

/**
 * The one BullMQ processor: a typed handler per job name (a job name in the queue contract
 * without a handler here fails to compile).
 */
export function createProcessor(deps: ProcessorDeps): (job: InboundJob, token?: string, signal?: AbortSignal) => Promise<JobResult> {
  const handlers: { readonly [K in JobName]: JobHandler } = {
    inbound: (job, token, signal) => processInbound(deps, job, token, signal),
  };
  return async (job, token, signal) => {
    const handler = (handlers as Partial<Record<string, JobHandler>>)[job.name];
    if (handler === undefined) throw new UnrecoverableError(`no handler for job name "${job.name}"`);
    return handler(job, token, signal ?? new AbortController().signal);
  };
}

/**
 * The followers the turn holder answers with its own message: in order, each a valid payload of
 * the same user with a reply to give; one that never had the turn (no progress). A follower that
 * needs no reply is left out (it releases its turn by itself); the first that cannot be absorbed
 * ends the run, so no message is answered before an earlier one.
 */
function chooseAbsorbed(deps: ProcessorDeps, openid: string, followers: readonly Follower[]): AbsorbedMessage[] {
  const chosen: AbsorbedMessage[] = [];
  for (const f of followers) {
    if (chosen.length >= MAX_ANSWERED_TOGETHER - 1) break;
    if (!isInboundJobPayload(f.data)) break;
    const { progress, ...payload } = f.data as InboundJobData;
    if (progress !== undefined || payload.message.fromUserName !== openid) break;
    if (deps.router.route(payload.message) === undefined) continue;
    chosen.push({ jobId: f.jobId, payload });
  }
  return chosen;
}

async function processInbound(deps: ProcessorDeps, job: InboundJob, token: string | undefined, signal: AbortSignal): Promise<JobResult> {
  const now = deps.now ?? Date.now;
  const count = (outcome: JobOutcome) => deps.metrics?.job(outcome);
  const data = job.data;
  if (!isInboundJobPayload(data)) {
    count('gave-up');
    throw new UnrecoverableError('not a v1 inbound payload');
  }
  const message = data.message;
  const openid = message.fromUserName;
  const jobId = job.id ?? data.dedupKey;
  // No openid in the logs: the job id leads to it for whoever may look. The bindings go into each
  // call rather than a per-job `log.child`, whose setup re-runs the logger's redaction per job.
  const log = deps.log;
  const kind = message.kind;
  if (job.attemptsStarted <= 1 && data.progress === undefined) deps.metrics?.queueWait(now() - data.receivedAt);

  const trigger = windowTrigger(message);
  if (trigger !== undefined) await deps.ledger.grant(openid, trigger, triggerTime(data), data.dedupKey);

  const releaseTurn = async () => {
    const next = await deps.turns.release(openid, jobId);
    if (next !== undefined && deps.promote !== undefined) await deps.promote(next).catch(() => undefined);
  };

  const route = deps.router.route(message);
  if (route === undefined) {
    if (message.kind === 'unknown') log.warn({ jobId, kind, msgType: message.msgType }, 'unknown message type: acknowledged without a reply');
    else log.debug({ jobId, kind }, 'no reply for this message');
    // Every job of the user is registered in its turn list when enqueued: this one needs no turn.
    await releaseTurn();
    count('no-reply');
    return { outcome: 'no-reply' };
  }

  let progress: ReplyProgress = data.progress ?? { sent: 0 };
  // Who waits behind is asked only while the answer is not planned and no set was chosen yet.
  const choosing = progress.parts === undefined && progress.absorbed === undefined;
  const turn = await deps.turns.enter(openid, jobId, job.timestamp, choosing ? MAX_ANSWERED_TOGETHER - 1 : 0);
  if (turn.kind === 'wait') {
    const base = deps.turnRetryDelayMs ?? 250;
    const delay = Math.min(base * 8, base * 2 ** Math.min(job.attemptsStarted, 3)) + Math.floor(Math.random() * base);
    await job.moveToDelayed(now() + delay, token);
    count('waiting-turn');
    throw new DelayedError();
  }
  if (turn.kind === 'answered') {
    // An earlier job of the user answered this message with its own and has released the turn.
    await releaseTurn();
    count('answered-together');
    log.debug({ jobId, kind, by: turn.by }, 'answered together with an earlier message');
    return { outcome: 'answered-together', answeredBy: turn.by };
  }

  const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
  const inDoubtSends = deps.inDoubtSends ?? 'resend';
  let typing: TypingIndicator | undefined;
  const save = async (next: ReplyProgress) => {
    progress = next;
    await job.updateData({ ...data, progress });
  };
  /** The part being sent when the attempt failed, if it failed in a send. */
  let inFlight: number | undefined;

  /*
   * Answering a backlog together. WeChat counts every customer-service message sent after the
   * user's latest message against that message's window (5 in 48 h), so when a user wrote several
   * times while a backlog built up, answering each message on its own charged the replies to the
   * early ones to the window of the latest one, and the sixth reply was refused (no quota left). So
   * the job holding the turn answers the messages waiting behind it too, in one go: their answers
   * are packed into as few messages as fit, the quota is reserved once for all of them, and each
   * of those jobs completes without sending once it gets its turn (its marker).
   */
  if (choosing && turn.followers.length > 0) {
    const chosen = chooseAbsorbed(deps, openid, turn.followers);
    // Saved before the markers: a retry knows whom this job marked (and marks them again).
    if (chosen.length > 0) await save({ ...progress, absorbed: chosen });
  }
  const absorbed = progress.absorbed ?? [];
  const jobsOf = (part: number): string[] => (progress.carriers?.[part] ?? [0]).map((i) => (i === 0 ? jobId : (absorbed[i - 1]?.jobId ?? '?')));

  try {
    if (absorbed.length > 0) await deps.turns.markAnswered(jobId, absorbed.map((a) => a.jobId));

    if (progress.parts === undefined) {
      // Each message's handler in order (the LLM memory stays in the user's order).
      const pending = [route, ...absorbed.map((a) => deps.router.route(a.payload.message))];
      const answered = (i: number) => (i === 0 ? progress.replies : progress.absorbed?.[i - 1]?.replies) !== undefined;
      if (pending.some((r, i) => r?.slow === true && !answered(i))) typing = startTyping(deps.api, openid, deps.typingIntervalMs);
      for (const [i, r] of pending.entries()) {
        if (answered(i)) continue;
        const own = i === 0;
        const entry = own ? undefined : absorbed[i - 1];
        const payload = entry?.payload ?? data;
        const handlerJobId = entry?.jobId ?? jobId;
        let replies: readonly Reply[] = [];
        if (r !== undefined) {
          const started = now();
          let handlerLog: Logger | undefined;
          try {
            replies = await r.handler({
              message: payload.message,
              messageKey: payload.dedupKey,
              // Made only for a handler that logs (the LLM route, on its last attempt).
              get log() {
                return (handlerLog ??= log.child({ jobId: handlerJobId, kind: payload.message.kind }));
              },
              signal,
              lastAttempt,
            });
          } catch (err) {
            if (own) throw err;
            // A later message's handler failed: that message and the ones after it answer
            // themselves (their own jobs retry as they would have). Markers first: a crash
            // between the two leaves a saved set that the retry marks again.
            const dropped = absorbed.slice(i - 1).map((a) => a.jobId);
            log.warn({ jobId, kind, err, dropped }, 'a message answered together failed in its handler; it and the later ones answer themselves');
            await deps.turns.clearAnswered(jobId, dropped);
            await save({ ...progress, absorbed: absorbed.slice(0, i - 1) });
            break;
          }
          deps.metrics?.handlerLatency(r.name, now() - started);
        }
        const next: ReplyProgress = own
          ? { ...progress, replies }
          : { ...progress, absorbed: (progress.absorbed ?? []).map((a, k) => (k === i - 1 ? { ...a, replies } : a)) };
        // A slow answer is saved at once; a fast handler's is cheap to redo and is saved with the parts.
        if (r?.slow === true) await save(next);
        else progress = next;
      }
    }
    const together = progress.absorbed ?? [];
    if (progress.parts === undefined) {
      // The absorbed messages' triggers are later than this one's: the ledger now counts against
      // the latest window, as WeChat does, and the reservation below covers every answer.
      for (const a of together) {
        const t = windowTrigger(a.payload.message);
        if (t !== undefined) await deps.ledger.grant(openid, t, triggerTime(a.payload), a.payload.dedupKey);
      }
      const answers = [progress.replies ?? [], ...together.map((a) => a.replies ?? [])];
      const opts = { maxBytes: deps.chunkBytes, cutNotice: deps.cutNotice };
      const packed = together.length === 0 ? { parts: expandReplies(answers[0] ?? [], opts), carriers: undefined } : packAnswers(answers, opts);
      const wanted = packed.parts.length;
      const allowed = wanted === 0 ? 0 : await deps.ledger.reserve(openid, wanted, jobId, now());
      if (wanted > 0 && allowed === 0) {
        throw new UnrecoverableError('no customer-service quota left for this user (window closed or used up, per the ledger)');
      }
      const { parts, cut } = cutParts(packed.parts, allowed, opts);
      if (cut) log.info({ jobId, kind, wanted, allowed }, 'answer cut to fit the customer-service quota');
      const carriers = packed.carriers?.slice(0, parts.length);
      const planned = { ...progress, parts, cut, ...(carriers === undefined ? {} : { carriers }) };
      // Nothing to send: nothing a retry could repeat, no write needed. Otherwise this write also
      // says "part 0 is starting".
      if (parts.length === 0) progress = planned;
      else await save(planned);
    } else if (progress.sent < progress.parts.length) {
      // Planned by an earlier attempt: how did its last send end?
      const part = progress.sent;
      if (progress.notSent === true) {
        // WeChat refused it (its answer is recorded): a plain retry. Say "part starting" again.
        await save({ ...progress, notSent: undefined });
      } else {
        // No outcome recorded: the earlier attempt died mid-send, or the call got no answer. WeChat
        // has no idempotency key: either send again (maybe a duplicate) or skip (maybe never seen).
        const action = inDoubtSends === 'skip' ? 'skipped' : 'resent';
        deps.metrics?.inDoubtSend(action);
        log.warn({ jobId, part, jobs: jobsOf(part) }, 'send in doubt');
        if (action === 'skipped') {
          const next = { ...progress, sent: part + 1, retries: undefined };
          // The skip is recorded with "next part starting" (no write when it was the last part).
          if (part + 1 < progress.parts.length) await save(next);
          else progress = next;
        }
      }
    }
    const parts = progress.parts ?? [];
    for (let i = progress.sent; i < parts.length; i++) {
      const part = parts[i];
      if (part === undefined) break;
      inFlight = i;
      await deps.api.sendCustomMessage(customMessage(openid, part));
      inFlight = undefined;
      const next = { ...progress, sent: i + 1, retries: undefined };
      // "Part i done" is also "part i + 1 starting".
      if (i + 1 < parts.length) await save(next);
      else progress = next;
    }
    typing?.stop({ cancel: false });
    // Everything was sent: a failure from here on must not make BullMQ retry (and re-send the last
    // part). A turn left behind is dropped by the next take once this job is finished.
    await releaseTurn().catch((err: unknown) => log.warn({ jobId, kind, err }, 'turn not released; the next job of the user takes it once this one is finished'));
    const answeredWith = (progress.absorbed ?? []).map((a) => a.jobId);
    count(parts.length === 0 ? 'no-reply' : 'replied');
    log.info({ jobId, kind, route: route.name, parts: parts.length, cut: progress.cut === true, ...(answeredWith.length > 0 ? { answeredWith } : {}) }, 'replied');
    return {
      outcome: parts.length === 0 ? 'no-reply' : 'replied',
      route: route.name,
      parts: parts.length,
      cut: progress.cut === true,
      ...(answeredWith.length > 0 ? { answeredWith } : {}),
    };
  } catch (err) {
    typing?.stop({ cancel: true });
    let failure = await classify(deps, err, openid);
    let maybeSent = false;
    if (inFlight !== undefined && err instanceof WechatApiError) {
      // One retry policy, one count: the API client makes one call; the job's attempts (with
      // their backoff) are the retries, counted here per part and errcode class, in the saved
      // progress, so neither a crash nor a new attempt resets the count.
      const answered = typeof err.errcode === 'number';
      maybeSent = !answered;
      const reaction = err.reaction;
      const retries = { ...progress.retries };
      if (reaction.kind === 'retry') {
        const failed = (retries[String(err.errcode)] ?? 0) + 1;
        retries[String(err.errcode)] = failed;
        if (failed > reaction.retries) {
          failure = new UnrecoverableError(`${err.errcode}: part ${inFlight + 1} failed ${failed} times, ${reaction.retries} retries allowed (${err.message})`);
        }
      }
      if (!(failure instanceof UnrecoverableError)) {
        // A WeChat errcode means "not sent": the next attempt retries it as such, not in doubt.
        // (Without a write the next attempt would count the part in doubt: resent all the same.)
        await save({ ...progress, retries, notSent: answered ? true : undefined }).catch((e: unknown) => log.warn({ jobId, kind, err: e }, 'send outcome not recorded; the next attempt counts the part in doubt'));
      }
    }
    if (failure instanceof RateLimited) {
      // Every worker stops fetching for the pause (the queue's limiter key); this job waits the
      // pause out in `delayed` without spending an attempt, keeping its turn and its progress.
      count('rate-limited');
      log.warn({ jobId, kind, err, pauseMs: failure.pauseMs }, 'WeChat API quota reached: pausing the worker');
      await job.moveToDelayed(now() + failure.pauseMs, token);
      throw new DelayedError();
    }
    const final = failure instanceof UnrecoverableError || lastAttempt;
    count(failure instanceof UnrecoverableError ? 'gave-up' : final ? 'failed' : 'retry');
    log.error({ jobId, kind, err: failure, sent: progress.sent, final }, final ? 'reply failed for good' : 'reply failed; the job will be retried');
    if (final) {
      await clearUndelivered(deps, jobId, progress, maybeSent && inDoubtSends === 'skip' ? 1 : 0, log);
      await releaseTurn();
    }
    throw failure;
  }
}

/**
 * An absorbing job that fails for good takes back the markers of the messages none of whose
 * answer was delivered, before it releases its turn, so those jobs answer themselves (in order:
 * they come after every message whose answer went out). A message whose answer went out in part
 * keeps its marker: answering it again would repeat what the user saw, and this failed job (a
 * dead letter, its log line listing the parts sent) is where the rest is lost. `extra` counts a
 * part in doubt as delivered (at-most-once mode); in resend mode it counts as not delivered.
 */
async function clearUndelivered(deps: ProcessorDeps, jobId: string, progress: ReplyProgress, extra: number, log: Logger): Promise<void> {
  const absorbed = progress.absorbed ?? [];
  if (absorbed.length === 0) return;
  const delivered = new Set<number>();
  const upTo = progress.parts === undefined ? 0 : progress.sent + extra;
  for (let p = 0; p < upTo; p++) for (const i of progress.carriers?.[p] ?? []) delivered.add(i);
  const undelivered = absorbed.filter((_, k) => !delivered.has(k + 1)).map((a) => a.jobId);
  if (undelivered.length === 0) return;
  log.warn({ jobId, undelivered }, 'answering together failed: these messages answer themselves');
  await deps.turns.clearAnswered(jobId, undelivered);
}

/** The API asked the worker to pause (45009, 45011). */
class RateLimited extends Error {
  override readonly name = 'RateLimited';
  constructor(readonly pauseMs: number) {
    super(`rate limited for ${pauseMs} ms`);
  }
}

/** Turns an error into what BullMQ should do, by the errcode table. */
async function classify(deps: ProcessorDeps, err: unknown, openid: string): Promise<Error> {
  if (err instanceof WechatApiError) {
    const reaction = err.reaction;
    switch (reaction.kind) {
      case 'give-up':
        if (err.errcode === 45047 || err.errcode === 45015) await deps.ledger.exhaust(openid);
        return new UnrecoverableError(reaction.reason);
      case 'rate-limit':
        await deps.rateLimit(reaction.pauseMs);
        return new RateLimited(reaction.pauseMs);
      case 'retry':
      case 'refresh-token':
      case 'ignore':
        return err;
    }
  }
  if (err instanceof LlmError && !err.transient) return new UnrecoverableError(err.message);
  return err instanceof Error ? err : new Error(String(err));
}
