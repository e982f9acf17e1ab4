import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadVectors } from '../test-support/vectors.js';
import { parseXml, parseXmlGeneral } from './xml-parse.js';
import { scanFlatXml } from './xml-fast.js';

/** What the general parser says: the fields, or the error code. */
function general(xml: string): unknown {
  try {
    return { ok: parseXmlGeneral(xml) };
  } catch (err) {
    return { error: (err as { code?: string }).code };
  }
}

/** The fast path may decline (undefined); when it answers, it must answer exactly as the general parser. */
function expectAgreement(xml: string): void {
  const fast = scanFlatXml(xml);
  if (fast === undefined) return;
  expect(general(xml), JSON.stringify(xml).slice(0, 200)).toEqual({ ok: fast });
}

const vectors = loadVectors() as unknown as { xml_samples: { id: string; xml: string }[] };

describe('scanFlatXml', () => {
  it.each(vectors.xml_samples.map((s) => [s.id, s.xml] as const))('agrees with the general parser on %s', (_id, xml) => {
    expectAgreement(xml);
  });

  it('takes the common flat messages (text, image, location, events without nesting)', () => {
    const taken = vectors.xml_samples.filter((s) => scanFlatXml(s.xml) !== undefined).map((s) => s.id);
    for (const id of ['msg-text', 'msg-image', 'msg-location', 'evt-subscribe', 'evt-click']) expect(taken).toContain(id);
  });

  it('declines nested, attributed, commented, declared, entity-bearing and repeated documents', () => {
    const declined = [
      '<xml><A><B>1</B></A></xml>',
      '<xml a="1"><A>1</A></xml>',
      '<xml><A b="1">1</A></xml>',
      '<xml><!-- c --><A>1</A></xml>',
      '<!DOCTYPE xml><xml><A>1</A></xml>',
      '<xml><A>a &amp; b</A></xml>',
      '<xml><A>1</A><A>2</A></xml>',
      '<xml><item>1</item></xml>',
      '<xml><__proto__>1</__proto__></xml>',
      '<xml><A>1\r\n</A></xml>',
      '<xml><A>a<![CDATA[x]]></A></xml>',
      '<xml><A> a <![CDATA[x]]></A></xml>',
      '<xml><A><![CDATA[x]]>b</A></xml>',
      '<xml><A><![CDATA[x]]> b <![CDATA[y]]></A></xml>',
      '<xml><A>\r\n<![CDATA[x]]></A></xml>',
      '<xml><A><![CDATA[x]]>x/A></xml>',
      '<xml><A><![CDATA[x]]> x/A></xml>',
      '<xml><A>1</B></xml>',
      '<xml><A>1</A>',
      '<xml><A>1</A></xml>trailing',
      '<root><A>1</A></root>',
      '<xml><A/></xml>',
      '<xml><A>\u0001</A></xml>',
      '',
    ];
    for (const xml of declined) expect(scanFlatXml(xml), xml).toBeUndefined();
  });

  it('reads split CDATA (an escaped ]]>) and keeps text exactly', () => {
    const fields = scanFlatXml('<xml>\n  <Content><![CDATA[ a ]]]]><![CDATA[> b ]]></Content>\n  <MsgId>6054768590064713728</MsgId>\n</xml>');
    expect(fields).toEqual({ Content: ' a ]]> b ', MsgId: '6054768590064713728' });
    expectAgreement('<xml>\n  <Content><![CDATA[ a ]]]]><![CDATA[> b ]]></Content>\n  <MsgId>6054768590064713728</MsgId>\n</xml>');
  });

  it('reads whitespace-only text beside CDATA as layout: the CDATA content is the value', () => {
    const xml = '<xml> <MsgType> <![CDATA[event]]> </MsgType>\n<Content>\n  <![CDATA[ a ]]>\t<![CDATA[b ]]>\n</Content><N> </N></xml>';
    expect(scanFlatXml(xml)).toEqual({ MsgType: 'event', Content: ' a b ', N: ' ' });
    expectAgreement(xml);
  });

  it('never disagrees with the general parser on generated documents (differential property)', () => {
    const name = fc.constantFrom('ToUserName', 'FromUserName', 'Content', 'MsgId', 'A', 'item', 'B.c', '_x', '1bad', 'a b');
    const text = fc.string({ unit: 'grapheme', maxLength: 12 });
    const rawText = fc.constantFrom('', ' ', '0123', 'a&b', 'x]]>y', '<', '\r\n', '\t', 'é', '\u0000', '&lt;');
    const ws = fc.constantFrom('', ' ', '\n', '\n  ', '\t');
    const value = fc.oneof(
      text.map((t) => `<![CDATA[${t.replaceAll(']]>', ']]]]><![CDATA[>')}]]>`),
      rawText,
      fc.tuple(text, text).map(([a, b]) => `<![CDATA[${a.replaceAll(']]>', '')}]]><![CDATA[${b.replaceAll(']]>', '')}]]>`),
      fc.constantFrom('<N>1</N>', ' <![CDATA[x]]>', '<![CDATA[unterminated'),
      fc.tuple(ws, text, ws, fc.constantFrom('', '<![CDATA[y]]>', ' <![CDATA[]]>'), ws).map(
        ([a, t, b, more, c]) => `${a}<![CDATA[${t.replaceAll(']]>', '')}]]>${b}${more}${c}`,
      ),
      fc.constantFrom(' <![CDATA[x]]>\r\n', 'a <![CDATA[x]]>', '<![CDATA[x]]> b', '\n<![CDATA[x]]>&#32;', '<![CDATA[x]]>x'),
    );
    const element = fc.tuple(ws, name, value).map(([w, n, v]) => `${w}<${n}>${v}</${n}>`);
    const doc = fc.tuple(fc.constantFrom('', '<?xml version="1.0"?>', ' '), fc.array(element, { maxLength: 6 }), ws, fc.constantFrom('', '\n', 'x')).map(
      ([head, els, w, tail]) => `${head}<xml>${els.join('')}${w}</xml>${tail}`,
    );
    fc.assert(fc.property(doc, (xml) => expectAgreement(xml)), { numRuns: 3000 });
  });

  it('is what parseXml uses, and parseXml still refuses what the general parser refuses', () => {
    expect(parseXml('<xml><A><![CDATA[1]]></A></xml>')).toEqual({ A: '1' });
    expect(() => parseXml('<xml><A>1</B></xml>')).toThrow(expect.objectContaining({ code: 'WX_ERR_XML' }));
  });
});
