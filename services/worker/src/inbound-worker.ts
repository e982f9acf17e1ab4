import { Worker } from 'bullmq';
import type { RedisClient } from '@wxrelay/shared/redis';
import { INBOUND_QUEUE, JOB_RETENTION, type JobName, type Logger } from '@wxrelay/shared';
import { createCompletionRides, createJobDataWriter, queueKeys } from '@wxrelay/shared/queue';
import type { QuotaLedger } from './delivery/ledger.js';
import type { WorkerMetrics } from './metrics.js';
import type { AnswerChannel } from './pipeline/job.js';
import { createProcessor, type InDoubtSends, type InboundJobData, type JobResult } from './pipeline/processor.js';
import { createRedisSteps } from './pipeline/redis-steps.js';
import type { Router } from './replies/router.js';
import { withTimeout } from './timeout.js';
import { createUserTurns, type UserTurns } from './user-turns.js';
import type { WechatApi } from './wechat/api.js';

export interface InboundWorkerOptions {
  /** The worker's connection: `maxRetriesPerRequest: null` (a consumer waits for Redis). */
  readonly connection: RedisClient;
  readonly prefix: string;
  readonly queueName?: string;
  readonly appId: string;
  readonly concurrency: number;
  readonly lockDurationMs: number;
  readonly stalledIntervalMs: number;
  readonly api: WechatApi;
  readonly router: Router;
  readonly ledger: QuotaLedger;
  readonly log: Logger;
  readonly metrics?: WorkerMetrics;
  readonly chunkBytes?: number;
  readonly typingIntervalMs?: number;
  readonly turnRetryDelayMs?: number;
  /** A part whose send may have reached WeChat (no outcome recorded): 'resend' (default) or 'skip'. */
  readonly inDoubtSends?: InDoubtSends;
  /** Clock in Unix ms. */
  readonly now?: () => number;
  /** Passive answers (REPLY_MODE passive or auto); absent: the customer-service API only. */
  readonly answers?: AnswerChannel;
  /** A customer-service send answered 48001. */
  readonly noCustomerServiceApi?: () => void;
}

export interface InboundWorker {
  readonly worker: Worker<InboundJobData, JobResult, JobName>;
  readonly turns: UserTurns;
  /** Starts taking jobs (once). */
  run(): void;
  /**
   * Stops taking jobs, lets the in-flight ones finish for up to `timeoutMs`, then closes. Jobs
   * still running after that lose their lock and are picked up by another worker (their progress
   * is on the job, so nothing is sent twice).
   */
  close(timeoutMs: number): Promise<void>;
}

/** The BullMQ worker of the inbound queue, with the processor and per-user turns wired in; it takes jobs once `run` is called. */
export function createInboundWorker(opts: InboundWorkerOptions): InboundWorker {
  const queueName = opts.queueName ?? INBOUND_QUEUE;
  // The processor needs the worker (rate limit, keys) and the worker needs the processor: the
  // closures below run only once the worker has been created and started.
  const lazyTurns: UserTurns = {
    take: (...args) => turns.take(...args),
    enter: (...args) => turns.enter(...args),
    release: (...args) => turns.release(...args),
    markAnswered: (...args) => turns.markAnswered(...args),
    clearAnswered: (...args) => turns.clearAnswered(...args),
  };
  const jobPrefix = queueKeys(opts.prefix, queueName).jobPrefix;
  // A job's turn, quota and progress in one command per step; the release rides on BullMQ's completion.
  const rides = createCompletionRides();
  const processor = createProcessor({
    api: opts.api,
    router: opts.router,
    ledger: opts.ledger,
    turns: lazyTurns,
    log: opts.log,
    ...(opts.metrics === undefined ? {} : { metrics: opts.metrics }),
    ...(opts.chunkBytes === undefined ? {} : { chunkBytes: opts.chunkBytes }),
    ...(opts.typingIntervalMs === undefined ? {} : { typingIntervalMs: opts.typingIntervalMs }),
    ...(opts.turnRetryDelayMs === undefined ? {} : { turnRetryDelayMs: opts.turnRetryDelayMs }),
    ...(opts.inDoubtSends === undefined ? {} : { inDoubtSends: opts.inDoubtSends }),
    ...(opts.now === undefined ? {} : { now: opts.now }),
    ...(opts.answers === undefined ? {} : { answers: opts.answers }),
    ...(opts.noCustomerServiceApi === undefined ? {} : { noCustomerServiceApi: opts.noCustomerServiceApi }),
    // Progress is saved only while this worker holds the job's lock (why: queue/job-data.ts).
    writeData: createJobDataWriter(opts.connection, jobPrefix),
    steps: createRedisSteps({ redis: opts.connection, appId: opts.appId, jobKeyPrefix: jobPrefix, ledger: opts.ledger }),
    alongCompletion: rides.ride,
    rateLimit: (ms) => worker.rateLimit(ms),
  });
  const worker = new Worker<InboundJobData, JobResult, JobName>(queueName, processor, {
    connection: opts.connection,
    prefix: opts.prefix,
    concurrency: opts.concurrency,
    lockDuration: opts.lockDurationMs,
    stalledInterval: opts.stalledIntervalMs,
    // A job whose worker died twice is still retried once more before it becomes a dead letter.
    maxStalledCount: 2,
    ...JOB_RETENTION,
    autorun: false,
  }, rides.backendFactory);
  rides.attach(worker, () => opts.log.warn('a turn release did not ride on its job\'s completion (bullmq completed the job another way): sent on its own'));
  const turns = createUserTurns({
    redis: opts.connection,
    appId: opts.appId,
    jobKeyPrefix: worker.toKey(''),
    eventsKey: worker.toKey('events'),
    activeKey: worker.toKey('active'),
    waitKey: worker.toKey('wait'),
  });
  worker.on('error', (err) => opts.log.error({ err }, 'worker error'));
  worker.on('stalled', (jobId) => opts.log.warn({ jobId }, 'job stalled (its worker died?): back to the queue'));
  let running = false;

  return {
    worker,
    turns,
    run() {
      if (running) return;
      running = true;
      void worker.run().catch((err: unknown) => opts.log.error({ err }, 'worker stopped'));
    },
    async close(timeoutMs) {
      const how = await withTimeout(
        worker.close().then(() => 'closed' as const),
        timeoutMs,
        () => 'timeout' as const,
      );
      if (how === 'timeout') {
        opts.log.warn({ timeoutMs }, 'in-flight jobs did not finish in time; closing anyway');
        await worker.close(true);
      }
    },
  };
}
