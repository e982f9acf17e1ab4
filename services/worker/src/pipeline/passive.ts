import type { InboundMessage } from '@wxrelay/shared/protocol';
import { passivePages, singlePage } from '../delivery/passive-pages.js';
import type { Route } from '../replies/router.js';
import type { AnswerChannel, JobContext, JobResult, PipelineDeps } from './job.js';
import { releaseTurn } from './turn.js';

/**
 * The passive steps (REPLY_MODE passive or auto): the answer is recorded for the gateways rather
 * than sent. The handlers do not know which channel delivers their answer.
 */

/**
 * Which messages fetch a pending answer (passive mode): whatever the user sends (text, image,
 * voice, video, location, link) and a menu click. While the user's inbox holds an answer, such a
 * message is answered with its oldest page and is not itself handled; other events (follow,
 * unfollow, menu links, reports) are handled as usual.
 */
export function fetchesPending(message: InboundMessage): boolean {
  return message.kind !== 'event' || message.event === 'CLICK';
}

/**
 * Passive mode: the user's oldest pending page, recorded as this message's answer, when the inbox
 * holds one (or the placeholder, when that answer is still being computed). True when it did.
 */
export async function fetchPending(deps: PipelineDeps, channel: AnswerChannel, ctx: JobContext): Promise<boolean> {
  const placeholder = JSON.stringify({ kind: 'text', content: channel.placeholder });
  const fetched = await channel.store.fetch(ctx.openid, ctx.jobId, placeholder);
  if (fetched.expired > 0) channel.onExpired?.(fetched.expired);
  if (fetched.kind === 'empty') return false;
  deps.log.info({ jobId: ctx.jobId, kind: ctx.kind, fetched: fetched.kind, ...(fetched.kind === 'fetched' ? { stillWaiting: fetched.waiting } : {}) }, 'message answered from the pending-answer inbox');
  return true;
}

/** Passive mode: the answer, paged, recorded for whichever gateway holds one of WeChat's attempts. */
export async function recordPages(deps: PipelineDeps, channel: AnswerChannel, ctx: JobContext): Promise<number> {
  const { pages, dropped } = passivePages(ctx.progress.current.replies ?? [], channel);
  if (dropped > 0) deps.log.warn({ jobId: ctx.jobId, kind: ctx.kind, dropped }, 'answer messages a passive reply cannot carry (mpnews, wxcard, mini program) were left out');
  await channel.store.record(ctx.jobId, pages);
  return pages.length;
}

/**
 * Auto mode: offers an answer that fits one passive reply to the gateway holding the request.
 * True when the passive channel has it (recorded now or before); false when the customer-service
 * API must deliver it: the gateway stopped holding, or the answer does not fit one reply (several
 * messages, a long text, answers given together), which is then claimed for the API at once.
 */
export async function offerPassively(channel: AnswerChannel, ctx: JobContext): Promise<boolean> {
  const { progress } = ctx;
  const together = (progress.current.absorbed ?? []).length > 0;
  const page = together ? undefined : singlePage(progress.current.replies ?? [], channel.pageBytes);
  const recorded = await channel.store.record(ctx.jobId, page);
  return recorded !== 'cs';
}

/** The answer was recorded for the passive channel: the job is done with its turn. */
export async function completeRecorded(deps: PipelineDeps, ctx: JobContext, route: Route | undefined, parts: number, how: string): Promise<JobResult> {
  await releaseTurn(deps, ctx, true).catch((err: unknown) => deps.log.warn({ jobId: ctx.jobId, kind: ctx.kind, err }, 'turn not released; the next job of the user takes it once this one is finished'));
  deps.log.info({ jobId: ctx.jobId, kind: ctx.kind, ...(route === undefined ? {} : { route: route.name }), parts }, how);
  return { outcome: parts === 0 ? 'no-reply' : 'replied', channel: 'passive', parts, ...(route === undefined ? {} : { route: route.name }) };
}
