import Type, { type Static } from 'typebox';

/**
 * Customer-service message bodies (`POST /cgi-bin/message/custom/send`, docs/wechat-protocol.md §9.1).
 * A {@link Reply} is a body without its recipient: what handlers and reply rules produce. The
 * schemas double as the validator of the rules file, so a rule's reply is exactly a WeChat body.
 *
 * @see https://developers.weixin.qq.com/doc/service/api/customer/message/api_sendcustommessage
 */

const NonEmpty = Type.String({ minLength: 1 });

export const TextReply = Type.Object({ msgtype: Type.Literal('text'), text: Type.Object({ content: NonEmpty }) });
export const ImageReply = Type.Object({ msgtype: Type.Literal('image'), image: Type.Object({ media_id: NonEmpty }) });
export const VoiceReply = Type.Object({ msgtype: Type.Literal('voice'), voice: Type.Object({ media_id: NonEmpty }) });
export const VideoReply = Type.Object({
  msgtype: Type.Literal('video'),
  video: Type.Object({
    media_id: NonEmpty,
    /** Reported to cause errors by some accounts (docs/wechat-protocol.md §9.1): only sent when given. */
    thumb_media_id: Type.Optional(NonEmpty),
    title: Type.Optional(Type.String()),
    description: Type.Optional(Type.String()),
  }),
});
export const MusicReply = Type.Object({
  msgtype: Type.Literal('music'),
  music: Type.Object({
    title: Type.Optional(Type.String()),
    description: Type.Optional(Type.String()),
    musicurl: NonEmpty,
    hqmusicurl: NonEmpty,
    thumb_media_id: NonEmpty,
  }),
});
/** One article only: more gives 45008 (docs/wechat-protocol.md §9.1). */
export const NewsReply = Type.Object({
  msgtype: Type.Literal('news'),
  news: Type.Object({
    articles: Type.Array(
      Type.Object({ title: NonEmpty, description: Type.Optional(Type.String()), url: NonEmpty, picurl: Type.Optional(Type.String()) }),
      { minItems: 1, maxItems: 1 },
    ),
  }),
});
export const MpnewsReply = Type.Object({ msgtype: Type.Literal('mpnews'), mpnews: Type.Object({ media_id: NonEmpty }) });
export const MpnewsArticleReply = Type.Object({ msgtype: Type.Literal('mpnewsarticle'), mpnewsarticle: Type.Object({ article_id: NonEmpty }) });
export const MsgmenuReply = Type.Object({
  msgtype: Type.Literal('msgmenu'),
  msgmenu: Type.Object({
    head_content: Type.String(),
    list: Type.Array(Type.Object({ id: NonEmpty, content: NonEmpty }), { minItems: 1 }),
    tail_content: Type.String(),
  }),
});
export const WxcardReply = Type.Object({ msgtype: Type.Literal('wxcard'), wxcard: Type.Object({ card_id: NonEmpty }) });
export const MiniprogrampageReply = Type.Object({
  msgtype: Type.Literal('miniprogrampage'),
  miniprogrampage: Type.Object({ title: NonEmpty, appid: NonEmpty, pagepath: NonEmpty, thumb_media_id: NonEmpty }),
});

export const Reply = Type.Union([
  TextReply,
  ImageReply,
  VoiceReply,
  VideoReply,
  MusicReply,
  NewsReply,
  MpnewsReply,
  MpnewsArticleReply,
  MsgmenuReply,
  WxcardReply,
  MiniprogrampageReply,
]);

/** A customer-service message without its recipient. */
export type Reply = Static<typeof Reply>;
export type ReplyType = Reply['msgtype'];
export type TextReply = Static<typeof TextReply>;

/** The body of one `custom/send` call. */
export type CustomMessage = Reply & {
  readonly touser: string;
  /** Send as this customer-service account instead of the default (docs/wechat-protocol.md §9.1). */
  readonly customservice?: { readonly kf_account: string };
};

/**
 * Control characters other than `\n` and `\t` would be serialised as `\u00XX`, which WeChat
 * refuses with 40033 (docs/wechat-protocol.md §9.1).
 */
export function sanitizeText(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '').replace(/\r\n?/g, '\n');
}

/** Typed builders, one per message type of docs/wechat-protocol.md §9.1. */
export const reply = {
  text: (content: string): Static<typeof TextReply> => ({ msgtype: 'text', text: { content: sanitizeText(content) } }),
  image: (mediaId: string): Static<typeof ImageReply> => ({ msgtype: 'image', image: { media_id: mediaId } }),
  voice: (mediaId: string): Static<typeof VoiceReply> => ({ msgtype: 'voice', voice: { media_id: mediaId } }),
  video: (v: { mediaId: string; thumbMediaId?: string; title?: string; description?: string }): Static<typeof VideoReply> => ({
    msgtype: 'video',
    video: {
      media_id: v.mediaId,
      ...(v.thumbMediaId === undefined ? {} : { thumb_media_id: v.thumbMediaId }),
      ...(v.title === undefined ? {} : { title: v.title }),
      ...(v.description === undefined ? {} : { description: v.description }),
    },
  }),
  music: (m: { title?: string; description?: string; musicUrl: string; hqMusicUrl: string; thumbMediaId: string }): Static<typeof MusicReply> => ({
    msgtype: 'music',
    music: {
      ...(m.title === undefined ? {} : { title: m.title }),
      ...(m.description === undefined ? {} : { description: m.description }),
      musicurl: m.musicUrl,
      hqmusicurl: m.hqMusicUrl,
      thumb_media_id: m.thumbMediaId,
    },
  }),
  news: (a: { title: string; description?: string; url: string; picUrl?: string }): Static<typeof NewsReply> => ({
    msgtype: 'news',
    news: {
      articles: [
        {
          title: a.title,
          ...(a.description === undefined ? {} : { description: a.description }),
          url: a.url,
          ...(a.picUrl === undefined ? {} : { picurl: a.picUrl }),
        },
      ],
    },
  }),
  mpnews: (mediaId: string): Static<typeof MpnewsReply> => ({ msgtype: 'mpnews', mpnews: { media_id: mediaId } }),
  mpnewsarticle: (articleId: string): Static<typeof MpnewsArticleReply> => ({ msgtype: 'mpnewsarticle', mpnewsarticle: { article_id: articleId } }),
  msgmenu: (m: { head?: string; options: readonly { id: string; content: string }[]; tail?: string }): Static<typeof MsgmenuReply> => ({
    msgtype: 'msgmenu',
    msgmenu: {
      head_content: sanitizeText(m.head ?? ''),
      list: m.options.map((o) => ({ id: o.id, content: sanitizeText(o.content) })),
      tail_content: sanitizeText(m.tail ?? ''),
    },
  }),
  wxcard: (cardId: string): Static<typeof WxcardReply> => ({ msgtype: 'wxcard', wxcard: { card_id: cardId } }),
  miniprogrampage: (p: { title: string; appId: string; pagePath: string; thumbMediaId: string }): Static<typeof MiniprogrampageReply> => ({
    msgtype: 'miniprogrampage',
    miniprogrampage: { title: p.title, appid: p.appId, pagepath: p.pagePath, thumb_media_id: p.thumbMediaId },
  }),
} as const;

/** Addresses `body` to `touser`, optionally as a given customer-service account. */
export function customMessage(touser: string, body: Reply, opts: { kfAccount?: string } = {}): CustomMessage {
  return {
    touser,
    ...body,
    ...(opts.kfAccount === undefined ? {} : { customservice: { kf_account: opts.kfAccount } }),
  };
}
