import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildReplyXml, parseReplyXml, stripXmlInvalidChars, type PassiveReply } from './reply.js';

/** What an XML parser hands back for text we wrote: forbidden characters gone, CR/CRLF read as LF. */
const expectedText = (text: string): string => stripXmlInvalidChars(text).replace(/\r\n?/g, '\n');

/** Any UTF-16 code unit (lone surrogates included), any code point, and the characters that break naive XML. */
const tricky = fc.string({
  unit: fc.oneof(
    fc.constantFrom(']]>', ']]', ']', '>', '<', '&', '&amp;', '<![CDATA[', '<!DOCTYPE x>', '😀', '\n', '\r\n', '\r', ' ', '\t', '\u0000', '\u001F', '\uFFFE', '\uD800', '\uDC00'),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
    fc.integer({ min: 0, max: 0xffff }).map((unit) => String.fromCharCode(unit)),
  ),
  maxLength: 40,
});

const address = fc.record({ toUserName: tricky, fromUserName: tricky, createTime: fc.nat() });

/** Expected parse of a reply: every string field normalised like {@link expectedText}. */
function normalise<T>(value: T): T {
  if (typeof value === 'string') return expectedText(value) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => normalise(v)) as T;
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, k === 'kind' ? v : normalise(v)])) as T;
  }
  return value;
}

const reply: fc.Arbitrary<PassiveReply> = fc.oneof(
  fc.record({ kind: fc.constant('text' as const), content: tricky }),
  fc.record({ kind: fc.constantFrom('image' as const, 'voice' as const), mediaId: tricky }),
  fc.record({ kind: fc.constant('video' as const), mediaId: tricky, title: tricky, description: tricky }, { requiredKeys: ['kind', 'mediaId'] }),
  fc.record(
    {
      kind: fc.constant('music' as const),
      title: tricky,
      description: tricky,
      musicUrl: tricky,
      hqMusicUrl: tricky,
      thumbMediaId: tricky,
    },
    { requiredKeys: ['kind', 'thumbMediaId'] },
  ),
  fc.record({
    kind: fc.constant('news' as const),
    articles: fc.array(
      fc.record({ title: tricky, description: tricky, picUrl: tricky, url: tricky }, { requiredKeys: ['title'] }),
      { minLength: 1, maxLength: 8 },
    ),
  }),
  fc.record({ kind: fc.constant('transfer_customer_service' as const), kfAccount: tricky }, { requiredKeys: ['kind'] }),
);

describe('passive reply round trip (build → parse)', () => {
  it('text replies keep arbitrary unicode content, ]]>, markup, emoji, newlines and edge spaces', () => {
    fc.assert(
      fc.property(tricky, address, (content, to) => {
        const parsed = parseReplyXml(buildReplyXml({ kind: 'text', content }, to));
        expect(parsed.reply).toEqual({ kind: 'text', content: expectedText(content) });
        expect(parsed.toUserName).toBe(expectedText(to.toUserName));
        expect(parsed.fromUserName).toBe(expectedText(to.fromUserName));
        expect(parsed.createTime).toBe(to.createTime);
      }),
      { numRuns: 500 },
    );
  });

  it('every reply kind round-trips', () => {
    fc.assert(
      fc.property(reply, address, (r, to) => {
        expect(parseReplyXml(buildReplyXml(r, to))).toEqual({ ...normalise(to), reply: normalise(r) });
      }),
      { numRuns: 300 },
    );
  });

  it('a leading/trailing-space and ]]>-only content survives exactly', () => {
    for (const content of ['  x  ', ']]>', ' ]]>]]> ', '\n\n', '']) {
      expect(parseReplyXml(buildReplyXml({ kind: 'text', content }, { toUserName: 'o', fromUserName: 'gh', createTime: 1 })).reply).toEqual({
        kind: 'text',
        content,
      });
    }
  });
});
