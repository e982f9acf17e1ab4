import { UnrecoverableError } from 'bullmq';
import type { WxErrorCode } from '@wxrelay/shared';

/**
 * The stable codes of the errors the worker raises beside shared's {@link WxErrorCode}s (which it
 * raises too: `WX_ERR_API` and `WX_ERR_NETWORK` for a WeChat call, `WX_ERR_CONFIG` for a rules
 * file). Callers and tests match on the code, never on the prose.
 */
export type WorkerErrorCode =
  /** An outbound HTTP call got no usable answer: network error, timeout, 5xx, or a body that is not JSON. */
  | 'WX_ERR_HTTP'
  /** The LLM call failed (`transient` says whether another attempt may help). */
  | 'WX_ERR_LLM'
  /** WeChat asked every worker to pause (45009, 45011): the job waits the pause out. */
  | 'WX_ERR_RATE_LIMITED'
  /** The quota ledger has no customer-service message left for this user (window closed or used up). */
  | 'WX_ERR_NO_QUOTA'
  /** A part failed more often than its errcode class allows (the retry budget of the errcode table). */
  | 'WX_ERR_RETRIES_SPENT'
  /** The job's data is not a v1 inbound payload. */
  | 'WX_ERR_PAYLOAD'
  /** A job name of the queue contract without a processor here. */
  | 'WX_ERR_JOB_NAME'
  /** The worker no longer holds the job's lock (another worker has it now): this attempt stops. */
  | 'WX_ERR_LOCK_LOST';

/** Every code an error raised by the worker may carry. */
export type ErrorCode = WxErrorCode | WorkerErrorCode;

/** The base of the worker's own error classes: a stable {@link WorkerErrorCode}. */
export class WorkerError extends Error {
  readonly code: WorkerErrorCode;

  constructor(code: WorkerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * A failure the job must not retry (BullMQ moves it to failed at once: a dead letter), with the
 * code of why. Its message is the job's `failedReason`.
 */
export class GiveUp extends UnrecoverableError {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message);
    // BullMQ names it after the constructor; dead letters keep the name they always had.
    this.name = 'UnrecoverableError';
    this.code = code;
    if (options !== undefined && 'cause' in options) this.cause = options.cause;
  }
}

/** The API asked the worker to pause (45009, 45011). */
export class RateLimited extends WorkerError {
  override readonly name = 'RateLimited';
  constructor(
    readonly pauseMs: number,
    options?: { cause?: unknown },
  ) {
    super('WX_ERR_RATE_LIMITED', `rate limited for ${pauseMs} ms`, options);
  }
}

/** The code of `err`, when it is one of the worker's or shared's coded errors. */
export function errorCode(err: unknown): ErrorCode | undefined {
  if (err === null || typeof err !== 'object' || !('code' in err)) return undefined;
  const code = err.code;
  return typeof code === 'string' && code.startsWith('WX_ERR_') ? (code as ErrorCode) : undefined;
}

/**
 * The job's lock lapsed and its progress could not be saved: another worker may have the job now.
 * The attempt stops before it sends anything more, and must not clean up (release the user's turn,
 * take back markers): the job is not finished, and its new holder carries on from the saved progress.
 */
export class LockLost extends WorkerError {
  override readonly name = 'LockLost';
  constructor(readonly jobId: string) {
    super('WX_ERR_LOCK_LOST', `lost the lock of job ${jobId}: another worker has it now`);
  }
}
