import {
  WxError,
  decryptMessageWithKeys,
  parseInboundMessage,
  readEncryptedEnvelope,
  verifyMsgSignature,
  verifySignature,
  type AesKey,
  type InboundMessage,
} from '@wxrelay/shared/protocol';
import type { CallbackMode } from '@wxrelay/shared/queue';

/** The query string of a WeChat callback, as the route schema admits it. */
export interface CallbackQuery {
  readonly signature: string;
  readonly timestamp: string;
  readonly nonce: string;
  readonly openid?: string;
  readonly encrypt_type?: string;
  readonly msg_signature?: string;
  readonly echostr?: string;
}

/** What the gateway needs to open a callback: the Token, the AppID and the AES key(s). */
export interface CallbackSecrets {
  readonly token: string;
  readonly appId: string;
  /** Current key first, then the previous one. */
  readonly aesKeys: readonly AesKey[];
  readonly requireEncryption: boolean;
}

export interface OpenedCallback {
  readonly mode: CallbackMode;
  readonly message: InboundMessage;
}

/**
 * Authenticates and opens one POSTed callback: plain mode checks `signature`; compatible and safe
 * mode check `msg_signature` over `Encrypt` (constant time) before any AES, then decrypt and check
 * the AppID inside. Throws a {@link WxError} whose code says why (mapped to a 4xx by the app).
 *
 * In compatible mode the plaintext fields beside `Encrypt` are not covered by any signature, so
 * only the decrypted copy is trusted.
 *
 * @see https://developers.weixin.qq.com/doc/service/guide/dev/push/encryption.html
 */
export function openCallback(secrets: CallbackSecrets, query: CallbackQuery, body: string): OpenedCallback {
  if (query.encrypt_type === 'aes') {
    if (secrets.aesKeys.length === 0) {
      throw new WxError('WX_ERR_PARAM', 'encrypted callback but no WECHAT_ENCODING_AES_KEY is configured');
    }
    const msgSignature = query.msg_signature;
    if (msgSignature === undefined || msgSignature === '') {
      throw new WxError('WX_ERR_PARAM', 'msg_signature is missing');
    }
    const envelope = readEncryptedEnvelope(body);
    if (!verifyMsgSignature(secrets.token, query.timestamp, query.nonce, envelope.encrypt, msgSignature)) {
      throw new WxError('WX_ERR_SIGNATURE', 'msg_signature does not match');
    }
    const { message: xml } = decryptMessageWithKeys(secrets.aesKeys, envelope.encrypt, secrets.appId);
    // Compatible mode sends the plaintext fields beside Encrypt; safe mode sends only Encrypt.
    return { mode: body.includes('<MsgType>') ? 'compat' : 'safe', message: parseInboundMessage(xml) };
  }
  if (query.encrypt_type !== undefined && query.encrypt_type !== 'raw') {
    throw new WxError('WX_ERR_PARAM', 'encrypt_type must be aes or raw');
  }
  if (!verifySignature(secrets.token, query.timestamp, query.nonce, query.signature)) {
    throw new WxError('WX_ERR_SIGNATURE', 'signature does not match');
  }
  if (secrets.requireEncryption) {
    throw new WxError('WX_ERR_PLAIN_REFUSED', 'plain-mode callback refused (WECHAT_REQUIRE_ENCRYPTION=true)');
  }
  return { mode: 'plain', message: parseInboundMessage(body) };
}

/**
 * True when `timestamp` (Unix seconds, as sent) lies within `toleranceSeconds` of `nowMs`.
 * A tolerance of 0 turns the check off.
 */
export function isTimestampFresh(timestamp: string, nowMs: number, toleranceSeconds: number): boolean {
  if (toleranceSeconds === 0) return true;
  const ts = Number(timestamp);
  return Number.isSafeInteger(ts) && Math.abs(nowMs / 1000 - ts) <= toleranceSeconds;
}
