/**
 * Passive replies: the XML a callback may return in its HTTP response (within WeChat's 5 s).
 *
 * Doc: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Passive_user_reply_message.html
 * (docs/wechat-protocol.md §7).
 *
 * @module
 */
import { WxError } from '../errors.js';
import type { XmlObject } from './messages.js';
import { optText, reqText, reqUint, xmlError } from './xml-fields.js';
import { parseXml } from './xml-parse.js';

// XML 1.0 forbids these characters even inside CDATA: C0 controls except TAB/LF/CR, U+FFFE/U+FFFF
// and unpaired surrogates. A reply holding one would be rejected by WeChat's parser.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const XML_INVALID_RE = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** `text` with every character XML 1.0 forbids removed (see {@link cdata}). */
export function stripXmlInvalidChars(text: string): string {
  return text.replace(XML_INVALID_RE, '');
}

/**
 * Wraps `text` in a CDATA section. Every `]]>` becomes `]]]]><![CDATA[>` (the section is closed and
 * reopened), and characters XML forbids (U+0000–U+0008, U+000B, U+000C, U+000E–U+001F, lone
 * surrogates, U+FFFE, U+FFFF) are removed. CR is kept; note that any XML parser reads CR and CRLF
 * back as LF. docs/wechat-protocol.md §7 ("CDATA escaping").
 */
export function cdata(text: string): string {
  return `<![CDATA[${stripXmlInvalidChars(text).replaceAll(']]>', ']]]]><![CDATA[>')}]]>`;
}

/** One article of a `news` reply. */
export interface NewsArticle {
  readonly title: string;
  readonly description?: string;
  /** JPG/PNG; large image 360×200, small 200×200. */
  readonly picUrl?: string;
  readonly url?: string;
}

/** The most articles a `news` reply may hold. WeChat shows only 1 in practice: send exactly 1. */
export const MAX_NEWS_ARTICLES = 8;

/**
 * A passive reply body, discriminated on `kind` (= the reply's `MsgType`). Media replies need a
 * `media_id` from temporary or permanent material. docs/wechat-protocol.md §7.
 */
export type PassiveReply =
  /** Literal LFs render as line breaks; keep it ≤ 2047 UTF-8 bytes. */
  | { readonly kind: 'text'; readonly content: string }
  | { readonly kind: 'image'; readonly mediaId: string }
  | { readonly kind: 'voice'; readonly mediaId: string }
  | { readonly kind: 'video'; readonly mediaId: string; readonly title?: string; readonly description?: string }
  | {
      readonly kind: 'music';
      readonly title?: string;
      readonly description?: string;
      readonly musicUrl?: string;
      readonly hqMusicUrl?: string;
      readonly thumbMediaId: string;
    }
  /**
   * 1 to {@link MAX_NEWS_ARTICLES} articles. The doc allows only 1 in reply to a user message, and
   * since 2018 WeChat drops all but the first everywhere: send exactly 1.
   */
  | { readonly kind: 'news'; readonly articles: readonly NewsArticle[] }
  /** Hands the user's message to 多客服; `kfAccount` targets one agent. Never for events. */
  | { readonly kind: 'transfer_customer_service'; readonly kfAccount?: string };

/** Who a passive reply goes to and when: the inbound `ToUserName`/`FromUserName` swapped. */
export interface ReplyAddress {
  /** The user's OpenID (the inbound `FromUserName`). */
  readonly toUserName: string;
  /** The Official Account's `gh_…` id (the inbound `ToUserName`). */
  readonly fromUserName: string;
  /** Unix seconds. */
  readonly createTime: number;
}

function paramError(message: string): WxError {
  return new WxError('WX_ERR_PARAM', message);
}

type Line = readonly [tag: string, value: string | undefined];

function element(indent: string, [tag, value]: Line): string {
  return value === undefined ? '' : `\n${indent}<${tag}>${cdata(value)}</${tag}>`;
}

function group(tag: string, lines: readonly Line[], indent = '  '): string {
  const inner = `${indent}  `;
  return `\n${indent}<${tag}>${lines.map((line) => element(inner, line)).join('')}\n${indent}</${tag}>`;
}

function body(reply: PassiveReply): string {
  switch (reply.kind) {
    case 'text':
      return element('  ', ['Content', reply.content]);
    case 'image':
      return group('Image', [['MediaId', reply.mediaId]]);
    case 'voice':
      return group('Voice', [['MediaId', reply.mediaId]]);
    case 'video':
      return group('Video', [
        ['MediaId', reply.mediaId],
        ['Title', reply.title],
        ['Description', reply.description],
      ]);
    case 'music':
      return group('Music', [
        ['Title', reply.title],
        ['Description', reply.description],
        ['MusicUrl', reply.musicUrl],
        ['HQMusicUrl', reply.hqMusicUrl],
        ['ThumbMediaId', reply.thumbMediaId],
      ]);
    case 'news': {
      const count = reply.articles.length;
      if (count < 1 || count > MAX_NEWS_ARTICLES) {
        throw paramError(`news reply needs 1 to ${MAX_NEWS_ARTICLES} articles, got ${count}`);
      }
      const items = reply.articles.map((a) =>
        group(
          'item',
          [
            ['Title', a.title],
            ['Description', a.description],
            ['PicUrl', a.picUrl],
            ['Url', a.url],
          ],
          '    ',
        ),
      );
      return `\n  <ArticleCount>${count}</ArticleCount>\n  <Articles>${items.join('')}\n  </Articles>`;
    }
    case 'transfer_customer_service':
      return reply.kfAccount === undefined ? '' : group('TransInfo', [['KfAccount', reply.kfAccount]]);
  }
}

/**
 * Builds the XML of a passive reply, laid out like the official samples (two-space indent, every
 * string in CDATA via {@link cdata}). docs/wechat-protocol.md §7.
 *
 * @throws {@link WxError} `WX_ERR_PARAM` when `createTime` is not a non-negative safe integer or a
 *   news reply has no article or more than {@link MAX_NEWS_ARTICLES}.
 */
export function buildReplyXml(reply: PassiveReply, address: ReplyAddress): string {
  const { createTime } = address;
  if (!Number.isSafeInteger(createTime) || createTime < 0) {
    throw paramError('createTime must be a non-negative integer (Unix seconds)');
  }
  return (
    '<xml>' +
    element('  ', ['ToUserName', address.toUserName]) +
    element('  ', ['FromUserName', address.fromUserName]) +
    `\n  <CreateTime>${createTime}</CreateTime>` +
    element('  ', ['MsgType', reply.kind]) +
    body(reply) +
    '\n</xml>'
  );
}

/** A parsed passive reply with its addressing (see {@link parseReplyXml}). */
export interface ParsedReply extends ReplyAddress {
  readonly reply: PassiveReply;
}

function reqGroup(obj: XmlObject, name: string): XmlObject {
  const value = obj[name];
  if (typeof value === 'object' && !Array.isArray(value)) return value as XmlObject;
  throw xmlError(`${name} must be a single element with children`);
}

/** Copies the present optional fields `[tag, key]` of `from` into `to`. */
function copyOptional(
  to: Record<string, unknown>,
  from: XmlObject,
  parent: string,
  pairs: readonly (readonly [tag: string, key: string])[],
): void {
  for (const [tag, key] of pairs) {
    const value = optText(from, tag, `${parent}.${tag}`);
    if (value !== undefined) to[key] = value;
  }
}

function parseBody(kind: string, f: XmlObject): PassiveReply {
  switch (kind) {
    case 'text':
      return { kind, content: reqText(f, 'Content') };
    case 'image':
    case 'voice': {
      const tag = kind === 'image' ? 'Image' : 'Voice';
      return { kind, mediaId: reqText(reqGroup(f, tag), 'MediaId', `${tag}.MediaId`) };
    }
    case 'video': {
      const video = reqGroup(f, 'Video');
      const reply: { kind: 'video'; mediaId: string; title?: string; description?: string } = {
        kind,
        mediaId: reqText(video, 'MediaId', 'Video.MediaId'),
      };
      copyOptional(reply, video, 'Video', [
        ['Title', 'title'],
        ['Description', 'description'],
      ]);
      return reply;
    }
    case 'music': {
      const music = reqGroup(f, 'Music');
      const reply: Record<string, unknown> & { kind: 'music'; thumbMediaId: string } = {
        kind,
        thumbMediaId: reqText(music, 'ThumbMediaId', 'Music.ThumbMediaId'),
      };
      copyOptional(reply, music, 'Music', [
        ['Title', 'title'],
        ['Description', 'description'],
        ['MusicUrl', 'musicUrl'],
        ['HQMusicUrl', 'hqMusicUrl'],
      ]);
      return reply;
    }
    case 'news': {
      const items = reqGroup(f, 'Articles')['item'] ?? [];
      const list = Array.isArray(items) ? items : [items];
      const articles = list.map((item): NewsArticle => {
        if (typeof item !== 'object' || Array.isArray(item)) throw xmlError('Articles.item must hold elements');
        const fields = item as XmlObject;
        const article: Record<string, unknown> & { title: string } = {
          title: reqText(fields, 'Title', 'Articles.item.Title'),
        };
        copyOptional(article, fields, 'Articles.item', [
          ['Description', 'description'],
          ['PicUrl', 'picUrl'],
          ['Url', 'url'],
        ]);
        return article;
      });
      const count = optText(f, 'ArticleCount', 'ArticleCount');
      if (count !== undefined && count !== String(articles.length)) {
        throw xmlError('ArticleCount does not match the number of Articles.item');
      }
      return { kind, articles };
    }
    case 'transfer_customer_service': {
      if (f['TransInfo'] === undefined) return { kind };
      return { kind, kfAccount: reqText(reqGroup(f, 'TransInfo'), 'KfAccount', 'TransInfo.KfAccount') };
    }
    default:
      throw xmlError('MsgType is not a passive reply type');
  }
}

/**
 * Parses passive-reply XML back into a {@link PassiveReply} and its addressing: the inverse of
 * {@link buildReplyXml} (used by the WeChat simulator). `success` and the empty body are not XML;
 * callers handle them before calling this. docs/wechat-protocol.md §7.
 *
 * @throws {@link WxError} `WX_ERR_XML` when the XML is invalid, a required field is missing, or
 *   `MsgType` is not a reply type.
 */
export function parseReplyXml(xml: string): ParsedReply {
  const f = parseXml(xml);
  const createTime = reqUint(f, 'CreateTime');
  return {
    toUserName: reqText(f, 'ToUserName'),
    fromUserName: reqText(f, 'FromUserName'),
    createTime,
    reply: parseBody(reqText(f, 'MsgType'), f),
  };
}
