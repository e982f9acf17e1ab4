import { isRecord } from './json-body.js';

/** The `msgtype`s `/cgi-bin/message/custom/send` accepts (docs/wechat-protocol.md §9.1). */
export const CUSTOM_MESSAGE_TYPES = [
  'text',
  'image',
  'voice',
  'video',
  'music',
  'news',
  'mpnews',
  'mpnewsarticle',
  'msgmenu',
  'wxcard',
  'miniprogrampage',
] as const;

export type CustomMessageType = (typeof CUSTOM_MESSAGE_TYPES)[number];

export type CustomMessageCheck =
  | { ok: true; touser: string; msgtype: CustomMessageType }
  | { ok: false; errcode: number };

export interface CustomMessageLimits {
  /**
   * Longest accepted `text.content`, UTF-8 bytes; longer answers 45002. The real limit is
   * undocumented (docs/wechat-protocol.md §9.1 [UNCERTAIN]; 2047/2048 bytes reported), 2048 by default.
   */
  maxTextBytes: number;
}

/** Required string fields of each body object; the empty string counts as missing for media ids. */
const REQUIRED: Readonly<Record<Exclude<CustomMessageType, 'text' | 'news' | 'msgmenu'>, readonly string[]>> = {
  image: ['media_id'],
  voice: ['media_id'],
  video: ['media_id'],
  music: ['musicurl', 'hqmusicurl', 'thumb_media_id'],
  mpnews: ['media_id'],
  mpnewsarticle: ['article_id'],
  wxcard: ['card_id'],
  miniprogrampage: ['title', 'appid', 'pagepath', 'thumb_media_id'],
};

/** Optional fields that, when present, must be strings. */
const OPTIONAL: Readonly<Partial<Record<CustomMessageType, readonly string[]>>> = {
  video: ['thumb_media_id', 'title', 'description'],
  music: ['title', 'description'],
  msgmenu: ['head_content', 'tail_content'],
};

function isCustomMessageType(value: unknown): value is CustomMessageType {
  return typeof value === 'string' && (CUSTOM_MESSAGE_TYPES as readonly string[]).includes(value);
}

function hasOptionalStrings(obj: Record<string, unknown>, keys: readonly string[]): boolean {
  return keys.every((key) => obj[key] === undefined || typeof obj[key] === 'string');
}

function checkNews(news: Record<string, unknown>): number {
  const { articles } = news;
  if (!Array.isArray(articles)) return 47001;
  if (articles.length === 0) return 44003;
  if (articles.length > 1) return 45008;
  const keys = ['title', 'description', 'url', 'picurl'];
  return articles.every((a) => isRecord(a) && hasOptionalStrings(a, keys)) ? 0 : 47001;
}

function checkMenu(menu: Record<string, unknown>): number {
  const { list } = menu;
  if (!Array.isArray(list) || list.length === 0) return 47001;
  const itemsOk = list.every((item) => isRecord(item) && typeof item.id === 'string' && typeof item.content === 'string');
  return itemsOk ? 0 : 47001;
}

function checkPart(msgtype: CustomMessageType, part: Record<string, unknown>, limits: CustomMessageLimits): number {
  if (!hasOptionalStrings(part, OPTIONAL[msgtype] ?? [])) return 47001;
  switch (msgtype) {
    case 'text': {
      if (typeof part.content !== 'string') return 47001;
      if (part.content === '') return 44004;
      return Buffer.byteLength(part.content, 'utf8') > limits.maxTextBytes ? 45002 : 0;
    }
    case 'news':
      return checkNews(part);
    case 'msgmenu':
      return checkMenu(part);
    case 'image':
    case 'voice':
    case 'video':
    case 'music':
    case 'mpnews':
    case 'mpnewsarticle':
    case 'wxcard':
    case 'miniprogrampage': {
      for (const key of REQUIRED[msgtype]) {
        const value = part[key];
        if (typeof value !== 'string') return 47001;
        if (value === '' && key.endsWith('media_id')) return 40007;
      }
      return 0;
    }
  }
}

/**
 * Checks a custom/send body the way WeChat answers it (docs/wechat-protocol.md §9.1, §10): `touser` missing → 40003;
 * `msgtype` missing or unknown → 40008; the `<msgtype>` object missing or a field of the wrong
 * type → 47001; empty text → 44004; empty media id → 40007; no article → 44003; more than one →
 * 45008; text over `maxTextBytes` → 45002. `customservice.kf_account` and `aimsgcontext.msgid`
 * are accepted when they are strings.
 */
export function checkCustomMessage(body: Record<string, unknown>, limits: CustomMessageLimits): CustomMessageCheck {
  const { touser, msgtype } = body;
  if (typeof touser !== 'string' || touser === '') return { ok: false, errcode: 40003 };
  if (!isCustomMessageType(msgtype)) return { ok: false, errcode: 40008 };
  const part = body[msgtype];
  if (!isRecord(part)) return { ok: false, errcode: 47001 };
  for (const [extra, key] of [['customservice', 'kf_account'], ['aimsgcontext', 'msgid']] as const) {
    const value = body[extra];
    if (value !== undefined && !(isRecord(value) && typeof value[key] === 'string')) return { ok: false, errcode: 47001 };
  }
  const errcode = checkPart(msgtype, part, limits);
  return errcode === 0 ? { ok: true, touser, msgtype } : { ok: false, errcode };
}
