import { cutParts, expandReplies, packAnswers } from '../delivery/reply-plan.js';
import { GiveUp } from '../errors.js';
import type { InboundJobPayload } from '@wxrelay/shared';
import type { JobContext, PipelineDeps, ReplyProgress } from './job.js';
import { windowGrant, type WindowGrant } from './redis-steps.js';

/**
 * Step 4: the parts to send, against the user's customer-service quota (the ledger). The answers
 * are packed (several messages' answers share a text when they fit) and chunked, the quota is
 * reserved once for all of them, and what does not fit is cut with a notice. Saved before the
 * first send (that write also says "part 0 is starting"), in the command that reserves the quota,
 * records the windows of the messages answered together and marks their jobs (the steps' plan:
 * one round trip, only while the attempt holds the job's lock).
 */
export async function planParts(deps: PipelineDeps, ctx: JobContext): Promise<void> {
  const { progress, jobId } = ctx;
  const together = progress.current.absorbed ?? [];
  // The absorbed messages' triggers are later than this one's: the ledger then counts against
  // the latest window, as WeChat does, and the reservation covers every answer.
  const grants = together.map((a) => windowGrant(a.payload)).filter((g): g is WindowGrant => g !== undefined);
  const answers = [progress.current.replies ?? [], ...together.map((a) => a.replies ?? [])];
  const opts = { maxBytes: deps.chunkBytes, cutNotice: deps.cutNotice };
  const packed = together.length === 0 ? { parts: expandReplies(answers[0] ?? [], opts), carriers: undefined } : packAnswers(answers, opts);
  const wanted = packed.parts.length;
  const base = progress.current;
  const planned = (allowed: number): ReplyProgress => {
    const { parts, cut } = cutParts(packed.parts, allowed, opts);
    const carriers = packed.carriers?.slice(0, parts.length);
    return { ...base, parts, cut, ...(carriers === undefined ? {} : { carriers }) };
  };
  if (wanted === 0 && together.length === 0) {
    // Nothing to send and no job to mark: nothing a retry could repeat, no write needed.
    progress.keep(planned(0));
    return;
  }
  const allowed = await deps.steps.plan(ctx, { grants, want: wanted, planned, absorbed: together.map((a) => a.jobId), now: deps.now() });
  if (wanted > 0 && allowed === 0) {
    ctx.events.quotaRefused('none');
    throw new GiveUp('WX_ERR_NO_QUOTA', 'no customer-service quota left for this user (window closed or used up, per the ledger)');
  }
  if (progress.current.cut === true) {
    ctx.events.quotaRefused('cut');
    deps.log.info({ jobId, kind: ctx.kind, wanted, allowed }, 'answer cut to fit the customer-service quota');
  }
}

/** Records in the ledger the window `payload`'s message opened, if it opens one (a message that takes no turn). */
export async function grantWindow(deps: PipelineDeps, payload: InboundJobPayload): Promise<void> {
  const g = windowGrant(payload);
  if (g !== undefined) await deps.ledger.grant(payload.message.fromUserName, g.trigger, g.at, g.triggerId);
}
