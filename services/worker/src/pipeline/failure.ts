import { DelayedError, UnrecoverableError } from 'bullmq';
import { chargeFailedPart, type SenderDeps, type SendJob } from '../delivery/sender.js';
import { errorCode, GiveUp, RateLimited } from '../errors.js';
import { LlmError } from '../replies/llm.js';
import { WechatApiError } from '../wechat/errcodes.js';
import type { DeadLetterRecord, JobContext, PipelineDeps } from './job.js';
import { giveBack } from './record.js';

/**
 * A reply that failed once the job held its turn: what the error means (the errcode table), what
 * the job owes for it (the part's retry budget, a pause of every worker, the markers and the turn
 * of a job that fails for good), and what BullMQ should do. Always throws.
 */
export async function failReply(deps: PipelineDeps & SenderDeps, ctx: JobContext, send: SendJob, err: unknown): Promise<never> {
  let failure = await classify(deps, err, ctx.openid);
  let maybeSent = false;
  if (ctx.inFlight !== undefined && err instanceof WechatApiError) {
    const charged = await chargeFailedPart(deps, send, ctx.inFlight, err);
    maybeSent = charged.maybeSent;
    if (charged.giveUp !== undefined) failure = charged.giveUp;
  }
  if (failure instanceof RateLimited) {
    // Every worker stops fetching for the pause (the queue's limiter key); this job waits the
    // pause out in `delayed` without spending an attempt, keeping its turn and its progress.
    await ctx.job.moveToDelayed(deps.now() + failure.pauseMs, ctx.token);
    throw new PausedForRateLimit(failure.pauseMs, err);
  }
  if (failure instanceof UnrecoverableError || ctx.lastAttempt) {
    await recordDeadLetter(deps, ctx, failure, err);
    await giveBack(deps, ctx, maybeSent && (deps.inDoubtSends ?? 'resend') === 'skip' ? 1 : 0);
  }
  throw failure;
}

/**
 * The job fails for good: its progress records why (`failed`: the code and WeChat's errcode, read
 * by `wxrelay dlq`; an attempt that finds it is a retried dead letter), and that WeChat refused
 * the part in flight when it answered with an errcode (`notSent`, which the retry budget's write
 * leaves out when the job gives up), so a retry sends that part as such, not in doubt. Best effort:
 * without it the dead letter is still there, with its `failedReason`.
 */
async function recordDeadLetter(deps: PipelineDeps, ctx: JobContext, failure: Error, err: unknown): Promise<void> {
  const code = errorCode(failure) ?? errorCode(err);
  const errcode = err instanceof WechatApiError ? err.errcode : undefined;
  const failed: DeadLetterRecord = { at: deps.now(), ...(code === undefined ? {} : { code }), ...(errcode === undefined ? {} : { errcode }) };
  const refused = ctx.inFlight !== undefined && typeof errcode === 'number';
  await ctx.progress
    .save({ ...ctx.progress.current, ...(refused ? { notSent: true } : {}), failed })
    .catch((e: unknown) => deps.log.warn({ jobId: ctx.jobId, kind: ctx.kind, err: e }, 'dead letter: failure not recorded on the job'));
}

/** The job waits a WeChat rate limit out in `delayed` (its attempt not spent). */
export class PausedForRateLimit extends DelayedError {
  constructor(
    readonly pauseMs: number,
    /** What WeChat answered. */
    readonly reason: unknown,
  ) {
    super();
  }
}

/** Turns an error into what BullMQ should do, by the errcode table. */
async function classify(deps: PipelineDeps, err: unknown, openid: string): Promise<Error> {
  if (err instanceof WechatApiError) {
    const reaction = err.reaction;
    switch (reaction.kind) {
      case 'give-up':
        if (err.errcode === 48001) deps.noCustomerServiceApi?.();
        if (err.errcode === 45047 || err.errcode === 45015) await deps.ledger.exhaust(openid);
        return new GiveUp(err.code, reaction.reason);
      case 'rate-limit':
        await deps.rateLimit(reaction.pauseMs);
        return new RateLimited(reaction.pauseMs);
      case 'retry':
      case 'refresh-token':
      case 'ignore':
        return err;
    }
  }
  if (err instanceof LlmError && !err.transient) return new GiveUp(err.code, err.message);
  return err instanceof Error ? err : new Error(String(err));
}
