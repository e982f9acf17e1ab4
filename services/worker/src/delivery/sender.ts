import type { Logger } from '@wxrelay/shared';
import { GiveUp } from '../errors.js';
import type { InDoubtSends, ProgressStore } from '../pipeline/job.js';
import type { WechatApi } from '../wechat/api.js';
import type { WechatApiError } from '../wechat/errcodes.js';
import { customMessage } from '../wechat/messages.js';

/**
 * Step 5: sending the planned parts through the customer-service API, one call per part, with the
 * job's saved progress as the record of what went out. Three pieces:
 * - {@link resumeSend}: a job planned by an earlier attempt finds out how that attempt's last send
 *   ended (refused by WeChat: a plain retry; no outcome recorded: *in doubt*);
 * - {@link sendParts}: the send loop, "part i done" saved as "part i + 1 starting";
 * - {@link chargeFailedPart}: a failed send counted against its part's retry budget (errcode table).
 */

export interface SenderDeps {
  readonly api: WechatApi;
  readonly log: Logger;
  /** Default 'resend'. */
  readonly inDoubtSends?: InDoubtSends;
}

/** One job's sending: whom to, its progress, and where to report (the part in flight, a part in doubt). */
export interface SendJob {
  readonly openid: string;
  readonly jobId: string;
  /** The message kind (log lines). */
  readonly kind: string;
  readonly progress: ProgressStore;
  /** The jobs whose answers part `part` carries (log lines). */
  readonly jobsOf: (part: number) => readonly string[];
  /** Set while part `part` is being sent (undefined once it was accepted). */
  readonly setInFlight: (part: number | undefined) => void;
  readonly onInDoubt: (action: 'resent' | 'skipped') => void;
}

/**
 * A job planned by an earlier attempt: how did its last send end? WeChat refused it (its answer
 * is recorded): a plain retry. No outcome recorded: the earlier attempt died mid-send, or the
 * call got no answer. WeChat has no idempotency key: either send again (maybe a duplicate) or
 * skip (maybe never seen), per `inDoubtSends`.
 */
export async function resumeSend(deps: SenderDeps, job: SendJob): Promise<void> {
  const { progress } = job;
  const parts = progress.current.parts ?? [];
  const part = progress.current.sent;
  if (part >= parts.length) return;
  if (progress.current.notSent === true) {
    // Say "part starting" again.
    await progress.save({ ...progress.current, notSent: undefined });
    return;
  }
  const action = (deps.inDoubtSends ?? 'resend') === 'skip' ? 'skipped' : 'resent';
  job.onInDoubt(action);
  deps.log.warn({ jobId: job.jobId, part, jobs: job.jobsOf(part) }, 'send in doubt');
  if (action === 'skipped') {
    const next = { ...progress.current, sent: part + 1, retries: undefined };
    // The skip is recorded with "next part starting" (no write when it was the last part).
    if (part + 1 < parts.length) await progress.save(next);
    else progress.keep(next);
  }
}

/** Sends the parts not sent yet, in order; "part i done" is also "part i + 1 starting". */
export async function sendParts(deps: SenderDeps, job: SendJob): Promise<void> {
  const { progress } = job;
  const parts = progress.current.parts ?? [];
  for (let i = progress.current.sent; i < parts.length; i++) {
    const part = parts[i];
    if (part === undefined) break;
    job.setInFlight(i);
    await deps.api.sendCustomMessage(customMessage(job.openid, part));
    job.setInFlight(undefined);
    const next = { ...progress.current, sent: i + 1, retries: undefined };
    if (i + 1 < parts.length) await progress.save(next);
    else progress.keep(next);
  }
}

/** What a failed send of part `part` means for the job. */
export interface ChargedFailure {
  /** The part's retry budget is spent: the job gives up (else undefined). */
  readonly giveUp?: GiveUp;
  /** The call got no WeChat answer: the part may have been sent. */
  readonly maybeSent: boolean;
}

/**
 * One retry policy, one count: the API client makes one call; the job's attempts (with their
 * backoff) are the retries, counted here per part and errcode class, in the saved progress, so
 * neither a crash nor a new attempt resets the count. The count is saved unless the job gives up;
 * a WeChat errcode also records "not sent", so the next attempt retries the part as such, not in
 * doubt (without the write the next attempt counts the part in doubt: resent all the same).
 */
export async function chargeFailedPart(deps: SenderDeps, job: SendJob, part: number, err: WechatApiError): Promise<ChargedFailure> {
  const { progress } = job;
  const answered = typeof err.errcode === 'number';
  const reaction = err.reaction;
  const retries = { ...progress.current.retries };
  let giveUp: GiveUp | undefined;
  if (reaction.kind === 'retry') {
    const failed = (retries[String(err.errcode)] ?? 0) + 1;
    retries[String(err.errcode)] = failed;
    if (failed > reaction.retries) {
      giveUp = new GiveUp('WX_ERR_RETRIES_SPENT', `${err.errcode}: part ${part + 1} failed ${failed} times, ${reaction.retries} retries allowed (${err.message})`);
    }
  }
  if (giveUp === undefined && reaction.kind !== 'give-up') {
    await progress
      .save({ ...progress.current, retries, notSent: answered ? true : undefined })
      .catch((e: unknown) => deps.log.warn({ jobId: job.jobId, kind: job.kind, err: e }, 'send outcome not recorded; the next attempt counts the part in doubt'));
  }
  return { ...(giveUp === undefined ? {} : { giveUp }), maybeSent: !answered };
}
