/**
 * Interop with `wechat-crypto` (node-webot, v0.0.2), an independent port of the official
 * WXBizMsgCrypt sample. What one side encrypts the other decrypts, and the signatures agree.
 *
 * Its quirks, pinned below so a change in either implementation shows up:
 * - it pads with PKCS#7 over 32-byte blocks like WeChat (not OpenSSL's 16), so ciphertexts are
 *   byte-identical to ours for the same random prefix;
 * - `decrypt` does not check the trailing appid: it returns it as `id` and leaves the check to the
 *   caller (we refuse a mismatch);
 * - its unpadding treats a pad byte outside 1..32 as "no padding" and never checks the other pad
 *   bytes, and it decodes base64 leniently (Buffer skips invalid characters): it accepts inputs we
 *   refuse;
 * - it draws the random prefix from the deprecated `crypto.pseudoRandomBytes` and builds buffers with
 *   the deprecated `new Buffer()` (Node prints DEP0005 once).
 */
import { createCipheriv } from 'node:crypto';
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadVectors } from '../test-support/vectors.js';
import { decryptMessage, deriveAesKey, encryptMessage } from './crypto.js';
import { computeMsgSignature } from './signature.js';

type WXBizMsgCrypt = {
  encrypt(text: string): string;
  decrypt(text: string): { message: string; id: string };
  getSignature(timestamp: string, nonce: string, encrypt: string): string;
};
type WXBizMsgCryptConstructor = new (token: string, encodingAESKey: string, id: string) => WXBizMsgCrypt;

const require = createRequire(import.meta.url);
// CommonJS without type declarations: typed here from its source (lib/msg_crypto.js).
const WechatCrypto = require('wechat-crypto') as WXBizMsgCryptConstructor;
const nodeCrypto = require('node:crypto') as { pseudoRandomBytes: (size: number) => Buffer };

const vectors = loadVectors();

/** Runs `fn` with wechat-crypto's random source pinned to `random`. */
function withPinnedRandom<T>(random: Buffer, fn: () => T): T {
  const descriptor = Object.getOwnPropertyDescriptor(nodeCrypto, 'pseudoRandomBytes');
  expect(descriptor, 'wechat-crypto draws its random prefix from crypto.pseudoRandomBytes').toBeDefined();
  Object.defineProperty(nodeCrypto, 'pseudoRandomBytes', { value: () => Buffer.from(random), configurable: true, writable: true });
  try {
    return fn();
  } finally {
    Object.defineProperty(nodeCrypto, 'pseudoRandomBytes', descriptor!);
  }
}

describe('wechat-crypto interop (encrypt vectors)', () => {
  it.each(vectors.encrypt)('$id: it decrypts what we encrypt', (v) => {
    const ours = encryptMessage(deriveAesKey(v.encodingAESKey), v.msg, v.appid, Buffer.from(v.randomHex, 'hex'));
    expect(new WechatCrypto('token', v.encodingAESKey, v.appid).decrypt(ours)).toEqual({ message: v.msg, id: v.appid });
  });

  it.each(vectors.encrypt)('$id: we decrypt what it encrypts', (v) => {
    const theirs = new WechatCrypto('token', v.encodingAESKey, v.appid).encrypt(v.msg);
    expect(decryptMessage(deriveAesKey(v.encodingAESKey), theirs, v.appid).message).toBe(v.msg);
  });

  it.each(vectors.encrypt)('$id: with the same random prefix it produces the vector byte for byte', (v) => {
    const random = Buffer.from(v.randomHex, 'hex');
    const theirs = withPinnedRandom(random, () => new WechatCrypto('token', v.encodingAESKey, v.appid).encrypt(v.msg));
    expect(theirs).toBe(v.expected);
  });
});

describe('wechat-crypto interop (decrypt vectors)', () => {
  it.each(vectors.decrypt)('$id: both sides read the official ciphertext the same way', (v) => {
    const theirs = new WechatCrypto('token', v.encodingAESKey, v.appid).decrypt(v.encrypt);
    const ours = decryptMessage(deriveAesKey(v.encodingAESKey), v.encrypt, v.appid);
    expect(theirs).toEqual({ message: ours.message, id: ours.appId });
    expect(theirs.message).toBe(v.expected.msg);
  });

  it.each(vectors.decrypt)('$id: quirk — it returns a foreign appid where we refuse it', (v) => {
    const foreign = 'wx0000000000000000';
    const encrypt = encryptMessage(deriveAesKey(v.encodingAESKey), v.expected.msg, foreign);
    expect(new WechatCrypto('token', v.encodingAESKey, v.appid).decrypt(encrypt).id).toBe(foreign);
    expect(() => decryptMessage(deriveAesKey(v.encodingAESKey), encrypt, v.appid)).toThrow(
      expect.objectContaining({ code: 'WX_ERR_DECRYPT' }),
    );
  });

  it.each(vectors.decrypt)('$id: quirk — it accepts inconsistent padding where we refuse it', (v) => {
    const key = deriveAesKey(v.encodingAESKey);
    const msg = Buffer.from(v.expected.msg);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(msg.length);
    const body = Buffer.concat([Buffer.from(v.expected.randomAscii, 'latin1'), len, msg, Buffer.from(v.appid)]);
    const n = 32 - (body.length % 32);
    // The last byte says "n bytes of padding"; the others are zeros instead of n.
    const padded = Buffer.concat([body, Buffer.alloc(n - 1, 0), Buffer.from([n])]);
    const cipher = createCipheriv('aes-256-cbc', key.key, key.iv);
    cipher.setAutoPadding(false);
    const encrypt = Buffer.concat([cipher.update(padded), cipher.final()]).toString('base64');

    expect(n, 'the vector has more than one pad byte').toBe(v.expected.padLength);
    expect(n).toBeGreaterThan(1);
    expect(new WechatCrypto('token', v.encodingAESKey, v.appid).decrypt(encrypt)).toEqual({ message: v.expected.msg, id: v.appid });
    expect(() => decryptMessage(key, encrypt, v.appid)).toThrow(expect.objectContaining({ code: 'WX_ERR_DECRYPT' }));
  });

  it.each(vectors.decrypt)('$id: quirk — it skips characters that are not base64 where we refuse them', (v) => {
    const noisy = `${v.encrypt.slice(0, 10)}!*${v.encrypt.slice(10)}`;
    expect(new WechatCrypto('token', v.encodingAESKey, v.appid).decrypt(noisy).message).toBe(v.expected.msg);
    expect(() => decryptMessage(deriveAesKey(v.encodingAESKey), noisy, v.appid)).toThrow(
      expect.objectContaining({ code: 'WX_ERR_DECRYPT' }),
    );
  });
});

describe('wechat-crypto interop (msg_signature vectors)', () => {
  it.each(vectors.msg_signature)('$id: its getSignature equals ours and the vector', (v) => {
    const theirs = new WechatCrypto(v.token, 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'wx').getSignature(v.timestamp, v.nonce, v.encrypt);
    expect(theirs).toBe(computeMsgSignature(v.token, v.timestamp, v.nonce, v.encrypt));
    expect(theirs).toBe(v.expected);
  });
});

describe('wechat-crypto interop (properties)', () => {
  const ALNUM = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'];
  const encodingAESKey = fc.string({ unit: fc.constantFrom(...ALNUM), minLength: 43, maxLength: 43 });
  const message = fc.string({ unit: 'binary', maxLength: 400 });
  const appId = fc.stringMatching(/^wx[0-9a-f]{16}$/);
  const token = fc.string({ unit: fc.constantFrom(...ALNUM), minLength: 3, maxLength: 32 });
  const digits = fc.stringMatching(/^[0-9]{1,12}$/);

  it('round-trips in both directions and signs identically', () => {
    fc.assert(
      fc.property(encodingAESKey, message, appId, token, digits, digits, (k, msg, id, tok, timestamp, nonce) => {
        const key = deriveAesKey(k);
        const theirs = new WechatCrypto(tok, k, id);

        const ours = encryptMessage(key, msg, id);
        expect(theirs.decrypt(ours)).toEqual({ message: msg, id });
        const fromThem = theirs.encrypt(msg);
        expect(decryptMessage(key, fromThem, id).message).toBe(msg);
        expect(theirs.getSignature(timestamp, nonce, ours)).toBe(computeMsgSignature(tok, timestamp, nonce, ours));
      }),
      { numRuns: 200 },
    );
  });

  it('produces the same ciphertext as ours for the same random prefix', () => {
    fc.assert(
      fc.property(encodingAESKey, message, appId, fc.uint8Array({ minLength: 16, maxLength: 16 }), (k, msg, id, bytes) => {
        const random = Buffer.from(bytes);
        const theirs = withPinnedRandom(random, () => new WechatCrypto('token', k, id).encrypt(msg));
        const ours = encryptMessage(deriveAesKey(k), msg, id, random);
        expect(ours).toBe(theirs);
      }),
      { numRuns: 100 },
    );
  });
});
