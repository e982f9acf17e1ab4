import { createCipheriv, createDecipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadVectors, type DecryptVector } from '../test-support/vectors.js';
import { catchWxError } from '../test-support/wx-error.js';
import { fieldText } from '../test-support/xml-paths.js';
import { decryptMessage, decryptMessageWithKeys, deriveAesKey, encryptMessage, type AesKey } from './crypto.js';
import { verifyMsgSignature, verifySignature } from './signature.js';

const vectors = loadVectors();

/** The error must not echo any secret or attacker-chosen bytes back into logs. */
function expectNoLeak(err: Error, ...secrets: string[]): void {
  const text = `${err.message} ${String(err.stack)}`;
  for (const secret of secrets) {
    if (secret.length >= 8) expect(text).not.toContain(secret);
  }
}

/** AES-256-CBC over a hand-built, already block-aligned plaintext: lets tests craft bad padding. */
function encryptRaw(key: AesKey, plaintext: Buffer): string {
  const cipher = createCipheriv('aes-256-cbc', key.key, key.iv);
  cipher.setAutoPadding(false);
  return Buffer.concat([cipher.update(plaintext), cipher.final()]).toString('base64');
}

/** random || msg_len || msg || appid, unpadded, as the vectors describe the layout. */
function fullStr(random: Buffer, msg: string, appid: string, msgLenOverride?: number): Buffer {
  const msgBuf = Buffer.from(msg, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(msgLenOverride ?? msgBuf.length);
  return Buffer.concat([random, len, msgBuf, Buffer.from(appid, 'utf8')]);
}

function pkcs7(buf: Buffer, padByte?: number): Buffer {
  const n = 32 - (buf.length % 32);
  return Buffer.concat([buf, Buffer.alloc(n, padByte ?? n)]);
}

/** Same-length appid with its last character changed. */
function otherAppId(appid: string): string {
  return appid.slice(0, -1) + (appid.endsWith('0') ? '1' : '0');
}

const otherKey = deriveAesKey('0123456789abcdefghijklmnopqrstuvwxyzABCDEFG');

describe('deriveAesKey (aes_key vectors)', () => {
  it.each(vectors.aes_key)('$encodingAESKey', (v) => {
    const key = deriveAesKey(v.encodingAESKey);
    expect(key.key.toString('hex')).toBe(v.keyHex);
    expect(key.iv.toString('hex')).toBe(v.ivHex);
    expect(key.key).toHaveLength(32);
    expect(key.iv).toHaveLength(16);
  });

  it.each(vectors.aes_key)('$encodingAESKey: 42/44 characters and non-alphanumerics are rejected', (v) => {
    const k = v.encodingAESKey;
    const bad = [k.slice(0, 42), `${k}A`, `${k}=`, `${k.slice(0, 42)}+`, `${k.slice(0, 42)}/`, `${k.slice(0, 42)}-`, ` ${k.slice(1)}`, `${k.slice(0, 42)}é`, ''];
    for (const candidate of bad) {
      const err = catchWxError('WX_ERR_AES_KEY', () => deriveAesKey(candidate));
      expectNoLeak(err, candidate);
    }
  });
});

describe('decryptMessage (decrypt vectors)', () => {
  it.each(vectors.decrypt)('$id', (v) => {
    const key = deriveAesKey(v.encodingAESKey);
    const out = decryptMessage(key, v.encrypt, v.appid);
    const cipherBytes = Buffer.from(v.encrypt, 'base64').length;
    const msgBytes = Buffer.byteLength(out.message, 'utf8');

    expect(out.message).toBe(v.expected.msg);
    expect(out.random.toString('latin1')).toBe(v.expected.randomAscii);
    expect(out.appId).toBe(v.expected.appid);
    expect(msgBytes).toBe(v.expected.msgByteLength);
    // The pad is whatever the layout leaves over; the vector records it.
    expect(cipherBytes - 20 - msgBytes - Buffer.byteLength(out.appId)).toBe(v.expected.padLength);
    if (v.expected.cipherByteLength !== undefined) expect(cipherBytes).toBe(v.expected.cipherByteLength);
    if (v.expected.fullStrLength !== undefined) expect(cipherBytes - v.expected.padLength).toBe(v.expected.fullStrLength);
  });

  it.each(vectors.decrypt)('$id: wrong appid → WX_ERR_DECRYPT', (v) => {
    const key = deriveAesKey(v.encodingAESKey);
    for (const appid of [otherAppId(v.appid), v.appid.slice(0, -1), `${v.appid}x`, '']) {
      expectNoLeak(catchWxError('WX_ERR_DECRYPT', () => decryptMessage(key, v.encrypt, appid)), v.encrypt, v.encodingAESKey);
    }
  });

  it.each(vectors.decrypt)('$id: wrong key → WX_ERR_DECRYPT', (v) => {
    catchWxError('WX_ERR_DECRYPT', () => decryptMessage(otherKey, v.encrypt, v.appid));
  });

  it.each(vectors.decrypt)('$id: truncated, non-base64, misaligned or empty input → WX_ERR_DECRYPT', (v) => {
    const key = deriveAesKey(v.encodingAESKey);
    const bytes = Buffer.from(v.encrypt, 'base64');
    const bad = {
      'one char short': v.encrypt.slice(0, -1),
      'one base64 quantum short': v.encrypt.slice(0, -4),
      'non-base64 char': `!${v.encrypt.slice(1)}`,
      'url-safe alphabet': v.encrypt.replace(/[+/]/, (c) => (c === '+' ? '-' : '_')),
      'embedded newline': `${v.encrypt.slice(0, 8)}\n${v.encrypt.slice(8)}`,
      'surrounding space': ` ${v.encrypt} `,
      'padding in the middle': `${v.encrypt.slice(0, 4)}====${v.encrypt.slice(8)}`,
      'last 16 bytes cut (16- but not 32-aligned)': bytes.subarray(0, bytes.length - 16).toString('base64'),
      'last 5 bytes cut (not 16-aligned)': bytes.subarray(0, bytes.length - 5).toString('base64'),
      'extra 16 bytes': Buffer.concat([bytes, bytes.subarray(0, 16)]).toString('base64'),
      empty: '',
    };
    const errors = Object.entries(bad).map(([label, encrypt]) => {
      expect(encrypt, label).not.toBe(v.encrypt);
      return catchWxError('WX_ERR_DECRYPT', () => decryptMessage(key, encrypt, v.appid));
    });
    // One error shape: an attacker learns nothing from which check failed.
    expect(new Set(errors.map((e) => e.message)).size).toBe(1);
  });

  describe.each(vectors.decrypt)('$id: crafted plaintexts with the same key', (v: DecryptVector) => {
    const key = deriveAesKey(v.encodingAESKey);
    const random = Buffer.from(v.expected.randomAscii, 'latin1');
    const body = fullStr(random, v.expected.msg, v.appid);

    it('control: a well-formed crafted plaintext decrypts (so the negatives below test what they claim)', () => {
      expect(encryptRaw(key, pkcs7(body))).toBe(v.encrypt);
      expect(decryptMessage(key, encryptRaw(key, pkcs7(body)), v.appid).message).toBe(v.expected.msg);
    });

    it.each([
      ['pad byte 0', (b: Buffer) => { b[b.length - 1] = 0; }],
      ['pad byte 33', (b: Buffer) => { b[b.length - 1] = 33; }],
      ['pad byte 255', (b: Buffer) => { b[b.length - 1] = 255; }],
      ['inconsistent pad bytes', (b: Buffer) => {
        const n = b[b.length - 1]!;
        if (n > 1) b[b.length - n] = n - 1;
        else b[b.length - 1] = 2; // a lone 0x01 pad: claim 2 bytes where the byte before is message data
      }],
    ])('%s → WX_ERR_DECRYPT', (_label, corrupt) => {
      const padded = pkcs7(body);
      corrupt(padded);
      const encrypt = encryptRaw(key, padded);
      expectNoLeak(catchWxError('WX_ERR_DECRYPT', () => decryptMessage(key, encrypt, v.appid)), encrypt);
    });

    it('OpenSSL auto padding (16-byte PKCS#7) is accepted only where it equals the 32-byte padding', () => {
      // When the unpadded length is 16..31 mod 32 both paddings add the same bytes; otherwise OpenSSL's
      // output ends 16 bytes past a 32-byte boundary and must be refused.
      let refused = 0;
      for (let extra = 0; extra < 32; extra++) {
        const msg = v.expected.msg + 'x'.repeat(extra);
        const plain = fullStr(random, msg, v.appid);
        const cipher = createCipheriv('aes-256-cbc', key.key, key.iv);
        const encrypt = Buffer.concat([cipher.update(plain), cipher.final()]).toString('base64');
        if (plain.length % 32 >= 16) {
          expect(decryptMessage(key, encrypt, v.appid).message).toBe(msg);
        } else {
          catchWxError('WX_ERR_DECRYPT', () => decryptMessage(key, encrypt, v.appid));
          refused++;
        }
      }
      expect(refused).toBe(16);
    });

    it('a self-consistent pad longer than 32 bytes (33 × 0x21) → WX_ERR_DECRYPT', () => {
      // Grow the message until random||len||msg||appid is 31 mod 32, so 33 pad bytes end on a block.
      const msg = v.expected.msg + 'x'.repeat((31 - (body.length % 32) + 32) % 32);
      const unpadded = fullStr(random, msg, v.appid);
      expect(unpadded.length % 32).toBe(31);
      const encrypt = encryptRaw(key, Buffer.concat([unpadded, Buffer.alloc(33, 33)]));
      catchWxError('WX_ERR_DECRYPT', () => decryptMessage(key, encrypt, v.appid));
    });

    it('msg_len larger than the plaintext → WX_ERR_DECRYPT', () => {
      for (const len of [body.length, 0xffffffff, Buffer.byteLength(v.expected.msg) + Buffer.byteLength(v.appid) + 1]) {
        const encrypt = encryptRaw(key, pkcs7(fullStr(random, v.expected.msg, v.appid, len)));
        catchWxError('WX_ERR_DECRYPT', () => decryptMessage(key, encrypt, v.appid));
      }
    });

    it('msg_len one byte short (appid misaligned) → WX_ERR_DECRYPT', () => {
      const encrypt = encryptRaw(key, pkcs7(fullStr(random, v.expected.msg, v.appid, Buffer.byteLength(v.expected.msg) - 1)));
      catchWxError('WX_ERR_DECRYPT', () => decryptMessage(key, encrypt, v.appid));
    });

    it('plaintext shorter than the 20-byte header → WX_ERR_DECRYPT', () => {
      const encrypt = encryptRaw(key, pkcs7(random.subarray(0, 10)));
      catchWxError('WX_ERR_DECRYPT', () => decryptMessage(key, encrypt, v.appid));
    });
  });

  it('Node auto-padding pitfall: a 16-byte PKCS#7 decipher fails on the official pad-22 ciphertext', () => {
    const v = vectors.decrypt.find((x) => x.expected.padLength > 16);
    expect(v, 'a vector with pad > 16').toBeDefined();
    const key = deriveAesKey(v!.encodingAESKey);
    const naive = createDecipheriv('aes-256-cbc', key.key, key.iv);
    expect(() => Buffer.concat([naive.update(v!.encrypt, 'base64'), naive.final()])).toThrow();
    expect(decryptMessage(key, v!.encrypt, v!.appid).message).toBe(v!.expected.msg);
  });

  it('CBC is malleable: a flipped bit in block 0 still decrypts, which is why msg_signature must be checked first', () => {
    const v = vectors.decrypt[0]!;
    const signed = vectors.msg_signature.find((m) => m.id === v.id);
    expect(signed, 'a msg_signature vector for the same ciphertext').toBeDefined();
    const key = deriveAesKey(v.encodingAESKey);
    const bytes = Buffer.from(v.encrypt, 'base64');
    // Ciphertext byte 5 XORs into plaintext byte 21 (message byte 1) and garbles only the random prefix.
    bytes[5] = bytes[5]! ^ 0x01;
    const tampered = bytes.toString('base64');
    const out = decryptMessage(key, tampered, v.appid);
    expect(out.message).not.toBe(v.expected.msg);
    expect(out.message.slice(2)).toBe(v.expected.msg.slice(2));
    expect(verifyMsgSignature(signed!.token, signed!.timestamp, signed!.nonce, tampered, signed!.expected)).toBe(false);
  });
});

describe('encryptMessage (encrypt vectors)', () => {
  it.each(vectors.encrypt)('$id', (v) => {
    const key = deriveAesKey(v.encodingAESKey);
    const random = Buffer.from(v.randomHex, 'hex');
    const encrypt = encryptMessage(key, v.msg, v.appid, random);
    expect(encrypt).toBe(v.expected);

    const cipherBytes = Buffer.from(encrypt, 'base64').length;
    const msgBytes = Buffer.byteLength(v.msg, 'utf8');
    const full = 20 + msgBytes + Buffer.byteLength(v.appid, 'utf8');
    if (v.expectedMsgByteLength !== undefined) expect(msgBytes).toBe(v.expectedMsgByteLength);
    if (v.expectedFullStrLength !== undefined) expect(full).toBe(v.expectedFullStrLength);
    if (v.expectedCipherByteLength !== undefined) expect(cipherBytes).toBe(v.expectedCipherByteLength);
    if (v.expectedPadLength !== undefined) expect(cipherBytes - full).toBe(v.expectedPadLength);

    const back = decryptMessage(key, encrypt, v.appid);
    expect(back.message).toBe(v.msg);
    expect(back.random.equals(random)).toBe(true);
  });

  it.each(vectors.encrypt)('$id: a fresh random prefix changes the ciphertext, not the message', (v) => {
    const key = deriveAesKey(v.encodingAESKey);
    const a = encryptMessage(key, v.msg, v.appid);
    const b = encryptMessage(key, v.msg, v.appid);
    expect(a).not.toBe(b);
    expect(a).not.toBe(v.expected);
    expect(decryptMessage(key, a, v.appid).message).toBe(v.msg);
    expect(decryptMessage(key, b, v.appid).message).toBe(v.msg);
  });

  it('rejects a random prefix that is not 16 bytes', () => {
    const v = vectors.encrypt[0]!;
    const key = deriveAesKey(v.encodingAESKey);
    for (const n of [0, 15, 17, 32]) {
      expect(() => encryptMessage(key, v.msg, v.appid, Buffer.alloc(n))).toThrow(RangeError);
    }
  });

  it('encrypts the empty message with an empty appid into one 32-byte block', () => {
    const key = deriveAesKey(vectors.aes_key[0]!.encodingAESKey);
    const encrypt = encryptMessage(key, '', '');
    expect(Buffer.from(encrypt, 'base64')).toHaveLength(32);
    expect(decryptMessage(key, encrypt, '').message).toBe('');
  });
});

describe('decryptMessageWithKeys (key rotation)', () => {
  it.each(vectors.decrypt)('$id: current key first, previous key second', (v) => {
    const key = deriveAesKey(v.encodingAESKey);
    expect(decryptMessageWithKeys([key, otherKey], v.encrypt, v.appid)).toMatchObject({ message: v.expected.msg, keyIndex: 0 });
    expect(decryptMessageWithKeys([otherKey, key], v.encrypt, v.appid)).toMatchObject({ message: v.expected.msg, keyIndex: 1 });
    catchWxError('WX_ERR_DECRYPT', () => decryptMessageWithKeys([otherKey], v.encrypt, v.appid));
    catchWxError('WX_ERR_DECRYPT', () => decryptMessageWithKeys([key, otherKey], v.encrypt, otherAppId(v.appid)));
    catchWxError('WX_ERR_DECRYPT', () => decryptMessageWithKeys([key], v.encrypt.slice(0, -4), v.appid));
  });

  it('refuses an empty key list', () => {
    const v = vectors.decrypt[0]!;
    expect(() => decryptMessageWithKeys([], v.encrypt, v.appid)).toThrow(RangeError);
  });
});

describe('http_requests samples', () => {
  it.each(vectors.http_requests)('$id', (v) => {
    const { signature, timestamp, nonce, msg_signature: msgSignature, echostr } = v.query;
    expect(signature && timestamp && nonce, 'signature, timestamp and nonce are always present').toBeTruthy();
    expect(verifySignature(v.token, timestamp!, nonce!, signature!)).toBe(true);
    expect(verifySignature(v.token, timestamp!, `${nonce!}0`, signature!)).toBe(false);

    if (v.method === 'GET') {
      expect(echostr).toBe(v.expectResponseBody);
      return;
    }

    const encrypt = fieldText(v.body!, 'Encrypt');
    expect(encrypt, 'every POST sample here is encrypted').toBeDefined();
    expect(v.query['encrypt_type']).toBe('aes');
    expect(verifyMsgSignature(v.token, timestamp!, nonce!, encrypt!, msgSignature!)).toBe(true);
    expect(verifyMsgSignature(v.token, timestamp!, nonce!, encrypt!, signature!)).toBe(false);

    const out = decryptMessage(deriveAesKey(v.encodingAESKey!), encrypt!, v.appid!);
    expect(out.message).toBe(v.expectDecrypted);
    if (v.randomAscii !== undefined) expect(out.random.toString('latin1')).toBe(v.randomAscii);
    for (const [name, value] of Object.entries(v.expectFields ?? {})) expect(fieldText(out.message, name), name).toBe(value);
    if (v.query['openid'] !== undefined) expect(fieldText(out.message, 'FromUserName')).toBe(v.query['openid']);

    // Compatible mode carries the plaintext fields beside Encrypt; they must agree with it.
    const plainFields = [...v.body!.matchAll(/<(\w+)>/g)].map((m) => m[1]!).filter((n) => n !== 'xml' && n !== 'Encrypt');
    for (const name of plainFields) expect(fieldText(v.body!, name), name).toBe(fieldText(out.message, name));
  });
});
