import { DEFAULT_CHUNK_BYTES, DEFAULT_CUT_NOTICE, endWithCutNotice, splitText, utf8Bytes } from './chunk-text.js';
import { reply, type Reply } from '../wechat/messages.js';

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
  return cutParts(expandReplies(replies, opts), allowed, opts);
}

/** {@link fitReplies} for messages already within `maxBytes` each (expanded or packed). */
export function cutParts(all: readonly Reply[], allowed: number, opts: ReplyPlanOptions = {}): { parts: Reply[]; cut: boolean } {
  const maxBytes = opts.maxBytes ?? DEFAULT_CHUNK_BYTES;
  const notice = opts.cutNotice ?? DEFAULT_CUT_NOTICE;
  if (all.length <= allowed) return { parts: [...all], cut: false };
  if (allowed <= 0) return { parts: [], cut: true };
  const kept = all.slice(0, allowed - 1);
  const last = all[allowed - 1];
  const tail = reply.text(last?.msgtype === 'text' ? endWithCutNotice(last.text.content, maxBytes, notice) : notice.trim());
  return { parts: [...kept, tail], cut: true };
}

/** Between two answers packed into one text. */
export const ANSWER_SEPARATOR = '\n\n';

/**
 * The answers to several messages of one user (in order) as few customer-service messages as fit:
 * each answer expanded as {@link expandReplies} does, then a text that starts an answer is appended
 * to the previous text part (after a blank line) when the two fit in `maxBytes`. Non-text replies
 * keep their own part, and an answer's own chunks are never merged with each other. `carriers[p]`
 * lists the answers (indexes into `answers`) part `p` carries some of.
 */
export function packAnswers(answers: readonly (readonly Reply[])[], opts: ReplyPlanOptions = {}): { parts: Reply[]; carriers: number[][] } {
  const maxBytes = opts.maxBytes ?? DEFAULT_CHUNK_BYTES;
  const parts: Reply[] = [];
  const carriers: number[][] = [];
  for (const [index, replies] of answers.entries()) {
    for (const [k, r] of expandReplies(replies, opts).entries()) {
      const last = parts.at(-1);
      const lastCarriers = carriers.at(-1);
      if (k === 0 && r.msgtype === 'text' && last?.msgtype === 'text' && lastCarriers !== undefined && !lastCarriers.includes(index)) {
        const joined = `${last.text.content}${ANSWER_SEPARATOR}${r.text.content}`;
        if (utf8Bytes(joined) <= maxBytes) {
          parts[parts.length - 1] = reply.text(joined);
          lastCarriers.push(index);
          continue;
        }
      }
      parts.push(r);
      carriers.push([index]);
    }
  }
  return { parts, carriers };
}
