import { DelayedError } from 'bullmq';
import { isInboundJobPayload } from '@wxrelay/shared';
import type { Follower } from '../user-turns.js';
import { MAX_ANSWERED_TOGETHER, type AbsorbedMessage, type InboundJobData, type JobContext, type PipelineDeps } from './job.js';

/**
 * Step 1: the user's turn. Replies to one user go out in the order they wrote (user-turns.ts);
 * the job holding the turn also answers the messages waiting behind it (the absorbed set).
 */

/** The job went back to `delayed` until its user's earlier messages are answered. */
export class WaitingForTurn extends DelayedError {}

export type TakenTurn =
  /** This job holds the turn; `absorbed` are the later messages it answers with its own (saved). */
  | { readonly kind: 'turn'; readonly absorbed: readonly AbsorbedMessage[] }
  /** An earlier job of the user answered this message with its own and released the turn. */
  | { readonly kind: 'answered'; readonly by: string };

/**
 * Takes the turn, or waits for it: the job goes back to `delayed` (not holding a concurrency slot)
 * and {@link WaitingForTurn} is thrown.
 *
 * Answering a backlog together. WeChat counts every customer-service message sent after the
 * user's latest message against that message's window (5 in 48 h), so when a user wrote several
 * times while a backlog built up, answering each message on its own charged the replies to the
 * early ones to the window of the latest one, and the sixth reply was refused (no quota left). So
 * the job holding the turn answers the messages waiting behind it too, in one go: their answers
 * are packed into as few messages as fit, the quota is reserved once for all of them, and each
 * of those jobs completes without sending once it gets its turn (its marker, {@link markAbsorbed}).
 */
export async function takeTurn(deps: PipelineDeps, ctx: JobContext): Promise<TakenTurn> {
  const { job, progress } = ctx;
  // Who waits behind is asked only while the answer is not planned and no set was chosen yet.
  const choosing = progress.current.parts === undefined && progress.current.absorbed === undefined;
  // A retried dead letter released its turn when it failed and no new `added` entry registers it:
  // it registers itself here, as of now (behind the user's messages already there, not ahead of
  // the one holding the turn). Registration keeps the first score, so later attempts keep the place.
  const score = ctx.retried ? deps.now() : job.timestamp;
  // Passive answers are one per message (each goes back in its own request): none answered together.
  const together = deps.answers?.mode !== 'passive';
  const turn = await deps.turns.enter(ctx.openid, ctx.jobId, score, choosing && together ? MAX_ANSWERED_TOGETHER - 1 : 0);
  if (turn.kind === 'wait') {
    const base = deps.turnRetryDelayMs ?? 250;
    const delay = Math.min(base * 8, base * 2 ** Math.min(job.attemptsStarted, 3)) + Math.floor(Math.random() * base);
    await job.moveToDelayed(deps.now() + delay, ctx.token);
    throw new WaitingForTurn();
  }
  if (turn.kind === 'answered') return { kind: 'answered', by: turn.by };
  if (choosing && turn.followers.length > 0) {
    const chosen = chooseAbsorbed(deps, ctx.openid, turn.followers);
    // Saved before the markers: a retry knows whom this job marked (and marks them again).
    if (chosen.length > 0) await progress.save({ ...progress.current, absorbed: chosen });
  }
  return { kind: 'turn', absorbed: progress.current.absorbed ?? [] };
}

/**
 * The followers the turn holder answers with its own message: in order, each a valid payload of
 * the same user with a reply to give; one that never had the turn (no progress). A follower that
 * needs no reply is left out (it releases its turn by itself); the first that cannot be absorbed
 * ends the run, so no message is answered before an earlier one.
 */
function chooseAbsorbed(deps: PipelineDeps, openid: string, followers: readonly Follower[]): AbsorbedMessage[] {
  const chosen: AbsorbedMessage[] = [];
  for (const f of followers) {
    if (chosen.length >= MAX_ANSWERED_TOGETHER - 1) break;
    if (!isInboundJobPayload(f.data)) break;
    const { progress, ...payload } = f.data as InboundJobData;
    if (progress !== undefined || payload.message.fromUserName !== openid) break;
    if (deps.router.route(payload.message) === undefined) continue;
    chosen.push({ jobId: f.jobId, payload });
  }
  return chosen;
}

/** Marks the absorbed jobs as answered by this one (again, on a retry: idempotent). */
export async function markAbsorbed(deps: PipelineDeps, ctx: JobContext, absorbed: readonly AbsorbedMessage[]): Promise<void> {
  if (absorbed.length > 0) await deps.turns.markAnswered(ctx.jobId, absorbed.map((a) => a.jobId));
}

/** The job is done with its turn: the next job of the user may go (and is woken). */
export async function releaseTurn(deps: PipelineDeps, ctx: Pick<JobContext, 'openid' | 'jobId'>): Promise<void> {
  const next = await deps.turns.release(ctx.openid, ctx.jobId);
  if (next !== undefined && deps.promote !== undefined) await deps.promote(next).catch(() => undefined);
}
