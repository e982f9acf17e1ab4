import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The protocol test vectors, kept in the repository as data (`packages/shared/test-vectors/`).
 * The same path from `src/test-support/` and from a compiled `dist/test-support/`.
 */
export const VECTORS_PATH = fileURLToPath(new URL('../../test-vectors/wechat-vectors.json', import.meta.url));

export type PlainSignatureVector = {
  readonly id: string;
  readonly token: string;
  readonly timestamp: string;
  readonly nonce: string;
  readonly expected: string;
  readonly sortedConcat?: string;
  readonly echostr?: string;
};

export type MsgSignatureVector = {
  readonly id: string;
  readonly token: string;
  readonly timestamp: string;
  readonly nonce: string;
  readonly encrypt: string;
  readonly expected: string;
};

export type AesKeyVector = {
  readonly encodingAESKey: string;
  readonly keyHex: string;
  readonly ivHex: string;
};

export type DecryptVector = {
  readonly id: string;
  readonly encodingAESKey: string;
  readonly appid: string;
  readonly encrypt: string;
  readonly expected: {
    readonly randomAscii: string;
    readonly msgByteLength: number;
    readonly msg: string;
    readonly appid: string;
    readonly padLength: number;
    readonly cipherByteLength?: number;
    readonly fullStrLength?: number;
  };
};

export type EncryptVector = {
  readonly id: string;
  readonly encodingAESKey: string;
  readonly appid: string;
  readonly randomHex: string;
  readonly msg: string;
  readonly expected: string;
  readonly expectedPadLength?: number;
  readonly expectedMsgByteLength?: number;
  readonly expectedFullStrLength?: number;
  readonly expectedCipherByteLength?: number;
};

export type ReplyEnvelopeVector = {
  readonly id: string;
  readonly token: string;
  readonly encodingAESKey: string;
  readonly appid: string;
  readonly timestamp: string;
  readonly nonce: string;
  /** The random prefix; these vectors give it only as 16 ASCII characters. */
  readonly randomAscii: string;
  readonly plaintext: string;
  readonly expectedXml: string;
  readonly expectedEncrypt?: string;
  readonly expectedMsgSignature?: string;
};

export type HttpRequestVector = {
  readonly id: string;
  readonly method: 'GET' | 'POST';
  readonly token: string;
  readonly encodingAESKey?: string;
  readonly appid?: string;
  readonly query: Readonly<Record<string, string>>;
  readonly body?: string;
  readonly randomAscii?: string;
  readonly expectResponseBody?: string;
  readonly expectDecrypted?: string;
  readonly expectFields?: Readonly<Record<string, string>>;
};

/** The parts of the vectors file the protocol tests use. */
export type Vectors = {
  readonly plain_signature: readonly PlainSignatureVector[];
  readonly msg_signature: readonly MsgSignatureVector[];
  readonly aes_key: readonly AesKeyVector[];
  readonly decrypt: readonly DecryptVector[];
  readonly encrypt: readonly EncryptVector[];
  readonly reply_envelope: readonly ReplyEnvelopeVector[];
  readonly http_requests: readonly HttpRequestVector[];
};

const LISTS = [
  'plain_signature',
  'msg_signature',
  'aes_key',
  'decrypt',
  'encrypt',
  'reply_envelope',
  'http_requests',
] as const satisfies readonly (keyof Vectors)[];

let cached: Vectors | undefined;

/** Loads and shape-checks the test vectors (once per test file). Throws rather than letting tests skip. */
export function loadVectors(): Vectors {
  if (cached !== undefined) return cached;
  const path = VECTORS_PATH;
  const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (typeof parsed !== 'object' || parsed === null) throw new Error(`${path}: not a JSON object`);
  for (const list of LISTS) {
    const value: unknown = (parsed as Record<string, unknown>)[list];
    if (!Array.isArray(value) || value.length === 0) throw new Error(`${path}: "${list}" must be a non-empty array`);
  }
  cached = parsed as Vectors;
  return cached;
}

/** The XML of the `xml_samples` entry `id`. */
export function xmlSample(id: string): string {
  const samples = (loadVectors() as Vectors & { readonly xml_samples?: readonly { readonly id: string; readonly xml: string }[] }).xml_samples;
  const found = samples?.find((s) => s.id === id);
  if (found === undefined) throw new Error(`no xml_samples entry ${id}`);
  return found.xml;
}

/** The request body, or the decrypted plaintext, of the `http_requests` entry `id`. */
export function httpBody(id: string, key: 'body' | 'expectDecrypted'): string {
  const value = loadVectors().http_requests.find((r) => r.id === id)?.[key];
  if (value === undefined) throw new Error(`no http_requests entry ${id}.${key}`);
  return value;
}
