/** A JSON request body as WeChat reads it: parsed object and its raw text, or the errcode it answers. */
export type JsonBodyResult =
  | { ok: true; value: Record<string, unknown>; raw: string }
  | { ok: false; errcode: 40033 | 44002 | 47001 };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads a POST body the way WeChat's JSON endpoints do: nothing → 44002 `empty post data`; bytes
 * that are not UTF-8 → 40033 `invalid charset`; not a JSON object → 47001 `data format error`.
 * With `rejectUnicodeEscapes`, a `\uXXXX` escape of a non-ASCII code point anywhere in the text is
 * 40033 too (docs/wechat-protocol.md §9.1: the real API wants raw UTF-8, "不能包含\uxxxx格式的字符").
 */
export function readJsonBody(body: Buffer | undefined, options: { rejectUnicodeEscapes: boolean }): JsonBodyResult {
  if (body === undefined || body.length === 0) return { ok: false, errcode: 44002 };
  let raw: string;
  try {
    raw = utf8.decode(body);
  } catch {
    return { ok: false, errcode: 40033 };
  }
  if (raw.trim() === '') return { ok: false, errcode: 44002 };
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return { ok: false, errcode: 47001 };
  }
  if (!isRecord(value)) return { ok: false, errcode: 47001 };
  if (options.rejectUnicodeEscapes && hasNonAsciiEscape(raw)) return { ok: false, errcode: 40033 };
  return { ok: true, value, raw };
}

/**
 * True when valid JSON text holds a `\uXXXX` escape of a code point ≥ 0x80. Walks escapes in
 * order so an escaped backslash followed by `u00e9` (the six characters `\u00e9`) is not one.
 */
export function hasNonAsciiEscape(jsonText: string): boolean {
  for (let i = jsonText.indexOf('\\'); i !== -1; i = jsonText.indexOf('\\', i)) {
    if (jsonText[i + 1] === 'u') {
      const codePoint = Number.parseInt(jsonText.slice(i + 2, i + 6), 16);
      if (codePoint >= 0x80) return true;
      i += 6;
    } else {
      i += 2;
    }
  }
  return false;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
