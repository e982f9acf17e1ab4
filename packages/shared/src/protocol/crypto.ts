/**
 * WeChat's message encryption: AES-256-CBC over `random(16) || msg_len || message || appId`,
 * PKCS#7-padded to 32 bytes, base64. Pure bytes and strings; the XML envelope around an `Encrypt`
 * value is `envelope.ts`, its signature `signature.ts`.
 *
 * docs/wechat-protocol.md §4.
 *
 * @module
 */
import { createCipheriv, createDecipheriv, randomBytes, type Decipheriv } from 'node:crypto';
import { WxError } from '../errors.js';

/** The AES-256 key and IV (its first 16 bytes) derived from an EncodingAESKey. */
export type AesKey = { readonly key: Buffer; readonly iv: Buffer };

/** What {@link decryptMessage} recovers from an `Encrypt` value. */
export type DecryptedMessage = {
  /** The plaintext XML (or, for WeCom, the echostr). */
  readonly message: string;
  /** The 16-byte random prefix the sender chose. */
  readonly random: Buffer;
  /** The trailing AppID (receiveid); always equal to the expected one. */
  readonly appId: string;
};

/** {@link decryptMessageWithKeys}' result: which key of the list opened the message. */
export type DecryptedMessageWithKey = DecryptedMessage & { readonly keyIndex: number };

const ENCODING_AES_KEY = /^[A-Za-z0-9]{43}$/;
/** Canonical base64 alphabet, padding only at the end; the length is checked separately. */
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** WeChat pads with PKCS#7 over 32-byte blocks, not AES's 16 (docs/wechat-protocol.md §4.1). */
const PAD_BLOCK = 32;
const RANDOM_BYTES = 16;
/** random(16) || msg_len(4) */
const HEADER_BYTES = RANDOM_BYTES + 4;
const CIPHER = 'aes-256-cbc';
const BLOCK_CIPHER = 'aes-256-ecb';
const AES_BLOCK = 16;

/** The one failure of decryption: no detail, so nothing leaks and nothing becomes an oracle. */
function decryptError(): WxError {
  return new WxError('WX_ERR_DECRYPT', 'could not decrypt message');
}

/**
 * Derives the AES key from the console's EncodingAESKey: `base64_decode(EncodingAESKey + "=")`,
 * 32 bytes; the IV is the key's first 16 bytes.
 *
 * The 43rd character carries 2 bits that base64 discards; keys where they are non-zero (the official
 * sample key `…ABCDEFG` is one) are accepted, as WeChat and every SDK accept them.
 *
 * @see https://developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/Before_Develop/message_push.html (docs/wechat-protocol.md §4.1)
 * @throws {WxError} `WX_ERR_AES_KEY` unless the input is 43 characters of `[A-Za-z0-9]`.
 */
export function deriveAesKey(encodingAESKey: string): AesKey {
  if (!ENCODING_AES_KEY.test(encodingAESKey)) {
    throw new WxError('WX_ERR_AES_KEY', 'EncodingAESKey must be exactly 43 characters of [A-Za-z0-9]');
  }
  const key = Buffer.from(`${encodingAESKey}=`, 'base64');
  if (key.length !== 32) {
    throw new WxError('WX_ERR_AES_KEY', 'EncodingAESKey must decode to 32 bytes');
  }
  return Object.freeze({ key, iv: key.subarray(0, 16) });
}

/**
 * Encrypts a message the way WeChat does:
 * `base64(AES-256-CBC(pkcs7_32(random(16) || uint32_be(byteLength(message)) || message || appId)))`.
 *
 * @param random The 16-byte prefix; a fresh `crypto.randomBytes(16)` unless given (tests pin it).
 * @see https://developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/Before_Develop/message_push.html (docs/wechat-protocol.md §4.2)
 * @throws {RangeError} if `random` is not exactly 16 bytes (a caller bug, not a protocol failure).
 */
export function encryptMessage(key: AesKey, message: string, appId: string, random: Buffer = randomBytes(RANDOM_BYTES)): string {
  if (random.length !== RANDOM_BYTES) {
    throw new RangeError(`random prefix must be exactly ${RANDOM_BYTES} bytes`);
  }
  const messageBytes = Buffer.byteLength(message, 'utf8');
  const appIdBytes = Buffer.byteLength(appId, 'utf8');
  const unpadded = HEADER_BYTES + messageBytes + appIdBytes;
  const pad = PAD_BLOCK - (unpadded % PAD_BLOCK);

  // One buffer for the whole plaintext; every byte is written below, so allocUnsafe is safe.
  const plain = Buffer.allocUnsafe(unpadded + pad);
  random.copy(plain, 0);
  plain.writeUInt32BE(messageBytes, RANDOM_BYTES);
  plain.write(message, HEADER_BYTES, 'utf8');
  plain.write(appId, HEADER_BYTES + messageBytes, 'utf8');
  plain.fill(pad, unpadded);

  const cipher = createCipheriv(CIPHER, key.key, key.iv);
  // OpenSSL's own padding is PKCS#7 over 16-byte blocks; ours is already applied.
  cipher.setAutoPadding(false);
  return concatTail(cipher.update(plain), cipher.final()).toString('base64');
}

/** `Buffer.concat` without the copy when `final()` produced nothing (always, with padding off). */
function concatTail(head: Buffer, tail: Buffer): Buffer {
  return tail.length === 0 ? head : Buffer.concat([head, tail]);
}

/** Strict base64 → bytes: canonical alphabet, length a multiple of 4, no whitespace. */
function decodeCiphertext(encrypt: string): Buffer {
  if (encrypt.length === 0 || encrypt.length % 4 !== 0 || !BASE64.test(encrypt)) throw decryptError();
  const bytes = Buffer.from(encrypt, 'base64');
  // pkcs7_32 makes every plaintext, hence every ciphertext, a whole number of 32-byte blocks; the
  // smallest (empty message, empty appid) is one block.
  if (bytes.length === 0 || bytes.length % PAD_BLOCK !== 0) throw decryptError();
  return bytes;
}

/**
 * One AES-256-ECB block decipher per key, reused for every message. A CBC decipher per message
 * means an OpenSSL context setup each time, which dominated safe-mode callbacks. CBC decryption
 * is ECB decryption of each block XOR the previous ciphertext block (the IV for the first), and an
 * ECB context holds no state between whole blocks, so one context serves every message. Callers
 * only ever pass whole blocks (the length is checked first), so nothing is ever left buffered.
 */
const blockDeciphers = new WeakMap<AesKey, Decipheriv>();

function decryptCbc(key: AesKey, ciphertext: Buffer): Buffer {
  let ecb = blockDeciphers.get(key);
  if (ecb === undefined) {
    ecb = createDecipheriv(BLOCK_CIPHER, key.key, null);
    ecb.setAutoPadding(false);
    blockDeciphers.set(key, ecb);
  }
  const plain = ecb.update(ciphertext);
  for (let i = plain.length - 1; i >= AES_BLOCK; i--) plain[i] = (plain[i] ?? 0) ^ (ciphertext[i - AES_BLOCK] ?? 0);
  for (let i = 0; i < AES_BLOCK; i++) plain[i] = (plain[i] ?? 0) ^ (key.iv[i] ?? 0);
  return plain;
}

function decryptBytes(key: AesKey, ciphertext: Buffer, appId: string, expectedAppId: Buffer): DecryptedMessage {
  if (ciphertext.length === 0 || ciphertext.length % AES_BLOCK !== 0) throw decryptError();
  const plain = decryptCbc(key, ciphertext);

  // Every check below ends in the same error. No oracle matters here anyway: callers authenticate
  // the ciphertext (msg_signature) before decrypting it.
  const pad = plain[plain.length - 1] ?? 0;
  if (pad < 1 || pad > PAD_BLOCK) throw decryptError();
  let padMismatch = 0;
  for (let i = plain.length - pad; i < plain.length; i++) padMismatch |= (plain[i] ?? 0) ^ pad;
  if (padMismatch !== 0) throw decryptError();

  // The appid is known, so msg_len must account exactly for the bytes between the header and it.
  // `plain` is at least one 32-byte block, so msg_len is readable; a negative count (plaintext too
  // short for header and appid) never equals the unsigned msg_len.
  const end = plain.length - pad;
  const messageEnd = end - expectedAppId.length;
  if (plain.readUInt32BE(RANDOM_BYTES) !== messageEnd - HEADER_BYTES || !expectedAppId.equals(plain.subarray(messageEnd, end))) {
    throw decryptError();
  }

  return {
    // Invalid UTF-8 becomes U+FFFD rather than an error, as in every official SDK: the bytes were
    // authenticated, and dropping a genuine message would cost more than a replacement character.
    message: plain.toString('utf8', HEADER_BYTES, messageEnd),
    // A 16-byte copy, so the result does not keep the whole plaintext alive.
    random: Buffer.from(plain.subarray(0, RANDOM_BYTES)),
    appId,
  };
}

/**
 * Decrypts an `Encrypt` value and checks its layout and trailing AppID.
 *
 * Strict: canonical base64 only; the ciphertext must be a non-zero multiple of 32 bytes; the pad
 * byte must be 1..32 with all pad bytes equal; `msg_len` must fit; the AppID must equal `appId`.
 * Verify `msg_signature` first (`verifyMsgSignature`, signature.ts).
 *
 * @see https://developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/Before_Develop/message_push.html (docs/wechat-protocol.md §4.2, §4.4)
 * @throws {WxError} `WX_ERR_DECRYPT`, always with the same message, whatever went wrong.
 */
export function decryptMessage(key: AesKey, encrypt: string, appId: string): DecryptedMessage {
  return decryptBytes(key, decodeCiphertext(encrypt), appId, Buffer.from(appId, 'utf8'));
}

/**
 * {@link decryptMessage} during an EncodingAESKey rotation: tries each key in order (current first,
 * then the previous one) and reports which one worked, so the reply can be encrypted with it.
 *
 * @see https://developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/Before_Develop/message_push.html (docs/wechat-protocol.md §4.6)
 * @throws {WxError} `WX_ERR_DECRYPT` when no key opens the message.
 * @throws {RangeError} when `keys` is empty (a configuration bug).
 */
export function decryptMessageWithKeys(keys: readonly AesKey[], encrypt: string, appId: string): DecryptedMessageWithKey {
  if (keys.length === 0) throw new RangeError('at least one AES key is required');
  const ciphertext = decodeCiphertext(encrypt);
  const expectedAppId = Buffer.from(appId, 'utf8');
  for (const [keyIndex, key] of keys.entries()) {
    try {
      return { ...decryptBytes(key, ciphertext, appId, expectedAppId), keyIndex };
    } catch (err) {
      if (!(err instanceof WxError)) throw err;
    }
  }
  throw decryptError();
}
