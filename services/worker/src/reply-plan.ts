import { DEFAULT_CHUNK_BYTES, DEFAULT_CUT_NOTICE, endWithCutNotice, splitText } from './chunk-text.js';
import { reply, type Reply } from './cs-messages.js';

export interface ReplyPlanOptions {
  readonly maxBytes?: number;
  readonly cutNotice?: string;
}

/** Every message `replies` would take: long texts split into chunks, other types one each. */
export function expandReplies(replies: readonly Reply[], opts: ReplyPlanOptions = {}): Reply[] {
  const maxBytes = opts.maxBytes ?? DEFAULT_CHUNK_BYTES;
  return replies.flatMap((r): Reply[] => (r.msgtype === 'text' ? splitText(r.text.content, maxBytes).map((c) => reply.text(c)) : [r]));
}

/**
 * The messages to send within `allowed` (the quota the ledger granted). When everything does
 * not fit, the last message sent is a text that ends with the cut notice: the last allowed text
 * chunk, shortened to make room, or the notice alone in place of a non-text message.
 */
export function fitReplies(replies: readonly Reply[], allowed: number, opts: ReplyPlanOptions = {}): { parts: Reply[]; cut: boolean } {
  const maxBytes = opts.maxBytes ?? DEFAULT_CHUNK_BYTES;
  const notice = opts.cutNotice ?? DEFAULT_CUT_NOTICE;
  const all = expandReplies(replies, opts);
  if (all.length <= allowed) return { parts: all, cut: false };
  if (allowed <= 0) return { parts: [], cut: true };
  const kept = all.slice(0, allowed - 1);
  const last = all[allowed - 1];
  const tail = reply.text(last?.msgtype === 'text' ? endWithCutNotice(last.text.content, maxBytes, notice) : notice.trim());
  return { parts: [...kept, tail], cut: true };
}
