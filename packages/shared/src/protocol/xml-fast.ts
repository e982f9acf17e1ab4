/**
 * A fast path for the XML that WeChat actually sends on every message: one `<xml>` root holding
 * flat leaf elements, each either CDATA sections or plain text. It scans the string once, with no
 * tree and no validator pass, which makes it much faster than the general parser (bench/analysis.md).
 *
 * It is deliberately narrow: it returns `undefined` for anything it does not understand exactly
 * (nested elements, attributes, comments, declarations, entities, repeated names, CR characters,
 * control characters, text other than layout whitespace beside CDATA…), and the caller then runs the general, validating
 * parser. So it can only make a document faster, never accept one the general parser refuses or
 * read one differently; a differential test holds it to that.
 *
 * @module
 */
import type { XmlObject } from './messages.js';

const TAG_NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;
/**
 * Names left to the general parser: those that would reach an object's prototype machinery if
 * used as keys, and those it always reads as arrays (`item`, `List`).
 */
const GENERAL_ONLY_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype', 'item', 'List']);
/** CR (parsers normalise it), control characters XML forbids, and U+FFFE/FFFF. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNUSUAL_CHAR_RE = /[\u0000-\u0008\u000b-\u001f\ufffe\uffff]/;

const LT = 0x3c;

function skipWhitespace(xml: string, from: number): number {
  let i = from;
  for (;;) {
    const c = xml.charCodeAt(i);
    if (c === 0x20 || c === 0x0a || c === 0x09) i++;
    else return i;
  }
}

/**
 * Reads a flat WeChat push (`<xml><Name>value</Name>…</xml>`) into its fields, or returns
 * `undefined` when the document is anything else. Never throws.
 */
export function scanFlatXml(xml: string): XmlObject | undefined {
  let i = skipWhitespace(xml, 0);
  if (xml.startsWith('<?xml', i)) {
    const end = xml.indexOf('?>', i);
    if (end === -1) return undefined;
    i = skipWhitespace(xml, end + 2);
  }
  if (!xml.startsWith('<xml>', i)) return undefined;
  i += 5;
  const fields: Record<string, string> = {};
  for (;;) {
    i = skipWhitespace(xml, i);
    if (xml.charCodeAt(i) !== LT) return undefined;
    if (xml.startsWith('</xml>', i)) {
      return skipWhitespace(xml, i + 6) === xml.length ? fields : undefined;
    }
    const gt = xml.indexOf('>', i + 1);
    if (gt === -1) return undefined;
    const name = xml.slice(i + 1, gt);
    if (!TAG_NAME_RE.test(name) || GENERAL_ONLY_NAMES.has(name) || Object.hasOwn(fields, name)) return undefined;
    i = gt + 1;

    let value: string;
    const cdataAt = skipWhitespace(xml, i);
    if (xml.startsWith('<![CDATA[', cdataAt)) {
      // One or more CDATA sections (a `]]>` inside user text is sent split in two). Whitespace
      // around and between them is layout (`<MsgType> <![CDATA[event]]> </MsgType>`), not value.
      value = '';
      i = cdataAt;
      do {
        const end = xml.indexOf(']]>', i + 9);
        if (end === -1) return undefined;
        value += xml.slice(i + 9, end);
        i = skipWhitespace(xml, end + 3);
      } while (xml.startsWith('<![CDATA[', i));
      if (xml.charCodeAt(i) !== LT) return undefined;
    } else {
      const lt = xml.indexOf('<', i);
      if (lt === -1) return undefined;
      value = xml.slice(i, lt);
      // Entities and a stray `]]>` are the general parser's business.
      if (value.includes('&') || value.includes(']]>')) return undefined;
      i = lt;
    }
    if (xml.charCodeAt(i + 1) !== 0x2f || !xml.startsWith(name, i + 2) || xml.charCodeAt(i + 2 + name.length) !== 0x3e) {
      return undefined;
    }
    i += name.length + 3;
    if (UNUSUAL_CHAR_RE.test(value)) return undefined;
    fields[name] = value;
  }
}
