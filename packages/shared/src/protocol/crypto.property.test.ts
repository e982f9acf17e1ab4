import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isWxError } from '../errors.js';
import { decryptMessage, deriveAesKey, encryptMessage } from './crypto.js';
import { computeMsgSignature, computeSignature, verifyMsgSignature, verifySignature } from './signature.js';

const ALNUM = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'];

/** Any well-formed EncodingAESKey, including ones whose last character has non-zero spare bits. */
const encodingAESKey = fc.string({ unit: fc.constantFrom(...ALNUM), minLength: 43, maxLength: 43 });
/** Any Unicode text: code points over the full range (no lone surrogates) and printable graphemes. */
const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 600 }), fc.string({ unit: 'grapheme', maxLength: 200 }));
const appId = fc.oneof(fc.stringMatching(/^wx[0-9a-f]{16}$/), fc.string({ unit: 'binary', maxLength: 40 }));
const random16 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => Buffer.from(a));

describe('encrypt → decrypt round trip', () => {
  it('recovers message, random prefix and appid for any input', () => {
    fc.assert(
      fc.property(encodingAESKey, text, appId, random16, (k, message, id, random) => {
        const key = deriveAesKey(k);
        const encrypt = encryptMessage(key, message, id, random);
        const unpadded = 20 + Buffer.byteLength(message) + Buffer.byteLength(id);
        expect(Buffer.from(encrypt, 'base64')).toHaveLength((Math.floor(unpadded / 32) + 1) * 32);

        const out = decryptMessage(key, encrypt, id);
        expect(out.message).toBe(message);
        expect(out.appId).toBe(id);
        expect(out.random.equals(random)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses any other appid, with WX_ERR_DECRYPT', () => {
    fc.assert(
      fc.property(encodingAESKey, text, appId, appId, (k, message, id, other) => {
        fc.pre(other !== id);
        const key = deriveAesKey(k);
        const encrypt = encryptMessage(key, message, id);
        expect(() => decryptMessage(key, encrypt, other)).toThrow(expect.objectContaining({ code: 'WX_ERR_DECRYPT' }));
      }),
      { numRuns: 200 },
    );
  });

  it('refuses a different key, with WX_ERR_DECRYPT', () => {
    fc.assert(
      fc.property(encodingAESKey, encodingAESKey, text, appId, (k1, k2, message, id) => {
        const key1 = deriveAesKey(k1);
        const key2 = deriveAesKey(k2);
        fc.pre(!key1.key.equals(key2.key));
        const encrypt = encryptMessage(key1, message, id);
        try {
          decryptMessage(key2, encrypt, id);
          expect.unreachable('decrypted with the wrong key');
        } catch (err) {
          expect(isWxError(err, 'WX_ERR_DECRYPT')).toBe(true);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('never throws anything but WX_ERR_DECRYPT on arbitrary input', () => {
    const key = deriveAesKey('abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG');
    const arbitraryEncrypt = fc.oneof(
      fc.string({ unit: 'binary-ascii', maxLength: 200 }),
      fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a).toString('base64')),
    );
    fc.assert(
      fc.property(arbitraryEncrypt, (encrypt) => {
        try {
          decryptMessage(key, encrypt, 'wx2c2769f8efd9abc2');
          expect.unreachable('random bytes decrypted');
        } catch (err) {
          expect(isWxError(err, 'WX_ERR_DECRYPT')).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
  });
});

/** One signature input: token, timestamp and nonce as WeChat sends them, or any well-formed text. */
const part = fc.oneof(fc.string({ unit: 'grapheme-ascii', maxLength: 32 }), fc.string({ unit: 'binary', maxLength: 32 }));

/**
 * Replaces one code point of `parts[which]` with a different one. The multiset of code points of the
 * concatenation changes, so the sorted concatenation, hence the SHA-1 input, differs.
 */
const changeOneChar = (parts: string[]) =>
  fc
    .record({
      which: fc.nat({ max: parts.length - 1 }),
      position: fc.nat(),
      replacement: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
    })
    .filter(({ which }) => [...(parts[which] ?? '')].length > 0)
    .map(({ which, position, replacement }) => {
      const chars = [...(parts[which] ?? '')];
      const at = position % chars.length;
      return { which, at, replacement, original: chars[at] };
    })
    .filter(({ replacement, original }) => replacement !== original)
    .map(({ which, at, replacement }) =>
      parts.map((p, i) => {
        if (i !== which) return p;
        const chars = [...p];
        chars[at] = replacement;
        return chars.join('');
      }),
    );

describe('signatures', () => {
  it('verifySignature accepts computeSignature and rejects any single-character change', () => {
    fc.assert(
      fc.property(
        fc.tuple(part, part, part).filter((p) => p.some((s) => s.length > 0)).chain((p) => fc.tuple(fc.constant(p), changeOneChar(p))),
        ([[token, timestamp, nonce], changed]) => {
          const signature = computeSignature(token, timestamp, nonce);
          expect(signature).toMatch(/^[0-9a-f]{40}$/);
          expect(verifySignature(token, timestamp, nonce, signature)).toBe(true);
          const [t2 = '', ts2 = '', n2 = ''] = changed;
          expect(verifySignature(t2, ts2, n2, signature)).toBe(false);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('verifyMsgSignature accepts computeMsgSignature and rejects any single-character change', () => {
    fc.assert(
      fc.property(
        fc.tuple(part, part, part, part).filter((p) => p.some((s) => s.length > 0)).chain((p) => fc.tuple(fc.constant(p), changeOneChar(p))),
        ([[token, timestamp, nonce, encrypt], changed]) => {
          const signature = computeMsgSignature(token, timestamp, nonce, encrypt);
          expect(verifyMsgSignature(token, timestamp, nonce, encrypt, signature)).toBe(true);
          const [t2 = '', ts2 = '', n2 = '', e2 = ''] = changed;
          expect(verifyMsgSignature(t2, ts2, n2, e2, signature)).toBe(false);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('the order of the inputs does not matter', () => {
    fc.assert(
      fc.property(part, part, part, (a, b, c) => {
        const s = computeSignature(a, b, c);
        expect(computeSignature(c, a, b)).toBe(s);
        expect(computeSignature(b, c, a)).toBe(s);
      }),
    );
  });

  it('any single changed hex digit of the signature is rejected', () => {
    fc.assert(
      fc.property(part, part, part, fc.nat({ max: 39 }), fc.constantFrom(...'0123456789abcdef'), (a, b, c, at, digit) => {
        const s = computeSignature(a, b, c);
        fc.pre(s[at] !== digit);
        expect(verifySignature(a, b, c, s.slice(0, at) + digit + s.slice(at + 1))).toBe(false);
      }),
    );
  });
});

describe('one key object decrypting many messages in a row (the block decipher is reused)', () => {
  it('stays correct across messages of every length, interleaved with refused ones', () => {
    const key = deriveAesKey('abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG');
    const other = deriveAesKey('A'.repeat(43));
    const appId = 'wx2c2769f8efd9abc2';
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'grapheme', maxLength: 120 }), { minLength: 1, maxLength: 12 }), (messages) => {
        for (const message of messages) {
          const good = encryptMessage(key, message, appId);
          // A message for another app, and one under another key, are refused in between…
          expect(() => decryptMessage(key, encryptMessage(key, message, 'wx0000000000000000'), appId)).toThrow();
          expect(() => decryptMessage(key, encryptMessage(other, message, appId), appId)).toThrow();
          // …and do not disturb the next one.
          expect(decryptMessage(key, good, appId).message).toBe(message);
        }
      }),
      { numRuns: 60 },
    );
  });
});
