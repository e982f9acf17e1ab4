import { UnrecoverableError } from 'bullmq';
import type { JobName } from '@wxrelay/shared';
import { resumeSend, sendParts, type SendJob } from '../delivery/sender.js';
import { GiveUp, LockLost } from '../errors.js';
import type { WorkerMetrics } from '../metrics.js';
import { typingOnDemand } from '../wechat/typing.js';
import { runHandlers } from './answer.js';
import { failReply } from './failure.js';
import type { AbsorbedMessage, AnswerChannel, InboundJob, JobContext, JobDataWriter, JobResult, PipelineDeps } from './job.js';
import { recordOutcomes } from './outcomes.js';
import { completeRecorded, fetchesPending, fetchPending, offerPassively, recordPages } from './passive.js';
import { grantWindow, planParts } from './plan.js';
import { acknowledgeUnrouted, completeAnsweredTogether, completeReplied } from './record.js';
import { separateSteps, windowGrant, type JobSteps } from './redis-steps.js';
import { takeTurn } from './turn.js';

export type { AbsorbedMessage, InboundJob, InboundJobData, InDoubtSends, JobResult, ReplyProgress } from './job.js';
export { MAX_ANSWERED_TOGETHER } from './job.js';

export interface ProcessorDeps extends Omit<PipelineDeps, 'now' | 'steps'> {
  readonly metrics?: WorkerMetrics;
  readonly now?: () => number;
  /** The job's Redis steps as one command each (inbound-worker.ts); absent: made of `ledger`'s and `turns`' calls. */
  readonly steps?: JobSteps;
  /** Saves progress only while the attempt holds the job's lock (the queue door's `createJobDataWriter`). */
  readonly writeData?: JobDataWriter;
}

export type Processor = (job: InboundJob, token?: string, signal?: AbortSignal) => Promise<JobResult>;
type JobHandler = (job: InboundJob, token: string | undefined, signal: AbortSignal) => Promise<JobResult>;

/**
 * The one BullMQ processor: a typed handler per job name (a job name in the queue contract
 * without a handler here fails to compile), each wrapped in the outcome recorder.
 */
export function createProcessor(deps: ProcessorDeps): Processor {
  const steps: PipelineDeps = {
    ...deps,
    now: deps.now ?? Date.now,
    steps: deps.steps ?? separateSteps({ ledger: deps.ledger, turns: deps.turns, ...(deps.promote === undefined ? {} : { promote: deps.promote }) }),
  };
  const handlers: { readonly [K in JobName]: JobHandler } = {
    inbound: recordOutcomes(
      { log: deps.log, ...(deps.metrics === undefined ? {} : { metrics: deps.metrics }), ...(deps.writeData === undefined ? {} : { writeData: deps.writeData }), now: steps.now },
      (ctx) => processInbound(steps, ctx),
    ),
  };
  return async (job, token, signal) => {
    const handler = (handlers as Partial<Record<string, JobHandler>>)[job.name];
    if (handler === undefined) throw new GiveUp('WX_ERR_JOB_NAME', `no handler for job name "${job.name}"`);
    return handler(job, token, signal ?? new AbortController().signal);
  };
}

/**
 * One inbound message, from the queue to the customer-service send, one step per file:
 * its route (replies/router.ts) → the window it opened and the user's turn, with the backlog
 * answered with it (turn.ts) → the handlers, with saved progress (answer.ts) → the parts
 * against the quota (plan.ts) → the sends (delivery/sender.ts) → how it ended (record.ts); a
 * failure once the turn is held goes to failure.ts. Redis beyond BullMQ: the turn (with the
 * window) and the plan, one round trip each (redis-steps.ts); the release rides on BullMQ's
 * completion.
 */
async function processInbound(deps: PipelineDeps, ctx: JobContext): Promise<JobResult> {
  const channel = deps.answers;
  if (channel?.mode === 'passive') return processPassive(deps, channel, ctx);
  const route = deps.router.route(ctx.message);
  if (route === undefined) {
    await grantWindow(deps, ctx.data);
    // Auto: nothing to say, so the held request acks now rather than at the end of its hold.
    if (channel !== undefined) await channel.store.record(ctx.jobId, []);
    return acknowledgeUnrouted(deps, ctx);
  }

  const turn = await takeTurn(deps, ctx, { grant: windowGrant(ctx.data) });
  if (turn.kind === 'answered') return completeAnsweredTogether(deps, ctx, turn.by);

  ctx.stage = 'replying';
  const send = sendJob(ctx, turn.absorbed);
  const typing = typingOnDemand(deps.api, ctx.openid, deps.typingIntervalMs);
  try {
    if (ctx.progress.current.parts === undefined) {
      // The plan follows at once (customer-service mode): it writes the last answer.
      await runHandlers(deps, ctx, route, turn.absorbed, () => typing.show(), { lastSavedByPlan: channel === undefined });
      // Auto: an answer that fits one passive reply goes back in the held request if it still is.
      if (channel !== undefined && (await offerPassively(channel, ctx))) {
        typing.stop({ cancel: false });
        return await completeRecorded(deps, ctx, route, ctx.progress.current.replies?.length ?? 0, 'answer offered to the held request');
      }
      await planParts(deps, ctx);
    } else {
      await resumeSend(deps, send);
    }
    await sendParts(deps, send);
    typing.stop({ cancel: false });
    return await completeReplied(deps, ctx, route);
  } catch (err) {
    typing.stop({ cancel: true });
    // The job is another worker's now: nothing to clean up, nothing to record (see LockLost).
    if (err instanceof LockLost) throw err;
    return failReply(deps, ctx, send, err);
  }
}

/**
 * Passive mode: no customer-service call at all (no quota, no typing, no token). The user's turn
 * still orders the answers; each message gets its own (none answered together). A message that
 * fetches while the user's inbox holds an answer is answered from it and not handled.
 */
async function processPassive(deps: PipelineDeps, channel: AnswerChannel, ctx: JobContext): Promise<JobResult> {
  const route = deps.router.route(ctx.message);
  const fetches = fetchesPending(ctx.message);
  if (route === undefined && !fetches) {
    await channel.store.record(ctx.jobId, []);
    return acknowledgeUnrouted(deps, ctx);
  }
  // Only before the handlers ran: a retry must not trade an answer it has for an inbox page.
  const fetching = fetches && ctx.progress.current.replies === undefined;
  const turn = await takeTurn(deps, ctx, { peekInbox: fetching });
  if (turn.kind === 'answered') return completeAnsweredTogether(deps, ctx, turn.by);
  ctx.stage = 'replying';
  try {
    // The turn's command said whether the inbox holds anything: the fetch only when it does.
    if (fetching && turn.inbox && (await fetchPending(deps, channel, ctx))) {
      return await completeRecorded(deps, ctx, undefined, 1, 'answered from the inbox');
    }
    if (route === undefined) {
      await channel.store.record(ctx.jobId, []);
      return await acknowledgeUnrouted(deps, ctx);
    }
    if (ctx.progress.current.replies === undefined) await runHandlers(deps, ctx, route, [], () => undefined);
    const pages = await recordPages(deps, channel, ctx);
    return await completeRecorded(deps, ctx, route, pages, 'answer recorded for the passive reply');
  } catch (err) {
    if (err instanceof LockLost) throw err;
    try {
      return await failReply(deps, ctx, sendJob(ctx, []), err);
    } catch (failure) {
      if (failure instanceof UnrecoverableError || ctx.lastAttempt) {
        // Failed for good: an empty answer, so a held request acks and the inbox does not wait on it.
        await channel.store.record(ctx.jobId, []).catch((e: unknown) => deps.log.warn({ jobId: ctx.jobId, err: e }, 'empty answer not recorded for a failed job'));
      }
      throw failure;
    }
  }
}

/** The job as the sender sees it. */
function sendJob(ctx: JobContext, absorbed: readonly AbsorbedMessage[]): SendJob {
  return {
    openid: ctx.openid,
    jobId: ctx.jobId,
    kind: ctx.kind,
    progress: ctx.progress,
    jobsOf: (part) => (ctx.progress.current.carriers?.[part] ?? [0]).map((i) => (i === 0 ? ctx.jobId : (absorbed[i - 1]?.jobId ?? '?'))),
    setInFlight: (part) => {
      ctx.inFlight = part;
    },
    onInDoubt: (action) => ctx.events.inDoubt(action),
  };
}
