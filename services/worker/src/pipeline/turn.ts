import { DelayedError } from 'bullmq';
import { LockLost } from '../errors.js';
import { isInboundJobPayload } from '@wxrelay/shared';
import type { Follower } from '../user-turns.js';
import { MAX_ANSWERED_TOGETHER, type AbsorbedMessage, type InboundJobData, type JobContext, type PipelineDeps } from './job.js';
import type { WindowGrant } from './redis-steps.js';

/**
 * Step 1: the user's turn. Replies to one user go out in the order they wrote (user-turns.ts);
 * the job holding the turn also answers the messages waiting behind it (the absorbed set).
 */

/** The job went back to `delayed` until its user's earlier messages are answered. */
export class WaitingForTurn extends DelayedError {}

export type TakenTurn =
  /**
   * This job holds the turn; `absorbed` are the later messages it answers with its own (saved with
   * the plan, or by an earlier attempt); `inbox`: a fetch from the user's inbox would find
   * something (when {@link TurnOptions.peekInbox} asked; else true).
   */
  | { readonly kind: 'turn'; readonly absorbed: readonly AbsorbedMessage[]; readonly inbox: boolean }
  /** An earlier job of the user answered this message with its own and released the turn. */
  | { readonly kind: 'answered'; readonly by: string };

export interface TurnOptions {
  /** The window the job's message opened: recorded in the same command, before the turn is taken. */
  readonly grant?: WindowGrant | undefined;
  /** Passive mode: also find out whether the user's inbox holds anything for a fetch. */
  readonly peekInbox?: boolean;
}

/**
 * Takes the turn, or waits for it: the job goes back to `delayed` (not holding a concurrency slot)
 * and {@link WaitingForTurn} is thrown. One round trip (the steps' start), with the window grant.
 *
 * Answering a backlog together. WeChat counts every customer-service message sent after the
 * user's latest message against that message's window (5 in 48 h), so when a user wrote several
 * times while a backlog built up, answering each message on its own charged the replies to the
 * early ones to the window of the latest one, and the sixth reply was refused (no quota left). So
 * the job holding the turn answers the messages waiting behind it too, in one go: their answers
 * are packed into as few messages as fit, the quota is reserved once for all of them, and each
 * of those jobs completes without sending once it gets its turn (its marker, set with the plan:
 * plan.ts). The set chosen here is kept in memory until then: nothing depends on it before (a retry
 * chooses again), and it is written atomically with the markers that name its jobs.
 */
export async function takeTurn(deps: PipelineDeps, ctx: JobContext, opts: TurnOptions = {}): Promise<TakenTurn> {
  const { job, progress } = ctx;
  // Who waits behind is asked only while the answer is not planned and no set was chosen yet.
  const choosing = progress.current.parts === undefined && progress.current.absorbed === undefined;
  // A retried dead letter released its turn when it failed and no new `added` entry registers it:
  // it registers itself here, as of now (behind the user's messages already there, not ahead of
  // the one holding the turn). Registration keeps the first score, so later attempts keep the place.
  const score = ctx.retried ? deps.now() : job.timestamp;
  // Passive answers are one per message (each goes back in its own request): none answered together.
  const together = deps.answers?.mode !== 'passive';
  const turn = await deps.steps.start(ctx, {
    score,
    followers: choosing && together ? MAX_ANSWERED_TOGETHER - 1 : 0,
    ...(opts.grant === undefined ? {} : { grant: opts.grant }),
    ...(opts.peekInbox === true ? { peekInbox: true } : {}),
  });
  if (turn.kind === 'wait') {
    const base = deps.turnRetryDelayMs ?? 250;
    const delay = Math.min(base * 8, base * 2 ** Math.min(job.attemptsStarted, 3)) + Math.floor(Math.random() * base);
    await job.moveToDelayed(deps.now() + delay, ctx.token);
    throw new WaitingForTurn();
  }
  if (turn.kind === 'answered') return { kind: 'answered', by: turn.by };
  if (choosing && turn.followers.length > 0) {
    const chosen = chooseAbsorbed(deps, ctx.openid, turn.followers);
    // Saved with the plan, with the markers (or with a slow answer, which also saves it).
    if (chosen.length > 0) progress.keep({ ...progress.current, absorbed: chosen });
  }
  return { kind: 'turn', absorbed: progress.current.absorbed ?? [], inbox: turn.inbox };
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

/**
 * The job is done with its turn: the next job of the user may go (and is woken, in the same
 * command). `withCompletion`: the job succeeded and BullMQ completes it next; the release is sent
 * in that round trip (when the worker supports it) rather than on its own. A failure of that send
 * is logged (the next job's take drops a finished head anyway, once its wait is over).
 */
export async function releaseTurn(deps: PipelineDeps, ctx: Pick<JobContext, 'openid' | 'jobId' | 'token' | 'job' | 'kind'>, withCompletion = false): Promise<void> {
  if (withCompletion && deps.alongCompletion !== undefined) {
    deps.alongCompletion(ctx.job, () =>
      deps.steps.finish(ctx).catch((err: unknown) => {
        // The job's completion fails the same way: the worker that holds the job now releases it.
        if (err instanceof LockLost) deps.log.warn({ jobId: ctx.jobId, kind: ctx.kind }, 'turn not released: the job\'s lock is another worker\'s now');
        else deps.log.warn({ jobId: ctx.jobId, kind: ctx.kind, err }, 'turn not released; the next job of the user takes it once this one is finished');
      }),
    );
    return;
  }
  await deps.steps.finish(ctx);
}
