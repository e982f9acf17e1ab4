/**
 * The XML reader of the protocol core: a WeChat document in, the children of its `<xml>` root out.
 *
 * Flat pushes (nearly all of them) go through the scanner in `xml-fast.ts`; anything else through
 * the validating general parser here. Both read a document the same way. Pure: strings in, an
 * {@link XmlObject} or a `WX_ERR_XML` {@link WxError} out; error messages name a position, never
 * document content.
 *
 * docs/wechat-protocol.md §3.2 (envelope), §3.4 (parsing rules).
 *
 * @module
 */
import { XMLParser, XMLValidator, type EntityDecoderOptions } from 'fast-xml-parser';
import { WxError } from '../errors.js';
import type { XmlObject, XmlValue } from './messages.js';
import { xmlError } from './xml-fields.js';
import { scanFlatXml } from './xml-fast.js';

// ---------------------------------------------------------------------------------------------
// Entities: only XML's five predefined entities and character references. DOCTYPE is refused
// before parsing, so no declared entity can ever reach the decoder; an unknown name is an error
// (a well-formed document cannot contain one). Stateless, so one instance serves every parse and
// fast-xml-parser does not build its own decoder (with HTML tables) per call.

const PREDEFINED: Readonly<Record<string, string>> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
const ENTITY_RE = /&(?:#(\d{1,7})|#x([0-9A-Fa-f]{1,6})|([A-Za-z][A-Za-z0-9]*));/g;

function isXmlChar(cp: number): boolean {
  return (
    cp === 0x9 ||
    cp === 0xa ||
    cp === 0xd ||
    (cp >= 0x20 && cp <= 0xd7ff) ||
    (cp >= 0xe000 && cp <= 0xfffd) ||
    (cp >= 0x10000 && cp <= 0x10ffff)
  );
}

function decodeEntity(_match: string, dec?: string, hex?: string, name?: string): string {
  if (name !== undefined) {
    const value = PREDEFINED[name];
    if (value === undefined) throw xmlError('undeclared entity reference');
    return value;
  }
  const cp = dec !== undefined ? Number.parseInt(dec, 10) : Number.parseInt(hex ?? '', 16);
  if (!isXmlChar(cp)) throw xmlError('character reference to a character XML forbids');
  return String.fromCodePoint(cp);
}

function decodeEntities(text: string): string {
  return text.includes('&') ? text.replace(ENTITY_RE, decodeEntity) : text;
}

const entityDecoder: EntityDecoderOptions = {
  setExternalEntities: () => undefined,
  addInputEntities: (entities) => {
    if (Object.keys(entities).length > 0) throw xmlError('entity declarations are refused');
  },
  reset: () => undefined,
  decode: decodeEntities,
  setXmlVersion: () => undefined,
};

// ---------------------------------------------------------------------------------------------
// Parser

/** Elements that are always arrays, even when they occur once (`PicList`, `Articles`, subscribe-msg `List`, …). */
const ALWAYS_ARRAY: ReadonlySet<string> = new Set(['item', 'List']);
const WHITESPACE_RE = /^[ \t\r\n]*$/;

let parser: XMLParser | undefined;

function getParser(): XMLParser {
  parser ??= new XMLParser({
    // Keep every value a string: `0123` stays "0123", a 64-bit MsgId stays exact.
    parseTagValue: false,
    parseAttributeValue: false,
    // WeChat sends no attributes; skipping them is also faster.
    ignoreAttributes: true,
    // Never trim user text (CDATA " hi " stays " hi "); layout whitespace between elements is
    // dropped by tagValueProcessor below instead.
    trimValues: false,
    ignoreDeclaration: true,
    ignorePiTags: true,
    isArray: (tagName) => ALWAYS_ARRAY.has(tagName),
    // Called for text of elements that also have child elements with isLeafNode=false: that is
    // indentation, dropped (returning '' stores nothing). Non-blank text there is mixed content,
    // which no WeChat push has.
    tagValueProcessor: (_tagName, value, _path, _hasAttributes, isLeafNode) => {
      if (isLeafNode) return value;
      if (WHITESPACE_RE.test(value)) return '';
      throw xmlError('text beside child elements (mixed content)');
    },
    entityDecoder,
    // Hand callbacks the matcher instead of building a path string for each tag (faster).
    jPath: false,
  });
  return parser;
}

/**
 * Throws unless every `<!` in the document opens a CDATA section or a comment: refuses DOCTYPE,
 * ENTITY and every other DTD declaration (XXE, billion laughs) in any letter case, before the
 * parser sees the document. Text inside CDATA (a user may send `<!DOCTYPE html>`) is skipped.
 */
function refuseDeclarations(xml: string): void {
  let at = xml.indexOf('<!');
  while (at !== -1) {
    if (xml.startsWith('<![CDATA[', at)) {
      const end = xml.indexOf(']]>', at + 9);
      if (end === -1) return; // unterminated: the validator rejects it
      at = xml.indexOf('<!', end + 3);
    } else if (xml.startsWith('<!--', at)) {
      const end = xml.indexOf('-->', at + 4);
      if (end === -1) return;
      at = xml.indexOf('<!', end + 3);
    } else {
      throw xmlError('DOCTYPE and entity declarations are refused');
    }
  }
}

const CDATA_OPEN = '<![CDATA[';

function isLayoutText(xml: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = xml.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x09 && c !== 0x0d) return false;
  }
  return true;
}

/** Index of the `>` closing the tag opened at `lt`, skipping quoted attribute values. */
function endOfTag(xml: string, lt: number): number {
  for (let i = lt + 1; i < xml.length; i++) {
    const c = xml.charCodeAt(i);
    if (c === 0x3e) return i;
    if (c === 0x22 || c === 0x27) {
      const close = xml.indexOf(c === 0x22 ? '"' : "'", i + 1);
      if (close === -1) return -1;
      i = close;
    }
  }
  return -1;
}

/**
 * Drops the whitespace-only text beside CDATA sections in elements whose content is nothing but
 * CDATA sections and whitespace: `<MsgType> <![CDATA[event]]> </MsgType>` (as in WeChat's card
 * event samples) means `event`, not ` event`. Any other text beside CDATA is left as it is, and so
 * is an element without CDATA (`<A> </A>` stays `" "`). This is what the fast path reads too.
 *
 * Runs on a document the validator accepted; returns it unchanged when there is nothing to drop.
 */
function dropLayoutBesideCdata(xml: string): string {
  if (!xml.includes(CDATA_OPEN)) return xml;
  let out = '';
  let copied = 0;
  /** True while the innermost open element has held only CDATA and layout whitespace. */
  let leaf = false;
  let sawCdata = false;
  let layout: number[] = [];
  let i = 0;
  for (;;) {
    const lt = xml.indexOf('<', i);
    if (lt === -1) break;
    if (leaf && lt > i) {
      if (isLayoutText(xml, i, lt)) layout.push(i, lt);
      else leaf = false;
    }
    let next: number;
    if (xml.startsWith(CDATA_OPEN, lt)) {
      const end = xml.indexOf(']]>', lt + CDATA_OPEN.length);
      next = end === -1 ? -1 : end + 3;
      sawCdata = true;
    } else if (xml.charCodeAt(lt + 1) === 0x2f) {
      if (leaf && sawCdata) {
        for (let k = 0; k < layout.length; k += 2) {
          out += xml.slice(copied, layout[k]);
          copied = layout[k + 1] ?? copied;
        }
      }
      const gt = xml.indexOf('>', lt);
      next = gt === -1 ? -1 : gt + 1;
      leaf = false;
    } else if (xml.startsWith('<!--', lt) || xml.startsWith('<?', lt)) {
      const end = xml.indexOf(xml.charCodeAt(lt + 1) === 0x3f ? '?>' : '-->', lt + 2);
      next = end === -1 ? -1 : end + (xml.charCodeAt(lt + 1) === 0x3f ? 2 : 3);
      leaf = false;
    } else {
      const gt = endOfTag(xml, lt);
      next = gt === -1 ? -1 : gt + 1;
      leaf = gt !== -1 && xml.charCodeAt(gt - 1) !== 0x2f;
      sawCdata = false;
      layout = [];
    }
    if (next === -1) return xml; // not well-formed: the validator has refused it already
    i = next;
  }
  return copied === 0 ? xml : out + xml.slice(copied);
}

/**
 * Parses a WeChat XML document and returns the children of its `<xml>` root.
 *
 * Every value is a string (never a number); `item` and `List` elements are always arrays; text is
 * never trimmed; whitespace between elements, and whitespace-only text beside an element's CDATA
 * sections, is ignored. docs/wechat-protocol.md §3.2, §3.4.
 *
 * @throws {@link WxError} `WX_ERR_XML` when the document is empty, not well-formed, declares a
 *   DOCTYPE/entity, has mixed content, or its single root is not `<xml>`.
 */
export function parseXml(xml: string): XmlObject {
  if (xml.length === 0) throw xmlError('empty document');
  // Nearly every push is flat; the scanner reads those exactly as the general parser would.
  return scanFlatXml(xml) ?? parseXmlGeneral(xml);
}

/**
 * {@link parseXml} without the flat fast path: the validating general parser alone. Exported so
 * that tests and benchmarks can hold the two to the same answers.
 */
export function parseXmlGeneral(xml: string): XmlObject {
  if (xml.length === 0) throw xmlError('empty document');
  refuseDeclarations(xml);
  // The parser alone accepts truncated documents and mismatched tags (it returns partial data),
  // so well-formedness is checked first. Positions only: messages must not echo the body.
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    throw xmlError(`not well-formed XML (${valid.err.code} at ${valid.err.line}:${valid.err.col})`);
  }
  let doc: unknown;
  try {
    doc = getParser().parse(dropLayoutBesideCdata(xml));
  } catch (err) {
    if (err instanceof WxError) throw err;
    // The library's messages may quote the document: keep them out of ours.
    throw xmlError('XML parser rejected the document');
  }
  return rootOf(doc);
}

function rootOf(doc: unknown): XmlObject {
  if (typeof doc !== 'object' || doc === null) throw xmlError('no root element');
  const names = Object.keys(doc);
  if (names.length !== 1 || names[0] !== 'xml') throw xmlError('root element must be a single <xml>');
  const root = (doc as { xml: XmlValue }).xml;
  if (typeof root === 'string') {
    if (WHITESPACE_RE.test(root)) return {};
    throw xmlError('<xml> root holds text instead of elements');
  }
  if (Array.isArray(root)) throw xmlError('root element must be a single <xml>');
  return root as XmlObject;
}
