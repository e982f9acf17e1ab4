import type { Job, Queue } from 'bullmq';
import { isInboundJobPayload, JOB_RETENTION } from '@wxrelay/shared';
import { progressMarkedForRetry, readProgress, type InboundJobData } from '../pipeline/job.js';

/**
 * Dead letters: the inbound queue's failed jobs, kept a week (`JOB_RETENTION.removeOnFail`) with
 * their reason. What `wxrelay dlq` reads and does, on a BullMQ `Queue`; the command line is run.ts.
 * Nothing here prints a user's openid: it is masked ({@link maskOpenid}).
 */

/** How long BullMQ keeps a dead letter (seconds). */
export const DEAD_LETTER_AGE_S = JOB_RETENTION.removeOnFail.age;

/** The filters of `list`, `retry` and `drop`. */
export interface DeadLetterFilter {
  /** WeChat's errcode (`48001`, `-1`) or a pseudo-code (`network`, `http-5xx`, `http-other`). */
  readonly errcode?: string;
  /** Failed at or after this (Unix ms). */
  readonly since?: number;
}

/** One dead letter as `list` shows it (and `--json` prints it). */
export interface DeadLetterSummary {
  readonly id: string;
  /** The openid, masked: first 4 characters, '…', last 2. */
  readonly user: string;
  readonly kind: string;
  readonly errcode: number | string | null;
  /** The stable code of the error (`WX_ERR_…`), when the failure step recorded it. */
  readonly code: string | null;
  /** `failedReason`, on one line, shortened. */
  readonly reason: string;
  /** Attempts made (BullMQ's `attemptsMade`). */
  readonly attempts: number;
  /** ISO time it failed for good. */
  readonly failedAt: string | null;
  /** Seconds since it failed. */
  readonly ageSeconds: number | null;
  /** The queue that holds it (`QueueShard.name`), when there are several (QUEUE_SHARDS > 1). */
  readonly queue?: string;
}

/** One dead letter as `show` shows it. */
export interface DeadLetterDetail extends Omit<DeadLetterSummary, 'reason'> {
  /** The whole `failedReason`. */
  readonly reason: string;
  /** The message, shortened (a text's content, an event's name, a media's kind). */
  readonly content: string;
  readonly maxAttempts: number;
  readonly receivedAt: string | null;
  readonly enqueuedAt: string;
  readonly startedAt: string | null;
  readonly progress: {
    /** Reply parts planned (null: the answer was never planned). */
    readonly parts: number | null;
    /** Parts WeChat accepted: never sent again. */
    readonly sent: number;
    /** Later messages of the user answered with this one. */
    readonly answeredTogether: number;
    /** The handler's answer is saved (a retry does not ask the handler, e.g. the LLM, again). */
    readonly answerSaved: boolean;
  };
}

export type InboundDeadLetter = Job<InboundJobData>;

/** `oABC…yz`: enough to tell users apart in a list, not enough to address one. */
export function maskOpenid(openid: unknown): string {
  if (typeof openid !== 'string' || openid === '') return '?';
  if (openid.length < 8) return `${openid.slice(0, 1)}…`;
  return `${openid.slice(0, 4)}…${openid.slice(-2)}`;
}

/** One line, at most `max` characters. */
export function shorten(text: string, max: number): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length <= max ? line : `${line.slice(0, max - 1)}…`;
}

const PSEUDO = '(?:-?\\d+|network|http-5xx|http-other)';
/**
 * The errcode in a `failedReason` written before the failure step recorded it, as the worker words
 * them: a give-up reason (`48001 the account has no …`), a spent retry budget (`-1: part 2 failed
 * 3 times…`), a WeChat call's error on the last attempt (`/cgi-bin/message/custom/send: -1 system error`).
 */
const REASON_ERRCODE = [new RegExp(`^(${PSEUDO})(?::)? `), new RegExp(`^/cgi-bin/[^:\\s]+: (${PSEUDO}) `)];

/** The errcode of a dead letter: as the failure step recorded it, else read from its reason. */
export function errcodeOf(job: Pick<InboundDeadLetter, 'data' | 'failedReason'>): number | string | undefined {
  const recorded = readProgress(job.data.progress).failed?.errcode;
  if (recorded !== undefined) return recorded;
  const reason = job.failedReason ?? '';
  for (const re of REASON_ERRCODE) {
    const m = re.exec(reason);
    if (m?.[1] !== undefined) return /^-?\d+$/.test(m[1]) ? Number(m[1]) : m[1];
  }
  return undefined;
}

const iso = (ms: number | undefined | null): string | null => (typeof ms === 'number' && ms > 0 ? new Date(ms).toISOString() : null);
const message = (job: InboundDeadLetter): Record<string, unknown> => (typeof job.data?.message === 'object' && job.data.message !== null ? (job.data.message as unknown as Record<string, unknown>) : {});

export function summarize(job: InboundDeadLetter, now: number): DeadLetterSummary {
  const m = message(job);
  return {
    id: job.id ?? '?',
    user: maskOpenid(m.fromUserName),
    kind: typeof m.kind === 'string' ? m.kind : '?',
    errcode: errcodeOf(job) ?? null,
    code: readProgress(job.data.progress).failed?.code ?? null,
    reason: shorten(job.failedReason ?? '', 80),
    attempts: job.attemptsMade,
    failedAt: iso(job.finishedOn),
    ageSeconds: job.finishedOn === undefined ? null : Math.max(0, Math.round((now - job.finishedOn) / 1000)),
  };
}

/** What the message said, shortened: a text's content, an event's name, else its kind. */
function contentOf(m: Record<string, unknown>): string {
  if (typeof m.content === 'string') return shorten(m.content, 60);
  if (typeof m.event === 'string') return `event ${m.event}`;
  if (typeof m.recognition === 'string' && m.recognition !== '') return shorten(m.recognition, 60);
  return `[${typeof m.kind === 'string' ? m.kind : '?'}]`;
}

export function detail(job: InboundDeadLetter, now: number): DeadLetterDetail {
  const progress = readProgress(job.data.progress);
  return {
    ...summarize(job, now),
    reason: job.failedReason ?? '',
    content: contentOf(message(job)),
    maxAttempts: job.opts.attempts ?? 1,
    receivedAt: iso(job.data.receivedAt),
    enqueuedAt: iso(job.timestamp) ?? '?',
    startedAt: iso(job.processedOn),
    progress: {
      parts: progress.parts?.length ?? null,
      sent: progress.sent,
      answeredTogether: progress.absorbed?.length ?? 0,
      answerSaved: progress.replies !== undefined,
    },
  };
}

export function matches(job: InboundDeadLetter, filter: DeadLetterFilter): boolean {
  if (filter.errcode !== undefined && String(errcodeOf(job) ?? '') !== filter.errcode) return false;
  if (filter.since !== undefined && (job.finishedOn ?? 0) < filter.since) return false;
  return true;
}

/** The dead letters matching `filter`, newest first. */
export async function findDeadLetters(queue: Queue, filter: DeadLetterFilter = {}): Promise<InboundDeadLetter[]> {
  const found: InboundDeadLetter[] = [];
  const page = 500;
  for (let start = 0; ; start += page) {
    const jobs = (await queue.getJobs(['failed'], start, start + page - 1, false)) as (InboundDeadLetter | undefined)[];
    for (const job of jobs) if (job !== undefined && matches(job, filter)) found.push(job);
    if (jobs.length < page) return found;
  }
}

/** The dead letter `id`, or undefined when there is no failed job by that id. */
export async function getDeadLetter(queue: Queue, id: string): Promise<InboundDeadLetter | undefined> {
  const job = (await queue.getJob(id)) as InboundDeadLetter | undefined;
  if (job === undefined || !(await job.isFailed())) return undefined;
  return job;
}

/**
 * Moves a dead letter back to the queue, keeping what it has done: the answer, the planned parts
 * and the parts WeChat accepted (never sent again). First its progress is written as a retried
 * dead letter's (`progressMarkedForRetry`: the part in flight gets a fresh retry budget, and the
 * worker registers the job in its user's turn list as of now), then BullMQ's `job.retry('failed')`
 * moves it to `wait` with a fresh attempt budget. False when it was no longer a dead letter.
 */
export async function retryDeadLetter(job: InboundDeadLetter): Promise<boolean> {
  if (!(await job.isFailed())) return false;
  if (isInboundJobPayload(job.data)) {
    await job.updateData({ ...job.data, progress: progressMarkedForRetry(job.data.progress, job.finishedOn ?? Date.now()) });
  }
  try {
    await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
    return true;
  } catch (err) {
    // Retried or removed by someone else meanwhile (BullMQ: "not in the failed state", "does not exist").
    if (!(await job.isFailed().catch(() => false))) return false;
    throw err;
  }
}

/** Deletes a dead letter. False when it was no longer one. */
export async function dropDeadLetter(job: InboundDeadLetter): Promise<boolean> {
  if (!(await job.isFailed())) return false;
  await job.remove();
  return true;
}
