import { describe, expect, it } from 'vitest';
import { catchWxError } from '../test-support/wx-error.js';
import { httpBody, loadVectors, xmlSample } from '../test-support/vectors.js';
import { codeOf, fieldText } from '../test-support/xml-paths.js';
import { deriveAesKey, type AesKey } from './crypto.js';
import { buildEncryptedReply, openEncryptedReply, readEncryptedEnvelope } from './envelope.js';
import { computeMsgSignature } from './signature.js';

const vectors = loadVectors();
const TEXT = xmlSample('msg-text');
const otherKey = deriveAesKey('0123456789abcdefghijklmnopqrstuvwxyzABCDEFG');

/** Same-length appid with its last character changed. */
function otherAppId(appid: string): string {
  return appid.slice(0, -1) + (appid.endsWith('0') ? '1' : '0');
}

describe('readEncryptedEnvelope', () => {
  it('reads a safe-mode body', () => {
    const env = readEncryptedEnvelope(httpBody('official-post-safe-mode', 'body'));
    expect(env.toUserName).toBe('gh_97417a04a28d');
    expect(env.encrypt.startsWith('D7yzvUNAL930rd28')).toBe(true);
    expect(env.encrypt.endsWith('Mg==')).toBe(true);
  });

  it('reads a compatible-mode body (plaintext fields + Encrypt)', () => {
    const env = readEncryptedEnvelope(httpBody('official-post-compat-mode', 'body'));
    expect(env).toMatchObject({ toUserName: 'gh_10f6c3c3ac5a' });
    expect(env.encrypt.startsWith('hyzAe4Oz')).toBe(true);
  });

  it.each([
    ['no Encrypt', TEXT],
    ['empty Encrypt', '<xml><Encrypt><![CDATA[]]></Encrypt></xml>'],
    ['not XML', 'Encrypt=abc'],
  ])('refuses %s', (_title, xml) => {
    expect(codeOf(() => readEncryptedEnvelope(xml))).toBe('WX_ERR_XML');
  });
});

describe('buildEncryptedReply / openEncryptedReply (reply_envelope vectors)', () => {
  it.each(vectors.reply_envelope)('$id', (v) => {
    const key = deriveAesKey(v.encodingAESKey);
    const xml = buildEncryptedReply({
      token: v.token,
      key,
      appId: v.appid,
      replyXml: v.plaintext,
      timestamp: v.timestamp,
      nonce: v.nonce,
      random: Buffer.from(v.randomAscii, 'latin1'),
    });
    expect(xml).toBe(v.expectedXml);
    if (v.expectedEncrypt !== undefined) expect(fieldText(xml, 'Encrypt')).toBe(v.expectedEncrypt);
    if (v.expectedMsgSignature !== undefined) expect(fieldText(xml, 'MsgSignature')).toBe(v.expectedMsgSignature);
    expect(openEncryptedReply({ token: v.token, key, appId: v.appid, xml: v.expectedXml })).toBe(v.plaintext);
  });

  it.each(vectors.reply_envelope)('$id: a fresh envelope opens again', (v) => {
    const key = deriveAesKey(v.encodingAESKey);
    const xml = buildEncryptedReply({ token: v.token, key, appId: v.appid, replyXml: v.plaintext, timestamp: v.timestamp, nonce: v.nonce });
    expect(xml).not.toBe(v.expectedXml);
    expect(openEncryptedReply({ token: v.token, key, appId: v.appid, xml })).toBe(v.plaintext);
    // Layout tolerance: indentation and a non-CDATA Encrypt are read the same way.
    const reindented = xml.replace(/\n</g, '\n  <').replace(/<Encrypt><!\[CDATA\[(.*?)\]\]><\/Encrypt>/, '<Encrypt>$1</Encrypt>');
    expect(openEncryptedReply({ token: v.token, key, appId: v.appid, xml: reindented })).toBe(v.plaintext);
  });

  it.each(vectors.reply_envelope)('$id: tampered envelopes are rejected with the right code', (v) => {
    const key = deriveAesKey(v.encodingAESKey);
    const open = (xml: string, over: Partial<{ token: string; appId: string; key: AesKey }> = {}) => () =>
      openEncryptedReply({ token: v.token, key, appId: v.appid, xml, ...over });
    const encrypt = fieldText(v.expectedXml, 'Encrypt')!;
    const signature = fieldText(v.expectedXml, 'MsgSignature')!;

    catchWxError('WX_ERR_SIGNATURE', open(v.expectedXml, { token: `${v.token}x` }));
    catchWxError('WX_ERR_SIGNATURE', open(v.expectedXml.replace(`<TimeStamp>${v.timestamp}`, `<TimeStamp>${Number(v.timestamp) + 1}`)));
    catchWxError('WX_ERR_SIGNATURE', open(v.expectedXml.replace(`[${v.nonce}]`, `[${v.nonce}1]`)));
    catchWxError('WX_ERR_SIGNATURE', open(v.expectedXml.replace(signature, '0'.repeat(40))));
    catchWxError('WX_ERR_SIGNATURE', open(v.expectedXml.replace(encrypt, encrypt.slice(0, -4))));
    catchWxError('WX_ERR_DECRYPT', open(v.expectedXml, { appId: otherAppId(v.appid) }));
    catchWxError('WX_ERR_DECRYPT', open(v.expectedXml, { key: otherKey }));

    // A correctly signed envelope around a truncated ciphertext still fails at decryption.
    const truncated = encrypt.slice(0, -4);
    const resigned = v.expectedXml
      .replace(encrypt, truncated)
      .replace(signature, computeMsgSignature(v.token, v.timestamp, v.nonce, truncated));
    catchWxError('WX_ERR_DECRYPT', open(resigned));

    for (const field of ['Encrypt', 'MsgSignature', 'TimeStamp', 'Nonce']) {
      const missing = v.expectedXml.replace(new RegExp(`<${field}>.*</${field}>\\n`), '');
      expect(missing).not.toBe(v.expectedXml);
      catchWxError('WX_ERR_XML', open(missing));
    }
    catchWxError('WX_ERR_XML', open(v.expectedXml.replace('</xml>', `<Encrypt><![CDATA[${encrypt}]]></Encrypt>\n</xml>`)));
  });

  it.each(vectors.reply_envelope)('$id: timestamp and nonce that would break the XML are refused', (v) => {
    const key = deriveAesKey(v.encodingAESKey);
    const base = { token: v.token, key, appId: v.appid, replyXml: v.plaintext, timestamp: v.timestamp, nonce: v.nonce };
    for (const nonce of ['', 'a]]>b', '<x/>', 'n o']) catchWxError('WX_ERR_PARAM', () => buildEncryptedReply({ ...base, nonce }));
    for (const timestamp of ['', '17e9', '1</TimeStamp>']) catchWxError('WX_ERR_PARAM', () => buildEncryptedReply({ ...base, timestamp }));
  });
});
