/**
 * Splitting a long answer into customer-service text messages. WeChat documents no maximum for
 * customer-service text (overflow gives 45002); 2048 UTF-8 bytes is the safe size
 * (docs/wechat-protocol.md §9.1), and every chunk costs one message of the user's quota (§9.3).
 */

export const DEFAULT_CHUNK_BYTES = 2048;

/** Ends the last chunk when an answer needed more messages than the quota allows. */
export const DEFAULT_CUT_NOTICE = '\n…（回复过长，后面的内容已省略）';

const segmenter = new Intl.Segmenter('zh', { granularity: 'grapheme' });
const encoder = new TextEncoder();

export function utf8Bytes(text: string): number {
  return encoder.encode(text).length;
}

/**
 * Boundary kinds, best first: paragraph, line, sentence end (Chinese and Latin punctuation,
 * closing quotes allowed), then any whitespace. A boundary is used only when it keeps at least
 * half of the chunk, so a chunk is never wasted on a short fragment; failing all of them, the
 * text is cut between two grapheme clusters (never inside a character or an emoji sequence).
 */
const BOUNDARIES: readonly RegExp[] = [/\n\s*\n/g, /\n/g, /[。！？!?；;…]+["'”’」』）)]*\s*|[.](?=\s)\s*/g, /\s+/g];

function bestBreak(window: string): number | undefined {
  const minimum = Math.floor(window.length / 2);
  for (const re of BOUNDARIES) {
    let last: number | undefined;
    for (const m of window.matchAll(re)) {
      const end = m.index + m[0].length;
      if (end >= minimum) last = end;
    }
    if (last !== undefined) return last;
  }
  return undefined;
}

/** The longest prefix of `text` (whole graphemes) that fits in `maxBytes`, as a UTF-16 length. */
function fittingPrefix(text: string, maxBytes: number): number {
  let bytes = 0;
  let length = 0;
  for (const { segment } of segmenter.segment(text)) {
    const b = utf8Bytes(segment);
    if (bytes + b > maxBytes) break;
    bytes += b;
    length += segment.length;
  }
  if (length === 0) {
    // One grapheme larger than the budget (absurdly long combining sequence): cut by code point.
    for (const ch of text) {
      const b = utf8Bytes(ch);
      if (bytes + b > maxBytes) break;
      bytes += b;
      length += ch.length;
    }
  }
  return length;
}

/**
 * Splits `text` into chunks of at most `maxBytes` UTF-8 bytes each, on paragraph, then sentence,
 * then word, then character boundaries. Whitespace at a cut is dropped; no chunk is empty.
 */
export function splitText(text: string, maxBytes: number = DEFAULT_CHUNK_BYTES): string[] {
  if (maxBytes < 4) throw new RangeError('maxBytes must hold at least one character (4 bytes)');
  const chunks: string[] = [];
  let rest = text.trim();
  while (rest !== '') {
    if (utf8Bytes(rest) <= maxBytes) {
      chunks.push(rest);
      break;
    }
    const fit = fittingPrefix(rest, maxBytes);
    const cut = bestBreak(rest.slice(0, fit)) ?? fit;
    const chunk = rest.slice(0, cut).trimEnd();
    if (chunk !== '') chunks.push(chunk);
    rest = rest.slice(cut).trimStart();
  }
  return chunks;
}

/** `text` shortened (on a boundary) so that `text + notice` fits in `maxBytes`. */
export function endWithCutNotice(text: string, maxBytes: number = DEFAULT_CHUNK_BYTES, notice: string = DEFAULT_CUT_NOTICE): string {
  const head = splitText(text, Math.max(4, maxBytes - utf8Bytes(notice)))[0] ?? '';
  return `${head}${notice}`;
}
