import { describe, expect, it } from 'vitest';
import { loadVectors } from '../test-support/vectors.js';
import { buildReplyXml, cdata, parseReplyXml, stripXmlInvalidChars, type PassiveReply, type ReplyAddress } from './reply.js';
import { parseXml } from './xml-parse.js';
import { atPath, codeOf } from '../test-support/xml-paths.js';

type XmlSample = {
  readonly id: string;
  readonly kind: 'message' | 'event' | 'reply';
  readonly msgType?: string;
  readonly xml: string;
  readonly fields: Readonly<Record<string, string>>;
};

const vectors = loadVectors() as ReturnType<typeof loadVectors> & {
  readonly xml_samples: readonly XmlSample[];
  readonly cdata_escape: readonly { readonly input: string; readonly expected: string }[];
};

const toUser = { toUserName: 'toUser', fromUserName: 'fromUser', createTime: 12345678 } as const;
const touser = { toUserName: 'touser', fromUserName: 'fromuser', createTime: 1399197672 } as const;

/** The reply (and addressing) each reply-* vector shows. */
const EXPECTED: Readonly<Record<string, { readonly address: ReplyAddress; readonly reply: PassiveReply }>> = {
  'reply-text': { address: toUser, reply: { kind: 'text', content: '你好' } },
  'reply-text-multiline-cdata-escape': {
    address: toUser,
    reply: { kind: 'text', content: '第一行\n第二行 ]]> <a href="https://www.qq.com">链接</a>' },
  },
  'reply-image': { address: toUser, reply: { kind: 'image', mediaId: 'media_id' } },
  'reply-voice': { address: toUser, reply: { kind: 'voice', mediaId: 'media_id' } },
  'reply-video': { address: toUser, reply: { kind: 'video', mediaId: 'media_id', title: 'title', description: 'description' } },
  'reply-music': {
    address: toUser,
    reply: {
      kind: 'music',
      title: 'TITLE',
      description: 'DESCRIPTION',
      musicUrl: 'MUSIC_Url',
      hqMusicUrl: 'HQ_MUSIC_Url',
      thumbMediaId: 'media_id',
    },
  },
  'reply-news': {
    address: toUser,
    reply: { kind: 'news', articles: [{ title: 'title1', description: 'description1', picUrl: 'picurl', url: 'url' }] },
  },
  'reply-transfer-customer-service': { address: touser, reply: { kind: 'transfer_customer_service' } },
  'reply-transfer-customer-service-to-account': {
    address: touser,
    reply: { kind: 'transfer_customer_service', kfAccount: 'test1@test' },
  },
};



describe('cdata', () => {
  it.each(vectors.cdata_escape.map((v) => [JSON.stringify(v.input), v] as const))('cdata_escape %s', (_title, v) => {
    expect(cdata(v.input)).toBe(v.expected);
  });

  it('strips characters XML forbids and keeps TAB, LF, CR and surrogate pairs', () => {
    const input = 'a\u0000\u0001\u0008b\u000B\u000C\u000E\u001Fc\t\n\rd\uFFFE\uFFFFe\uD83D\uDE00f\uD800g\uDC00h';
    expect(stripXmlInvalidChars(input)).toBe('abc\t\n\rde\uD83D\uDE00fgh');
    expect(cdata(input)).toBe('<![CDATA[abc\t\n\rde\uD83D\uDE00fgh]]>');
  });

  it('escapes a ]]> that only appears once control characters are removed', () => {
    expect(cdata(']]\u0000>')).toBe('<![CDATA[]]]]><![CDATA[>]]>');
  });
});

const replySamples = vectors.xml_samples.filter((s) => s.kind === 'reply');

describe('reply-* vectors', () => {
  it('has an expectation for every reply vector', () => {
    expect(replySamples.map((s) => s.id).sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  it.each(replySamples.map((s) => [s.id, s] as const))('%s', (id, s) => {
    const expected = EXPECTED[id];
    if (expected === undefined) throw new Error(`no expectation for ${id}`);
    const built = buildReplyXml(expected.reply, expected.address);

    expect(built).toBe(s.xml); // byte-exact, layout included
    for (const [path, value] of Object.entries(s.fields)) {
      expect(atPath(parseXml(built), path), path).toBe(value);
    }
    expect(parseXml(built)).toEqual(parseXml(s.xml));
    expect(parseReplyXml(s.xml)).toEqual({ ...expected.address, reply: expected.reply });
  });
});

describe('buildReplyXml', () => {
  const article = { title: 't' };

  it('accepts up to 8 news articles', () => {
    const articles = Array.from({ length: 8 }, (_, i) => ({ title: `t${i}`, url: `https://e.com/${i}` }));
    const xml = buildReplyXml({ kind: 'news', articles }, toUser);
    expect(parseXml(xml)['ArticleCount']).toBe('8');
    expect(parseReplyXml(xml).reply).toEqual({ kind: 'news', articles });
  });

  const refused: readonly (readonly [string, PassiveReply, ReplyAddress])[] = [
    ['news without articles', { kind: 'news', articles: [] }, toUser],
    ['news with 9 articles', { kind: 'news', articles: Array.from({ length: 9 }, () => article) }, toUser],
    ['negative createTime', { kind: 'text', content: 'x' }, { ...toUser, createTime: -1 }],
    ['fractional createTime', { kind: 'text', content: 'x' }, { ...toUser, createTime: 1.5 }],
  ];
  it.each(refused)('refuses %s (WX_ERR_PARAM)', (_title, reply, address) => {
    expect(codeOf(() => buildReplyXml(reply, address))).toBe('WX_ERR_PARAM');
  });

  it('omits absent optional fields', () => {
    const xml = buildReplyXml({ kind: 'video', mediaId: 'm' }, toUser);
    expect(xml).not.toContain('Title');
    expect(parseReplyXml(xml).reply).toEqual({ kind: 'video', mediaId: 'm' });
  });

  it('escapes addressing too', () => {
    const address = { toUserName: 'o]]>x', fromUserName: 'gh_<&>', createTime: 0 };
    expect(parseReplyXml(buildReplyXml({ kind: 'text', content: '' }, address))).toEqual({
      ...address,
      reply: { kind: 'text', content: '' },
    });
  });
});

describe('parseReplyXml refusals (WX_ERR_XML)', () => {
  const text = buildReplyXml({ kind: 'text', content: 'hi' }, toUser);
  const news = buildReplyXml({ kind: 'news', articles: [{ title: 't' }] }, toUser);
  it.each([
    ['the literal success body', 'success'],
    ['an empty body', ''],
    ['an event (not a reply type)', text.replace('[text]', '[event]')],
    ['text without Content', text.replace(/<Content>.*<\/Content>/, '')],
    ['image without Image', text.replace('[text]', '[image]')],
    ['ArticleCount not matching the items', news.replace('<ArticleCount>1<', '<ArticleCount>2<')],
    ['non-digit CreateTime', text.replace('12345678', 'soon')],
  ])('%s', (_title, xml) => {
    expect(codeOf(() => parseReplyXml(xml))).toBe('WX_ERR_XML');
  });
});
