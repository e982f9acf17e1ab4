import { describe, expect, it } from 'vitest';
import { loadVectors } from '../test-support/vectors.js';
import { computeMsgSignature, computeSignature, verifyMsgSignature, verifySignature } from './signature.js';

const vectors = loadVectors();

/** Changes the last character to a different one of the same class, keeping the length. */
function tamper(value: string): string {
  const last = value.at(-1) ?? '';
  const replacement = last === '1' ? '2' : last === 'a' ? 'b' : /[0-9]/.test(last) ? '1' : 'a';
  return value.slice(0, -1) + replacement;
}

describe('computeSignature / verifySignature (plain_signature vectors)', () => {
  it.each(vectors.plain_signature)('$id', (v) => {
    expect(computeSignature(v.token, v.timestamp, v.nonce)).toBe(v.expected);
    expect(verifySignature(v.token, v.timestamp, v.nonce, v.expected)).toBe(true);
    if (v.sortedConcat !== undefined) {
      expect([v.token, v.timestamp, v.nonce].sort().join('')).toBe(v.sortedConcat);
    }
  });

  it.each(vectors.plain_signature)('$id: tampered token, timestamp or nonce is rejected', (v) => {
    expect(verifySignature(tamper(v.token), v.timestamp, v.nonce, v.expected)).toBe(false);
    expect(verifySignature(v.token, tamper(v.timestamp), v.nonce, v.expected)).toBe(false);
    expect(verifySignature(v.token, v.timestamp, tamper(v.nonce), v.expected)).toBe(false);
    expect(verifySignature(v.token, v.timestamp, v.nonce, tamper(v.expected))).toBe(false);
  });

  it.each(vectors.plain_signature)('$id: malformed signatures are false, never a throw', (v) => {
    for (const bad of ['', v.expected.slice(0, 39), `${v.expected}0`, `${v.expected.slice(0, 39)}g`, ` ${v.expected.slice(1)}`]) {
      expect(verifySignature(v.token, v.timestamp, v.nonce, bad)).toBe(false);
    }
    expect(verifySignature(v.token, v.timestamp, v.nonce, v.expected.toUpperCase())).toBe(true);
  });

  it('sorts byte-wise, not by locale (digits < uppercase < lowercase)', () => {
    // localeCompare would put "abc123" before "Zz9token"; the vector pins the byte order.
    const v = vectors.plain_signature.find((x) => x.id === 'self-case-sensitive-sort');
    expect(v).toBeDefined();
    const { token, timestamp, nonce, expected } = v!;
    const localeOrder = [token, timestamp, nonce].sort((a, b) => a.localeCompare(b)).join('');
    expect(localeOrder).not.toBe(v!.sortedConcat);
    expect(computeSignature(token, timestamp, nonce)).toBe(expected);
    expect(computeSignature(nonce, token, timestamp)).toBe(expected);
  });
});

describe('computeMsgSignature / verifyMsgSignature (msg_signature vectors)', () => {
  it.each(vectors.msg_signature)('$id', (v) => {
    expect(computeMsgSignature(v.token, v.timestamp, v.nonce, v.encrypt)).toBe(v.expected);
    expect(verifyMsgSignature(v.token, v.timestamp, v.nonce, v.encrypt, v.expected)).toBe(true);
  });

  it.each(vectors.msg_signature)('$id: tampered token, timestamp, nonce or Encrypt is rejected', (v) => {
    expect(verifyMsgSignature(tamper(v.token), v.timestamp, v.nonce, v.encrypt, v.expected)).toBe(false);
    expect(verifyMsgSignature(v.token, tamper(v.timestamp), v.nonce, v.encrypt, v.expected)).toBe(false);
    expect(verifyMsgSignature(v.token, v.timestamp, tamper(v.nonce), v.encrypt, v.expected)).toBe(false);
    expect(verifyMsgSignature(v.token, v.timestamp, v.nonce, tamper(v.encrypt), v.expected)).toBe(false);
    expect(verifyMsgSignature(v.token, v.timestamp, v.nonce, v.encrypt, tamper(v.expected))).toBe(false);
  });

  it.each(vectors.msg_signature)('$id: malformed msg_signatures are false, never a throw', (v) => {
    for (const bad of ['', v.expected.slice(0, 38), `${v.expected}ff`, `${v.expected.slice(0, 39)}z`]) {
      expect(verifyMsgSignature(v.token, v.timestamp, v.nonce, v.encrypt, bad)).toBe(false);
    }
  });

  it.each(vectors.msg_signature)('$id: the plain signature is not a msg_signature', (v) => {
    const plain = computeSignature(v.token, v.timestamp, v.nonce);
    expect(verifyMsgSignature(v.token, v.timestamp, v.nonce, v.encrypt, plain)).toBe(false);
  });
});
