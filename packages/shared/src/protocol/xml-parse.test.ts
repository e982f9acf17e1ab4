import { describe, expect, it } from 'vitest';
import { isWxError } from '../errors.js';
import { xmlSample } from '../test-support/vectors.js';
import { codeOf } from '../test-support/xml-paths.js';
import { parseInboundMessage } from './inbound.js';
import { parseXml, parseXmlGeneral } from './xml-parse.js';

const TEXT = xmlSample('msg-text');

describe('parseXml values', () => {
  const wrap = (inner: string): string => `<xml>${inner}</xml>`;

  it('never coerces numbers: 0123 stays "0123"', () => {
    expect(parseXml(wrap('<Content>0123</Content><N>1e3</N><B>true</B>'))).toEqual({ Content: '0123', N: '1e3', B: 'true' });
  });

  it('never trims text', () => {
    expect(parseXml(wrap('<Content><![CDATA[ hi ]]></Content><T>  x  </T>'))).toEqual({ Content: ' hi ', T: '  x  ' });
  });

  it('decodes predefined entities and character references outside CDATA only', () => {
    expect(parseXml(wrap('<A>a &lt;b&gt; &amp; &quot;&apos; &#20320;&#x1F600;</A><B><![CDATA[&amp;]]></B>'))).toEqual({
      A: 'a <b> & "\' 你😀',
      B: '&amp;',
    });
  });

  it('ignores layout, comments and the XML declaration; reads CRLF as LF', () => {
    const xml = '<?xml version="1.0" encoding="UTF-8"?>\r\n<!-- hi -->\r\n<xml>\r\n  <A>1</A>\r\n  <B><![CDATA[x\r\ny]]></B>\r\n</xml>\r\n';
    expect(parseXml(xml)).toEqual({ A: '1', B: 'x\ny' });
  });

  it('keeps nested structure with item/List always arrays', () => {
    expect(parseXml(wrap('<L><item><X>1</X></item></L><List><T>a</T></List><E/><F></F>'))).toEqual({
      L: { item: [{ X: '1' }] },
      List: [{ T: 'a' }],
      E: '',
      F: '',
    });
  });

  it('reads whitespace-only text beside CDATA as layout, in both parsers', () => {
    const cases: readonly (readonly [string, string])[] = [
      ['<MsgType> <![CDATA[event]]> </MsgType>', 'event'],
      ['<A>\n    <![CDATA[ x ]]>\n  </A>', ' x '],
      ['<A>\t<![CDATA[x]]>  <![CDATA[y]]>\n</A>', 'xy'],
      ['<A> <![CDATA[a ]]]]><![CDATA[> b]]> </A>', 'a ]]> b'],
      ['<A> <![CDATA[]]> </A>', ''],
      ['<A>\r\n<![CDATA[x]]>\r\n</A>', 'x'],
    ];
    for (const [inner, value] of cases) {
      const expected = { [inner.slice(1, inner.indexOf('>'))]: value };
      expect(parseXmlGeneral(wrap(inner)), inner).toEqual(expected);
      expect(parseXml(wrap(inner)), inner).toEqual(expected);
    }
  });

  it('keeps whitespace when there is no CDATA, and text that is not only whitespace beside CDATA, as before', () => {
    for (const parse of [parseXml, parseXmlGeneral]) {
      expect(parse(wrap('<A> </A><B>\n</B>'))).toEqual({ A: ' ', B: '\n' });
      expect(parse(wrap('<A>a <![CDATA[b]]></A>'))).toEqual({ A: 'a b' });
      expect(parse(wrap('<A> a<![CDATA[b]]></A>'))).toEqual({ A: ' ab' });
      // Text after a CDATA section is still mixed content, refused as it was.
      expect(codeOf(() => parse(wrap('<A><![CDATA[b]]> c</A>')))).toBe('WX_ERR_XML');
    }
  });

  it('leaves layout beside CDATA alone where the element holds more than CDATA (comment, child element)', () => {
    expect(parseXmlGeneral(wrap('<A> <!-- c --><![CDATA[x]]></A>'))).toEqual({ A: ' x' });
    expect(parseXmlGeneral(wrap('<A><B>1</B> <![CDATA[x]]></A>'))).toEqual({ A: { B: '1', '#text': 'x' } });
  });

  it('accepts DOCTYPE-looking user text inside CDATA', () => {
    const xml = TEXT.replace('this is a test', '<!DOCTYPE html><!ENTITY x "y"> ]]&gt;');
    const msg = parseInboundMessage(xml);
    expect(msg.kind === 'text' && msg.content).toBe('<!DOCTYPE html><!ENTITY x "y"> ]]&gt;');
  });

  it('returns {} for an empty <xml/> root', () => {
    expect(parseXml('<xml/>')).toEqual({});
    expect(parseXml('<xml>\n</xml>')).toEqual({});
  });
});

describe('refused documents (WX_ERR_XML)', () => {
  const billionLaughs =
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">' +
    '<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]><xml><Content>&lol2;</Content></xml>';
  const cases: readonly (readonly [string, string])[] = [
    ['empty string', ''],
    ['whitespace only', ' \n '],
    ['plain text', 'success'],
    ['binary garbage', '\u0000\u0001\u00ff\u00fe\ufffd<\u0002>\u0003'],
    ['JSON', '{"ToUserName":"x"}'],
    ['truncated in a value', TEXT.slice(0, TEXT.indexOf('this is'))],
    ['truncated before </xml>', TEXT.slice(0, TEXT.lastIndexOf('</xml>'))],
    ['truncated in the closing tag', TEXT.slice(0, -2)],
    ['mismatched tags', '<xml><A>1</B></xml>'],
    ['unterminated CDATA', '<xml><A><![CDATA[x</A></xml>'],
    ['wrong root', TEXT.replace('<xml>', '<foo>').replace('</xml>', '</foo>')],
    ['two roots', `${TEXT}${TEXT}`],
    ['text after the root', `${TEXT}trailing`],
    ['DOCTYPE with entities (billion laughs)', billionLaughs],
    ['DOCTYPE without entities', `<!DOCTYPE xml>${TEXT}`],
    ['lower-case doctype', `<!doctype xml>${TEXT}`],
    ['<!ENTITY alone', TEXT.replace('<Content>', '<!ENTITY x SYSTEM "file:///etc/passwd"><Content>')],
    ['external entity reference', '<xml><A>&xxe;</A></xml>'],
    ['character reference to NUL', '<xml><A>&#0;</A></xml>'],
    ['raw ampersand', '<xml><A>a & b</A></xml>'],
    ['mixed content', '<xml>text<A>1</A></xml>'],
    ['text-only root', '<xml>hello</xml>'],
    ['__proto__ element', '<xml><__proto__><A>1</A></__proto__></xml>'],
  ];

  it.each(cases)('%s', (_title, xml) => {
    expect(codeOf(() => parseXml(xml))).toBe('WX_ERR_XML');
    expect(codeOf(() => parseInboundMessage(xml))).toBe('WX_ERR_XML');
  });

  it('never echoes document content in the message', () => {
    try {
      parseInboundMessage(TEXT.replace('<MsgId>1234567890123456</MsgId>', '<MsgId>SECRET-openid</MsgId>'));
      expect.unreachable();
    } catch (err) {
      expect(isWxError(err, 'WX_ERR_XML')).toBe(true);
      expect((err as Error).message).toContain('MsgId');
      expect((err as Error).message).not.toContain('SECRET');
    }
  });
});
