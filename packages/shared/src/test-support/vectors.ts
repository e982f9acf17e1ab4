import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `vectors.json` lives in a `shared/` folder beside the repository clone (…/main, …/shared). */
const VECTORS_RELATIVE = join('shared', 'vectors.json');

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

/** The parts of `vectors.json` the protocol tests use. */
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

/**
 * Where `vectors.json` is: `$WXRELAY_VECTORS` when set, else the first `shared/vectors.json` found
 * walking up from this file (it sits beside the repository root, e.g. /work/main → /work/shared).
 */
export function findVectorsPath(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env['WXRELAY_VECTORS'];
  if (fromEnv !== undefined && fromEnv !== '') {
    const path = resolve(fromEnv);
    if (!existsSync(path)) throw new Error(`WXRELAY_VECTORS points at ${path}, which does not exist`);
    return path;
  }
  const start = dirname(fileURLToPath(import.meta.url));
  const tried: string[] = [];
  for (let dir = start; ; dir = dirname(dir)) {
    const candidate = join(dir, VECTORS_RELATIVE);
    tried.push(candidate);
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) break;
  }
  throw new Error(
    `vectors.json not found. Set WXRELAY_VECTORS to its path, or place the "shared" folder beside the repository clone. Tried:\n  ${tried.join('\n  ')}`,
  );
}

let cached: Vectors | undefined;

/** Loads and shape-checks the test vectors (once per test file). Throws rather than letting tests skip. */
export function loadVectors(): Vectors {
  if (cached !== undefined) return cached;
  const path = findVectorsPath();
  const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (typeof parsed !== 'object' || parsed === null) throw new Error(`${path}: not a JSON object`);
  for (const list of LISTS) {
    const value: unknown = (parsed as Record<string, unknown>)[list];
    if (!Array.isArray(value) || value.length === 0) throw new Error(`${path}: "${list}" must be a non-empty array`);
  }
  cached = parsed as Vectors;
  return cached;
}
