import { Job, Worker } from 'bullmq';
import type { RedisClient } from '@wxrelay/shared/redis';
import { INBOUND_QUEUE, JOB_RETENTION, type JobName, type Logger } from '@wxrelay/shared';
import { createCompletionRides, createJobDataWriter, queueKeys } from '@wxrelay/shared/queue';
import type { QuotaLedger } from './delivery/ledger.js';
import type { WorkerMetrics } from './metrics.js';
import type { AnswerChannel } from './pipeline/job.js';
import { createProcessor, type InDoubtSends, type InboundJobData, type JobResult } from './pipeline/processor.js';
import { createRedisSteps, separateSteps, type JobSteps } from './pipeline/redis-steps.js';
import type { Router } from './replies/router.js';
import { withTimeout } from './timeout.js';
import { gatedTurns, type TurnGate } from './shard-change.js';
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
  /**
   * While QUEUE_SHARDS changes: the user's jobs in the other layout that a job must let go first
   * (shard-change.ts). Given lazily: the gate reads the turns of the other queues, built after this one.
   */
  readonly gate?: () => TurnGate | undefined;
  /**
   * Pauses every worker (all processes) for `ms` on a WeChat rate limit; default this queue's
   * (`worker.rateLimit`). With several shards: every shard's.
   */
  readonly rateLimit?: (ms: number) => Promise<void>;
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
  let gated: UserTurns | undefined;
  const current = (): UserTurns => (gated ??= gatedTurns(turns, opts.gate?.()));
  const lazyTurns: UserTurns = {
    take: (...args) => current().take(...args),
    enter: (...args) => current().enter(...args),
    release: (...args) => current().release(...args),
    markAnswered: (...args) => current().markAnswered(...args),
    clearAnswered: (...args) => current().clearAnswered(...args),
  };
  const jobPrefix = queueKeys(opts.prefix, queueName).jobPrefix;
  // A job's turn, quota and progress in one command per step; the release rides on BullMQ's completion.
  const rides = createCompletionRides();
  const promote = async (jobId: string): Promise<void> => {
    const job = await Job.fromId<InboundJobData, JobResult, JobName>(worker, jobId);
    if (job !== undefined && (await job.isDelayed())) await job.promote();
  };
  // While QUEUE_SHARDS changes (a gate), the turn goes through the gated turns, one round trip per
  // call, so the order check across the two layouts sees every take and release (shard-change.ts);
  // otherwise one script per step. Chosen at the first job: the gate reads queues built after this one.
  let chosen: JobSteps | undefined;
  const stepsNow = (): JobSteps => (chosen ??=
      opts.gate?.() === undefined
        ? createRedisSteps({ redis: opts.connection, appId: opts.appId, jobKeyPrefix: jobPrefix, ledger: opts.ledger })
        : separateSteps({ ledger: opts.ledger, turns: current(), promote }));
  const lazySteps: JobSteps = {
    start: (...args) => stepsNow().start(...args),
    plan: (...args) => stepsNow().plan(...args),
    finish: (...args) => stepsNow().finish(...args),
  };
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
    steps: lazySteps,
    alongCompletion: rides.ride,
    rateLimit: opts.rateLimit ?? ((ms) => worker.rateLimit(ms)),
    promote,
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
