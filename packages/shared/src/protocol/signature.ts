import { hash, timingSafeEqual } from 'node:crypto';

/** A SHA-1 digest as WeChat writes it: 40 hex characters (WeChat sends lowercase; case is not significant). */
const SHA1_HEX = /^[0-9a-fA-F]{40}$/;

/**
 * SHA-1 over the concatenation of `parts` in byte-wise order.
 *
 * The default `Array.prototype.sort` compares UTF-16 code units, which is the 字典序 WeChat means
 * (digits < uppercase < lowercase for the ASCII inputs it sends). `localeCompare` would reorder case.
 * One-shot `crypto.hash` over the joined string rather than a `Hash` object fed part by part: it is
 * measurably faster (bench/analysis.md), and this runs on every request.
 */
function sha1OfSorted(parts: string[]): Buffer {
  parts.sort();
  return hash('sha1', parts.join(''), 'buffer');
}

/**
 * Constant-time comparison of a raw digest with a hex string received from the network.
 * A value of the wrong length or with non-hex characters is simply "not equal".
 */
function digestMatchesHex(digest: Buffer, hex: string): boolean {
  if (!SHA1_HEX.test(hex)) return false;
  return timingSafeEqual(digest, Buffer.from(hex, 'hex'));
}

/**
 * The `signature` query parameter of a callback: `sha1_hex(sort([token, timestamp, nonce]).join(''))`.
 *
 * Sent on URL verification (GET) and on every push (POST), in every mode. It covers the query only,
 * never the body.
 *
 * @see https://developers.weixin.qq.com/doc/oplatform/developers/dev/push (URL verification; docs/wechat-protocol.md §2, §3.1)
 * @returns 40 lowercase hex characters.
 */
export function computeSignature(token: string, timestamp: string, nonce: string): string {
  return sha1OfSorted([token, timestamp, nonce]).toString('hex');
}

/**
 * The `msg_signature` of an encrypted message:
 * `sha1_hex(sort([token, timestamp, nonce, encrypt]).join(''))`, where `encrypt` is the base64 text
 * exactly as it appears in the `<Encrypt>` element.
 *
 * Inbound, timestamp and nonce come from the query string; in a passive reply they are the
 * `TimeStamp`/`Nonce` written into the envelope.
 *
 * @see https://developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/Before_Develop/message_push.html (docs/wechat-protocol.md §4.3)
 * @returns 40 lowercase hex characters.
 */
export function computeMsgSignature(token: string, timestamp: string, nonce: string, encrypt: string): string {
  return sha1OfSorted([token, timestamp, nonce, encrypt]).toString('hex');
}

/**
 * Checks the `signature` query parameter in constant time.
 *
 * @see https://developers.weixin.qq.com/doc/oplatform/developers/dev/push (docs/wechat-protocol.md §2)
 * @returns `false` for a mismatch and for any value that is not 40 hex characters; never throws.
 */
export function verifySignature(token: string, timestamp: string, nonce: string, signature: string): boolean {
  return digestMatchesHex(sha1OfSorted([token, timestamp, nonce]), signature);
}

/**
 * Checks the `msg_signature` of an encrypted message in constant time. Do this before any AES work:
 * it is what authenticates the ciphertext (WeChat: "不要使用signature验证").
 *
 * @see https://developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/Before_Develop/message_push.html (docs/wechat-protocol.md §3.1, §4.3)
 * @returns `false` for a mismatch and for any value that is not 40 hex characters; never throws.
 */
export function verifyMsgSignature(
  token: string,
  timestamp: string,
  nonce: string,
  encrypt: string,
  msgSignature: string,
): boolean {
  return digestMatchesHex(sha1OfSorted([token, timestamp, nonce, encrypt]), msgSignature);
}
