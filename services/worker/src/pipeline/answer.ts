import type { Logger } from '@wxrelay/shared';
import type { Route } from '../replies/router.js';
import type { Reply } from '../wechat/messages.js';
import type { AbsorbedMessage, JobContext, PipelineDeps, ReplyProgress } from './job.js';

/**
 * Step 3: each message's handler, in the user's order (the LLM memory stays in order): this job's
 * own message, then the absorbed ones. An answer already saved by an earlier attempt is not asked
 * for again; a slow handler's answer is saved as soon as it is there, a fast one's with the parts.
 * With `lastSavedByPlan` (the plan is the very next step, and its command writes the answers
 * whatever the quota says), the last handler's answer is left to that write: no write of its own.
 * `showTyping` is called before the first slow handler runs.
 */
export async function runHandlers(deps: PipelineDeps, ctx: JobContext, route: Route, absorbed: readonly AbsorbedMessage[], showTyping: () => void, opts: { readonly lastSavedByPlan?: boolean } = {}): Promise<void> {
  const { progress, jobId, kind } = ctx;
  const pending = [route, ...absorbed.map((a) => deps.router.route(a.payload.message))];
  const answered = (i: number) => (i === 0 ? progress.current.replies : progress.current.absorbed?.[i - 1]?.replies) !== undefined;
  if (pending.some((r, i) => r?.slow === true && !answered(i))) showTyping();
  let last = -1;
  for (const i of pending.keys()) if (!answered(i)) last = i;
  for (const [i, r] of pending.entries()) {
    if (answered(i)) continue;
    const own = i === 0;
    const entry = own ? undefined : absorbed[i - 1];
    const payload = entry?.payload ?? ctx.data;
    const handlerJobId = entry?.jobId ?? jobId;
    let replies: readonly Reply[] = [];
    if (r !== undefined) {
      const started = deps.now();
      let handlerLog: Logger | undefined;
      try {
        replies = await r.handler({
          message: payload.message,
          messageKey: payload.dedupKey,
          // Made only for a handler that logs (the LLM route, on its last attempt).
          get log() {
            return (handlerLog ??= deps.log.child({ jobId: handlerJobId, kind: payload.message.kind }));
          },
          signal: ctx.signal,
          lastAttempt: ctx.lastAttempt,
        });
      } catch (err) {
        if (own) throw err;
        // A later message's handler failed: that message and the ones after it answer
        // themselves (their own jobs retry as they would have). Markers first: a crash
        // between the two leaves a saved set that the retry marks again.
        const dropped = absorbed.slice(i - 1).map((a) => a.jobId);
        deps.log.warn({ jobId, kind, err, dropped }, 'a message answered together failed in its handler; it and the later ones answer themselves');
        await deps.turns.clearAnswered(jobId, dropped);
        // From the current progress, not `absorbed`: the kept messages' answers are in it (an
        // answer taken from the set as it was before the handlers ran would be lost with them).
        await progress.save({ ...progress.current, absorbed: (progress.current.absorbed ?? []).slice(0, i - 1) });
        break;
      }
      ctx.events.handlerAnswered(r.name, deps.now() - started);
    }
    const current = progress.current;
    const next: ReplyProgress = own ? { ...current, replies } : { ...current, absorbed: (current.absorbed ?? []).map((a, k) => (k === i - 1 ? { ...a, replies } : a)) };
    // A slow answer is saved at once; a fast handler's is cheap to redo and is saved with the parts.
    // (An empty answer leaves nothing to plan, and so no plan write: it is saved here.)
    if (r?.slow === true && !(opts.lastSavedByPlan === true && i === last && replies.length > 0)) await progress.save(next);
    else progress.keep(next);
  }
}
