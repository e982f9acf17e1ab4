import { triggerTime, windowTrigger } from '../delivery/ledger.js';
import { cutParts, expandReplies, packAnswers } from '../delivery/reply-plan.js';
import { GiveUp } from '../errors.js';
import type { InboundJobPayload } from '@wxrelay/shared';
import type { JobContext, PipelineDeps } from './job.js';

/**
 * Step 4: the parts to send, against the user's customer-service quota (the ledger). The answers
 * are packed (several messages' answers share a text when they fit) and chunked, the quota is
 * reserved once for all of them, and what does not fit is cut with a notice. Saved before the
 * first send (that write also says "part 0 is starting").
 */
export async function planParts(deps: PipelineDeps, ctx: JobContext): Promise<void> {
  const { progress, openid, jobId } = ctx;
  const together = progress.current.absorbed ?? [];
  // The absorbed messages' triggers are later than this one's: the ledger now counts against
  // the latest window, as WeChat does, and the reservation below covers every answer.
  for (const a of together) await grantWindow(deps, a.payload);
  const answers = [progress.current.replies ?? [], ...together.map((a) => a.replies ?? [])];
  const opts = { maxBytes: deps.chunkBytes, cutNotice: deps.cutNotice };
  const packed = together.length === 0 ? { parts: expandReplies(answers[0] ?? [], opts), carriers: undefined } : packAnswers(answers, opts);
  const wanted = packed.parts.length;
  const allowed = wanted === 0 ? 0 : await deps.ledger.reserve(openid, wanted, jobId, deps.now());
  if (wanted > 0 && allowed === 0) {
    ctx.events.quotaRefused('none');
    throw new GiveUp('WX_ERR_NO_QUOTA', 'no customer-service quota left for this user (window closed or used up, per the ledger)');
  }
  const { parts, cut } = cutParts(packed.parts, allowed, opts);
  if (cut) {
    ctx.events.quotaRefused('cut');
    deps.log.info({ jobId, kind: ctx.kind, wanted, allowed }, 'answer cut to fit the customer-service quota');
  }
  const carriers = packed.carriers?.slice(0, parts.length);
  const planned = { ...progress.current, parts, cut, ...(carriers === undefined ? {} : { carriers }) };
  // Nothing to send: nothing a retry could repeat, no write needed. Otherwise this write also
  // says "part 0 is starting".
  if (parts.length === 0) progress.keep(planned);
  else await progress.save(planned);
}

/** Records in the ledger the window `payload`'s message opened, if it opens one. */
export async function grantWindow(deps: PipelineDeps, payload: InboundJobPayload): Promise<void> {
  const trigger = windowTrigger(payload.message);
  if (trigger !== undefined) await deps.ledger.grant(payload.message.fromUserName, trigger, triggerTime(payload), payload.dedupKey);
}
