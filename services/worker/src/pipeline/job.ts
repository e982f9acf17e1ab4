import type { Job } from 'bullmq';
import { isInboundJobPayload, type InboundJobPayload, type JobName, type Logger } from '@wxrelay/shared';
import type { AnswerStore } from '@wxrelay/shared/queue';
import type { QuotaLedger } from '../delivery/ledger.js';
import { GiveUp, LockLost } from '../errors.js';
import type { Router } from '../replies/router.js';
import type { UserTurns } from '../user-turns.js';
import type { JobSteps } from './redis-steps.js';
import type { WechatApi } from '../wechat/api.js';
import type { Reply } from '../wechat/messages.js';

/**
 * What a job has done so far, saved on the job (`job.updateData`), so a retried or
 * stalled-and-restarted job never calls a slow handler (the LLM) again once it has an answer,
 * never reserves quota twice, and never re-sends a part WeChat accepted. Writes, per job: a slow
 * handler's answer as soon as it has it (the last one to run with the plan: the next write
 * anyway); the planned parts (with the answers and the jobs it answers together with its own, in
 * the command that reserves the quota and marks those jobs) before the first send;
 * `sent` after every part but the last — once the last part is accepted nothing is left that a
 * retry could repeat (the turn's release cannot fail the job any more), and the job's completion
 * records the rest.
 *
 * Every write that leaves `sent < parts.length` is made just before part `sent` is sent, so it also
 * says "part `sent` is starting" at no extra cost: an attempt that finds it, written by an earlier
 * attempt, with no outcome recorded (`notSent`), knows that send may have reached WeChat (the
 * worker died mid-send, or the call got no answer): the part is *in doubt* (see `inDoubtSends`).
 *
 * The format is read by every version of the worker during a rolling deploy: change it only with
 * a conversion in {@link readProgress}.
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
  /**
   * Written when the job fails for good (a dead letter): why, for `wxrelay dlq`. An attempt that
   * finds it is a retried dead letter ({@link jobContext}): see {@link progressForRetry}.
   */
  readonly failed?: DeadLetterRecord;
}

/** Why a job failed for good, as its failure step recorded it. */
export interface DeadLetterRecord {
  /** Unix ms. */
  readonly at: number;
  /** The stable code of the error (`WX_ERR_…`), when it has one. */
  readonly code?: string;
  /** WeChat's errcode (or a pseudo-code: `network`, `http-5xx`, `http-other`) when a WeChat call failed. */
  readonly errcode?: number | string;
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
  /** How the answer goes out: by the customer-service API (the default), or passively (recorded for the gateway). */
  readonly channel?: 'customer-service' | 'passive';
}

export type InboundJob = Job<InboundJobData, JobResult, JobName>;

/** What a new attempt does with a part in doubt: send it again (at least once) or not (at most once). */
export type InDoubtSends = 'resend' | 'skip';

/** At most this many messages are answered together (the head and up to 9 behind it). */
export const MAX_ANSWERED_TOGETHER = 10;

/** What the steps report as they go; the outcome recorder turns it into metrics. */
export interface StepEvents {
  /** A handler answered a message in `ms`. */
  handlerAnswered(route: string, ms: number): void;
  /** A part whose earlier send had no recorded outcome was sent again or skipped. */
  inDoubt(action: 'resent' | 'skipped'): void;
  /** The quota did not let the answer out whole: cut to fit, or none left (the job gives up). */
  quotaRefused(kind: 'cut' | 'none'): void;
}

/**
 * Passive answers (REPLY_MODE passive or auto): recorded for the gateways, which hold WeChat's
 * requests (queue/answers.ts in the shared package).
 */
export interface AnswerChannel {
  readonly mode: 'passive' | 'auto';
  readonly store: AnswerStore;
  /** Said for a fetch whose answer is not ready yet (PASSIVE_PLACEHOLDER). */
  readonly placeholder: string;
  readonly moreMarker: string;
  readonly pageBytes: number;
  /** Pending answers found expired in an inbox (counted). */
  readonly onExpired?: (n: number) => void;
}

/** What the steps need from the outside world. */
export interface PipelineDeps {
  /** Absent: every answer by the customer-service API (REPLY_MODE=customer-service). */
  readonly answers?: AnswerChannel;
  /** A customer-service send answered 48001: the account has no such API (logged once, counted). */
  readonly noCustomerServiceApi?: () => void;
  readonly api: WechatApi;
  readonly router: Router;
  readonly ledger: QuotaLedger;
  readonly turns: UserTurns;
  /** The job's Redis steps: start (window + turn), plan (quota + progress), finish (turn released, next job woken). */
  readonly steps: JobSteps;
  /**
   * Sends a command along with BullMQ's completion of `job` (the queue door's completion rides):
   * the turn of a job that succeeded is released in the round trip of its completion. Absent: at
   * once.
   */
  readonly alongCompletion?: (job: object, send: () => Promise<unknown>) => void;
  readonly log: Logger;
  /** Stops the whole worker (all processes) for `ms`: `worker.rateLimit`. */
  readonly rateLimit: (ms: number) => Promise<void>;
  /** Wakes a job waiting for its turn (best effort; it would retry on its own anyway); used by the steps without scripts. */
  readonly promote?: (jobId: string) => Promise<void>;
  readonly chunkBytes?: number;
  readonly cutNotice?: string;
  readonly typingIntervalMs?: number;
  /** How long a job waiting for its user's turn sleeps before it checks again (default 250 ms, doubling to 2 s). */
  readonly turnRetryDelayMs?: number;
  /** Default 'resend'. */
  readonly inDoubtSends?: InDoubtSends;
  readonly now: () => number;
}

/** The job's progress as the steps move it: `save` writes it to the job, `keep` only remembers it. */
export interface ProgressStore {
  readonly current: ReplyProgress;
  save(next: ReplyProgress): Promise<void>;
  /** For what is cheap to redo (a fast handler's answer) or leaves nothing a retry could repeat. */
  keep(next: ReplyProgress): void;
  /** The job data (JSON) that saves `next`, for a step whose own script writes it (the plan). */
  encode(next: ReplyProgress): string;
  /** `next` was written (by such a script): it is the saved progress now. */
  saved(next: ReplyProgress): void;
}

/** One job as the steps see it. */
export interface JobContext {
  readonly job: InboundJob;
  readonly token: string | undefined;
  readonly signal: AbortSignal;
  readonly data: InboundJobPayload;
  readonly message: InboundJobPayload['message'];
  readonly openid: string;
  readonly jobId: string;
  readonly kind: InboundJobPayload['message']['kind'];
  /** No retry follows if this attempt fails. */
  readonly lastAttempt: boolean;
  /**
   * A dead letter moved back to the queue (`wxrelay dlq retry`, Bull Board, `job.retry`): it
   * enters its user's turn list as of now, behind the messages already there.
   */
  readonly retried: boolean;
  readonly progress: ProgressStore;
  readonly events: StepEvents;
  /**
   * Where the job is, for the outcome recorder: 'replying' once it holds its user's turn (a
   * failure from there on is classified, counted and logged; one before it is retried as it is).
   */
  stage: 'before-turn' | 'replying';
  /** The part being sent when the attempt failed, if it failed in a send. */
  inFlight: number | undefined;
}

/** The saved progress, in the format of this version (see {@link ReplyProgress}). */
export function readProgress(saved: ReplyProgress | undefined): ReplyProgress {
  return saved ?? { sent: 0 };
}

/**
 * Writes a job's data only while `token` holds its lock; false when it no longer does
 * (`createJobDataWriter` of the queue door).
 */
export type JobDataWriter = (jobId: string, token: string, data: unknown) => Promise<boolean>;

/**
 * The job as the steps see it; a job whose data is not a v1 inbound payload is given up on. With
 * `writeData` (production), every save of the progress is made only while this attempt holds the
 * job's lock, and throws {@link LockLost} otherwise; without it (a stand-in job), `job.updateData`.
 */
export function jobContext(job: InboundJob, token: string | undefined, signal: AbortSignal, events: StepEvents, writeData?: JobDataWriter): JobContext {
  const data = job.data;
  if (!isInboundJobPayload(data)) throw new GiveUp('WX_ERR_PAYLOAD', 'not a v1 inbound payload');
  const saved = readProgress(data.progress);
  const retried = saved.failed !== undefined;
  // Kept in memory only: the attempt's first save writes it (a crash before it resets it again).
  let current = retried ? progressForRetry(saved) : saved;
  const progress: ProgressStore = {
    get current() {
      return current;
    },
    async save(next) {
      current = next;
      const value = { ...data, progress: current };
      if (writeData === undefined || token === undefined || job.id === undefined) {
        await job.updateData(value);
        return;
      }
      if (!(await writeData(job.id, token, value))) throw new LockLost(job.id);
      // What BullMQ's updateData would have left in memory.
      job.data = value;
    },
    keep(next) {
      current = next;
    },
    encode(next) {
      return JSON.stringify({ ...data, progress: next });
    },
    saved(next) {
      current = next;
      job.data = { ...data, progress: next };
    },
  };
  const message = data.message;
  return {
    job,
    token,
    signal,
    data,
    message,
    openid: message.fromUserName,
    jobId: job.id ?? data.dedupKey,
    kind: message.kind,
    lastAttempt: isLastAttempt(job),
    retried,
    progress,
    events,
    stage: 'before-turn',
    inFlight: undefined,
  };
}

/**
 * The progress a retried dead letter resumes from. Kept: the answer, the planned parts and `sent`
 * (no part WeChat accepted is sent again, the handlers are not asked again, no quota is reserved
 * again) and `notSent` (whether WeChat refused the part in flight: without it that part would be
 * *in doubt*, and `IN_DOUBT_SENDS=skip` would drop it). Reset: the per-part retry budget
 * (`retries`), so the part gets a fresh one, and the failure record.
 *
 * The worker applies it to every attempt that finds a failure record, however the job was moved
 * back (`wxrelay dlq retry`, Bull Board, `job.retry`).
 */
export function progressForRetry(saved: ReplyProgress): ReplyProgress {
  const { failed: _failed, retries: _retries, ...kept } = saved;
  return kept;
}

/**
 * What `wxrelay dlq retry` writes before it moves a dead letter back: the same reset, with the
 * failure record kept (or added, for a job that failed before it held its turn and so has none),
 * so that the worker takes the job for a retried dead letter.
 */
export function progressMarkedForRetry(saved: ReplyProgress | undefined, failedAt: number): ReplyProgress {
  const progress = readProgress(saved);
  return { ...progressForRetry(progress), failed: progress.failed ?? { at: failedAt } };
}

export function isLastAttempt(job: Pick<InboundJob, 'attemptsMade' | 'opts'>): boolean {
  return job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
}
