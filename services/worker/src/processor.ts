import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import { isInboundJobPayload, type InboundJobPayload, type JobName, type Logger } from '@wxrelay/shared';
import { customMessage, type Reply } from './cs-messages.js';
import { WechatApiError } from './errcodes.js';
import { LlmError } from './llm.js';
import type { JobOutcome, WorkerMetrics } from './metrics.js';
import { triggerTime, windowTrigger, type QuotaLedger } from './quota-ledger.js';
import { expandReplies, fitReplies } from './reply-plan.js';
import type { Router } from './router.js';
import { startTyping, type TypingIndicator } from './typing.js';
import type { UserTurns } from './user-turns.js';
import type { WechatApi } from './wechat-api.js';

/**
 * What a job has done so far, saved on the job (`job.updateData`), so a retried or
 * stalled-and-restarted job never calls a slow handler (the LLM) again once it has an answer,
 * never reserves quota twice, and never re-sends a part WeChat accepted. Writes, per job: a slow
 * handler's answer as soon as it has it; the planned parts (with a fast handler's answer) before
 * the first send; `sent` after every part but the last — once the last part is accepted nothing
 * is left that a retry could repeat (the turn's release cannot fail the job any more), and the
 * job's completion records the rest.
 */
export interface ReplyProgress {
  /** The handler's answer. */
  readonly replies?: readonly Reply[];
  /** The messages to send, after chunking and the quota; fixed once reserved. */
  readonly parts?: readonly Reply[];
  readonly cut?: boolean;
  /** `parts[0..sent)` were accepted by WeChat. */
  readonly sent: number;
}

/** The payload plus the worker's own bookkeeping (payloads allow extra fields). */
export type InboundJobData = InboundJobPayload & { progress?: ReplyProgress };

export interface JobResult {
  readonly outcome: 'replied' | 'no-reply';
  readonly route?: string;
  readonly parts?: number;
  readonly cut?: boolean;
}

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

  if (!(await deps.turns.take(openid, jobId, job.timestamp))) {
    const base = deps.turnRetryDelayMs ?? 250;
    const delay = Math.min(base * 8, base * 2 ** Math.min(job.attemptsStarted, 3)) + Math.floor(Math.random() * base);
    await job.moveToDelayed(now() + delay, token);
    count('waiting-turn');
    throw new DelayedError();
  }

  const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
  let typing: TypingIndicator | undefined;
  let progress: ReplyProgress = data.progress ?? { sent: 0 };
  const save = async (next: ReplyProgress) => {
    progress = next;
    await job.updateData({ ...data, progress });
  };

  try {
    if (progress.replies === undefined) {
      if (route.slow === true) typing = startTyping(deps.api, openid, deps.typingIntervalMs);
      const started = now();
      let handlerLog: Logger | undefined;
      const replies = await route.handler({
        message,
        messageKey: data.dedupKey,
        // Made only for a handler that logs (the LLM route, on its last attempt).
        get log() {
          return (handlerLog ??= log.child({ jobId, kind }));
        },
        signal,
        lastAttempt,
      });
      deps.metrics?.handlerLatency(route.name, now() - started);
      // A slow answer is saved at once; a fast handler's is cheap to redo and is saved with the parts.
      if (route.slow === true) await save({ ...progress, replies });
      else progress = { ...progress, replies };
    }
    const replies = progress.replies ?? [];
    if (progress.parts === undefined) {
      const wanted = expandReplies(replies, { maxBytes: deps.chunkBytes }).length;
      const allowed = wanted === 0 ? 0 : await deps.ledger.reserve(openid, wanted, jobId, now());
      if (wanted > 0 && allowed === 0) {
        throw new UnrecoverableError('no customer-service quota left for this user (window closed or used up, per the ledger)');
      }
      const { parts, cut } = fitReplies(replies, allowed, { maxBytes: deps.chunkBytes, cutNotice: deps.cutNotice });
      if (cut) log.info({ jobId, kind, wanted, allowed }, 'answer cut to fit the customer-service quota');
      // Nothing to send: nothing a retry could repeat, no write needed.
      if (parts.length === 0) progress = { ...progress, parts, cut };
      else await save({ ...progress, parts, cut });
    }
    const parts = progress.parts ?? [];
    for (let i = progress.sent; i < parts.length; i++) {
      const part = parts[i];
      if (part === undefined) break;
      await deps.api.sendCustomMessage(customMessage(openid, part));
      if (i + 1 < parts.length) await save({ ...progress, sent: i + 1 });
      else progress = { ...progress, sent: i + 1 };
    }
    typing?.stop({ cancel: false });
    // Everything was sent: a failure from here on must not make BullMQ retry (and re-send the last
    // part). A turn left behind is dropped by the next take once this job is finished.
    await releaseTurn().catch((err: unknown) => log.warn({ jobId, kind, err }, 'turn not released; the next job of the user takes it once this one is finished'));
    count(parts.length === 0 ? 'no-reply' : 'replied');
    log.info({ jobId, kind, route: route.name, parts: parts.length, cut: progress.cut === true }, 'replied');
    return { outcome: parts.length === 0 ? 'no-reply' : 'replied', route: route.name, parts: parts.length, cut: progress.cut === true };
  } catch (err) {
    typing?.stop({ cancel: true });
    const failure = await classify(deps, err, openid);
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
    if (final) await releaseTurn();
    throw failure;
  }
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
