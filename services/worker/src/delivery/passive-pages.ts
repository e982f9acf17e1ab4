import type { PassiveReply } from '@wxrelay/shared/protocol';
import type { Reply } from '../wechat/messages.js';
import { splitText, utf8Bytes } from './chunk-text.js';

/**
 * Answers as passive replies (the XML body of WeChat's HTTP request, one message per request):
 * the handlers' customer-service messages mapped to the passive types, long texts paged.
 * docs/wechat-protocol.md §7.
 */

export interface PageOptions {
  /** Largest text page in UTF-8 bytes, marker included (PASSIVE_PAGE_BYTES). */
  readonly pageBytes: number;
  /** Ends every page but the last, on a line of its own (PASSIVE_MORE_MARKER). */
  readonly moreMarker: string;
}

/**
 * The passive form of a customer-service message; undefined for the types a passive reply cannot
 * carry (mpnews, mpnewsarticle, wxcard, miniprogrampage). A menu becomes its text.
 */
export function toPassive(reply: Reply): PassiveReply | undefined {
  switch (reply.msgtype) {
    case 'text':
      return { kind: 'text', content: reply.text.content };
    case 'image':
      return { kind: 'image', mediaId: reply.image.media_id };
    case 'voice':
      return { kind: 'voice', mediaId: reply.voice.media_id };
    case 'video': {
      const v = reply.video;
      return { kind: 'video', mediaId: v.media_id, ...(v.title === undefined ? {} : { title: v.title }), ...(v.description === undefined ? {} : { description: v.description }) };
    }
    case 'music': {
      const m = reply.music;
      return {
        kind: 'music',
        thumbMediaId: m.thumb_media_id,
        ...(m.title === undefined ? {} : { title: m.title }),
        ...(m.description === undefined ? {} : { description: m.description }),
        musicUrl: m.musicurl,
        hqMusicUrl: m.hqmusicurl,
      };
    }
    case 'news': {
      const a = reply.news.articles[0];
      if (a === undefined) return undefined;
      return { kind: 'news', articles: [{ title: a.title, ...(a.description === undefined ? {} : { description: a.description }), url: a.url, ...(a.picurl === undefined ? {} : { picUrl: a.picurl }) }] };
    }
    case 'msgmenu': {
      const m = reply.msgmenu;
      const lines = [m.head_content, ...m.list.map((o) => o.content), m.tail_content].filter((l) => l !== '');
      return lines.length === 0 ? undefined : { kind: 'text', content: lines.join('\n') };
    }
    case 'mpnews':
    case 'mpnewsarticle':
    case 'wxcard':
    case 'miniprogrampage':
      return undefined;
  }
}

/**
 * Every page of an answer, in order, each a JSON {@link PassiveReply}: texts split to fit
 * `pageBytes` with the marker on every page but the last of the whole answer. Messages a passive
 * reply cannot carry are left out (`dropped` counts them).
 */
export function passivePages(replies: readonly Reply[], opts: PageOptions): { pages: string[]; dropped: number } {
  const suffix = `\n${opts.moreMarker}`;
  // Every page but the last carries the marker: pages cut at `room` always have space for it.
  const room = Math.max(64, opts.pageBytes - utf8Bytes(suffix));
  const passive = replies.map(toPassive);
  const kept = passive.filter((p): p is PassiveReply => p !== undefined);
  const pages: PassiveReply[] = [];
  for (const [i, p] of kept.entries()) {
    const lastReply = i === kept.length - 1;
    if (p.kind !== 'text' || (lastReply && utf8Bytes(p.content) <= opts.pageBytes)) pages.push(p);
    else for (const chunk of splitText(p.content, room)) pages.push({ kind: 'text', content: chunk });
  }
  return {
    pages: pages.map((p, i) => JSON.stringify(i < pages.length - 1 && p.kind === 'text' ? { ...p, content: `${p.content}${suffix}` } : p)),
    dropped: passive.length - kept.length,
  };
}

/**
 * The one passive page an answer fits in (auto mode), or undefined when it needs more than one
 * message or a type a passive reply cannot carry: it then goes by the customer-service API whole.
 * `[]`: nothing to say.
 */
export function singlePage(replies: readonly Reply[], pageBytes: number): string[] | undefined {
  if (replies.length === 0) return [];
  if (replies.length > 1) return undefined;
  const p = toPassive(replies[0]!);
  if (p === undefined || (p.kind === 'text' && utf8Bytes(p.content) > pageBytes)) return undefined;
  return [JSON.stringify(p)];
}
