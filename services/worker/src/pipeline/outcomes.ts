import { UnrecoverableError } from 'bullmq';
import type { Logger } from '@wxrelay/shared';
import type { WorkerMetrics } from '../metrics.js';
import { PausedForRateLimit } from './failure.js';
import { LockLost } from '../errors.js';
import { jobContext, type InboundJob, type JobContext, type JobDataWriter, type JobResult, type StepEvents } from './job.js';
import { WaitingForTurn } from './turn.js';

export interface OutcomeDeps {
  readonly log: Logger;
  readonly metrics?: WorkerMetrics;
  readonly now: () => number;
  /** Saves a job's progress only while the attempt holds the job's lock (see {@link jobContext}). */
  readonly writeData?: JobDataWriter;
}

/**
 * Records how each job ended, around the steps rather than inside them: the queue wait, the
 * handler latencies and sends in doubt the steps report, the outcome counter, and the line that
 * says a reply failed (and whether it is retried). The steps throw what BullMQ should see; this
 * only looks at it and passes it on.
 */
export function recordOutcomes(deps: OutcomeDeps, steps: (ctx: JobContext) => Promise<JobResult>): (job: InboundJob, token: string | undefined, signal: AbortSignal) => Promise<JobResult> {
  const { metrics, log } = deps;
  const events: StepEvents = {
    handlerAnswered: (route, ms) => metrics?.handlerLatency(route, ms),
    inDoubt: (action) => metrics?.inDoubtSend(action),
    quotaRefused: (kind) => metrics?.quotaRefusal(kind),
  };
  return async (job, token, signal) => {
    let ctx: JobContext;
    try {
      ctx = jobContext(job, token, signal, events, deps.writeData);
    } catch (err) {
      metrics?.job('gave-up');
      throw err;
    }
    if (job.attemptsStarted <= 1 && job.data.progress === undefined) metrics?.queueWait(deps.now() - ctx.data.receivedAt);
    try {
      const result = await steps(ctx);
      metrics?.job(result.outcome);
      if (result.outcome === 'replied' && result.channel !== 'passive') metrics?.answeredByApi();
      return result;
    } catch (err) {
      const { jobId, kind } = ctx;
      if (err instanceof LockLost) {
        // Not a failure of the reply: the job goes on with the worker that holds it now.
        log.warn({ jobId, kind, sent: ctx.progress.current.sent }, 'lost the job\'s lock: another worker carries on from its saved progress; this attempt stops');
      } else if (err instanceof WaitingForTurn) {
        metrics?.job('waiting-turn');
      } else if (err instanceof PausedForRateLimit) {
        metrics?.job('rate-limited');
        metrics?.pausedFor(err.pauseMs);
        log.warn({ jobId, kind, err: err.reason, pauseMs: err.pauseMs }, 'WeChat API quota reached: pausing the worker');
      } else if (ctx.stage === 'replying') {
        const gaveUp = err instanceof UnrecoverableError;
        const final = gaveUp || ctx.lastAttempt;
        metrics?.job(gaveUp ? 'gave-up' : final ? 'failed' : 'retry');
        log.error({ jobId, kind, err, sent: ctx.progress.current.sent, final }, final ? 'reply failed for good' : 'reply failed; the job will be retried');
      }
      throw err;
    }
  };
}
