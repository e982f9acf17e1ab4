import type { Route } from '../replies/router.js';
import type { JobContext, JobResult, PipelineDeps, ReplyProgress } from './job.js';
import { releaseTurn } from './turn.js';

/**
 * Step 6: how the job ends. It releases the user's turn (the next message may go) and says what
 * it did: the job's return value and one log line. The outcome counter is recorded around the
 * steps (outcomes.ts). A job that succeeds releases its turn in the round trip of its completion
 * (see releaseTurn); one that fails for good, at once.
 */

/** A message nothing answers (an unknown type, an event without a rule): acknowledged, no reply. */
export async function acknowledgeUnrouted(deps: PipelineDeps, ctx: JobContext): Promise<JobResult> {
  const { message, jobId, kind } = ctx;
  if (message.kind === 'unknown') deps.log.warn({ jobId, kind, msgType: message.msgType }, 'unknown message type: acknowledged without a reply');
  else deps.log.debug({ jobId, kind }, 'no reply for this message');
  // Every job of the user is registered in its turn list when enqueued: this one needs no turn.
  await releaseTurn(deps, ctx, true);
  return { outcome: 'no-reply' };
}

/** An earlier job of the user answered this message with its own (this job's marker). */
export async function completeAnsweredTogether(deps: PipelineDeps, ctx: JobContext, by: string): Promise<JobResult> {
  await releaseTurn(deps, ctx, true);
  deps.log.debug({ jobId: ctx.jobId, kind: ctx.kind, by }, 'answered together with an earlier message');
  return { outcome: 'answered-together', answeredBy: by };
}

/** Every part was sent (or there was none to send). */
export async function completeReplied(deps: PipelineDeps, ctx: JobContext, route: Route): Promise<JobResult> {
  const { jobId, kind } = ctx;
  // Everything was sent: a failure from here on must not make BullMQ retry (and re-send the last
  // part). A turn left behind is dropped by the next take once this job is finished.
  await releaseTurn(deps, ctx, true).catch((err: unknown) => deps.log.warn({ jobId, kind, err }, 'turn not released; the next job of the user takes it once this one is finished'));
  const progress = ctx.progress.current;
  const parts = progress.parts ?? [];
  const answeredWith = (progress.absorbed ?? []).map((a) => a.jobId);
  const cut = progress.cut === true;
  deps.log.info({ jobId, kind, route: route.name, parts: parts.length, cut, ...(answeredWith.length > 0 ? { answeredWith } : {}) }, 'replied');
  return {
    outcome: parts.length === 0 ? 'no-reply' : 'replied',
    route: route.name,
    parts: parts.length,
    cut,
    ...(answeredWith.length > 0 ? { answeredWith } : {}),
  };
}

/**
 * A job that failed for good gives back what it holds: the markers of the messages it absorbed
 * and did not deliver, then the turn. A message whose answer went out in part keeps its marker:
 * answering it again would repeat what the user saw, and this failed job (a dead letter, its log
 * line listing the parts sent) is where the rest is lost. `extra` counts a part in doubt as
 * delivered (at-most-once mode); in resend mode it counts as not delivered.
 */
export async function giveBack(deps: PipelineDeps, ctx: JobContext, extra: number): Promise<void> {
  await clearUndelivered(deps, ctx.jobId, ctx.progress.current, extra);
  await releaseTurn(deps, ctx);
}

/** The undelivered ones answer themselves, in order: after every message whose answer went out. */
async function clearUndelivered(deps: PipelineDeps, jobId: string, progress: ReplyProgress, extra: number): Promise<void> {
  const absorbed = progress.absorbed ?? [];
  if (absorbed.length === 0) return;
  const delivered = new Set<number>();
  const upTo = progress.parts === undefined ? 0 : progress.sent + extra;
  for (let p = 0; p < upTo; p++) for (const i of progress.carriers?.[p] ?? []) delivered.add(i);
  const undelivered = absorbed.filter((_, k) => !delivered.has(k + 1)).map((a) => a.jobId);
  if (undelivered.length === 0) return;
  deps.log.warn({ jobId, undelivered }, 'answering together failed: these messages answer themselves');
  await deps.turns.clearAnswered(jobId, undelivered);
}
