/**
 * The safe-mode envelope: the XML around an `Encrypt` value, both ways.
 *
 * Inbound, a compatible- or safe-mode push body carries `<Encrypt>` (and `<ToUserName>`, and in
 * compatible mode the plaintext fields, which nothing signs); {@link readEncryptedEnvelope} reads
 * what the gateway needs before verifying `msg_signature` and decrypting. Outbound, a passive reply
 * goes back encrypted and signed in `<Encrypt>`/`<MsgSignature>`/`<TimeStamp>`/`<Nonce>`
 * ({@link buildEncryptedReply}, opened again by {@link openEncryptedReply}).
 *
 * The AES layer itself is `crypto.ts`; the signatures are `signature.ts`.
 *
 * docs/wechat-protocol.md §3.2, §4.3–§4.5.
 *
 * @module
 */
import { WxError } from '../errors.js';
import { decryptMessage, encryptMessage, type AesKey } from './crypto.js';
import { computeMsgSignature, verifyMsgSignature } from './signature.js';
import { optText, reqText, xmlError } from './xml-fields.js';
import { parseXml } from './xml-parse.js';

const TIMESTAMP = /^[0-9]{1,20}$/;
const NONCE = /^[A-Za-z0-9]{1,64}$/;

// ---------------------------------------------------------------------------------------------
// Inbound: the push body

/** The fields of an encrypted push body that the gateway needs before decrypting. */
export interface EncryptedEnvelope {
  /** The Official Account's original id, when the body carries it. */
  readonly toUserName?: string;
  /** Base64 ciphertext, as sent. */
  readonly encrypt: string;
}

/**
 * Reads `<Encrypt>` (and `<ToUserName>`) from a safe-mode or compatible-mode body.
 * docs/wechat-protocol.md §3.2, §4.4.
 *
 * @throws {@link WxError} `WX_ERR_XML` when the body is not valid XML or `Encrypt` is missing or empty.
 */
export function readEncryptedEnvelope(xml: string): EncryptedEnvelope {
  const fields = parseXml(xml);
  const encrypt = reqText(fields, 'Encrypt');
  if (encrypt.length === 0) throw xmlError('Encrypt is empty');
  const toUserName = optText(fields, 'ToUserName');
  return toUserName === undefined ? { encrypt } : { toUserName, encrypt };
}

// ---------------------------------------------------------------------------------------------
// Outbound: the encrypted passive reply

/** Input of {@link buildEncryptedReply}. */
export type EncryptedReplyInput = {
  readonly token: string;
  readonly key: AesKey;
  readonly appId: string;
  /** The plaintext passive reply (docs/wechat-protocol.md §7). */
  readonly replyXml: string;
  /** Unix seconds, decimal. */
  readonly timestamp: string;
  /** Any nonce of letters/digits; echoing the request's is customary. */
  readonly nonce: string;
  /** Fixed random prefix for tests; fresh random bytes otherwise. */
  readonly random?: Buffer;
};

/**
 * The safe-mode passive reply envelope: the reply encrypted, signed with `msg_signature` over the
 * envelope's own TimeStamp/Nonce, laid out exactly as WeChat's samples.
 *
 * @see https://developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/Before_Develop/message_push.html (docs/wechat-protocol.md §4.5)
 * @throws {WxError} `WX_ERR_PARAM` when the timestamp is not decimal digits or the nonce is not 1–64
 *   letters/digits (both are written into the XML unescaped).
 */
export function buildEncryptedReply(input: EncryptedReplyInput): string {
  const { token, key, appId, replyXml, timestamp, nonce, random } = input;
  if (!TIMESTAMP.test(timestamp)) throw new WxError('WX_ERR_PARAM', 'reply timestamp must be decimal Unix seconds');
  if (!NONCE.test(nonce)) throw new WxError('WX_ERR_PARAM', 'reply nonce must be 1-64 letters or digits');
  const encrypt = encryptMessage(key, replyXml, appId, random);
  const msgSignature = computeMsgSignature(token, timestamp, nonce, encrypt);
  return (
    '<xml>\n' +
    `<Encrypt><![CDATA[${encrypt}]]></Encrypt>\n` +
    `<MsgSignature><![CDATA[${msgSignature}]]></MsgSignature>\n` +
    `<TimeStamp>${timestamp}</TimeStamp>\n` +
    `<Nonce><![CDATA[${nonce}]]></Nonce>\n` +
    '</xml>'
  );
}

/** Input of {@link openEncryptedReply}. */
export type OpenEncryptedReplyInput = {
  readonly token: string;
  readonly key: AesKey;
  readonly appId: string;
  /** The envelope produced by {@link buildEncryptedReply} (or any SDK). */
  readonly xml: string;
};

/**
 * The text of the one `<name>` element of a flat envelope, unwrapped from CDATA if it is wrapped.
 * Enough for the four fields of a reply envelope, whose values never contain `<` or `]]>`.
 */
function readEnvelopeField(xml: string, name: string): string {
  const open = `<${name}>`;
  const close = `</${name}>`;
  const start = xml.indexOf(open);
  const end = start === -1 ? -1 : xml.indexOf(close, start + open.length);
  if (end === -1 || xml.includes(open, end)) {
    throw new WxError('WX_ERR_XML', `reply envelope needs exactly one <${name}> element`);
  }
  const text = xml.slice(start + open.length, end).trim();
  return text.startsWith('<![CDATA[') && text.endsWith(']]>') ? text.slice(9, -3) : text;
}

/**
 * The inverse of {@link buildEncryptedReply}, as WeChat runs it: reads the envelope, verifies its
 * `MsgSignature`, then decrypts. Used by the WeChat simulator and tests.
 *
 * @see https://developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/Before_Develop/message_push.html (docs/wechat-protocol.md §4.5)
 * @throws {WxError} `WX_ERR_XML` (an envelope field missing or repeated), `WX_ERR_SIGNATURE`, `WX_ERR_DECRYPT`.
 * @returns The plaintext reply XML.
 */
export function openEncryptedReply(input: OpenEncryptedReplyInput): string {
  const { token, key, appId, xml } = input;
  const encrypt = readEnvelopeField(xml, 'Encrypt');
  const msgSignature = readEnvelopeField(xml, 'MsgSignature');
  const timestamp = readEnvelopeField(xml, 'TimeStamp');
  const nonce = readEnvelopeField(xml, 'Nonce');
  if (!verifyMsgSignature(token, timestamp, nonce, encrypt, msgSignature)) {
    throw new WxError('WX_ERR_SIGNATURE', 'reply MsgSignature does not match');
  }
  return decryptMessage(key, encrypt, appId).message;
}
