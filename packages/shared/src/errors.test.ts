import { describe, expect, it } from 'vitest';
import { WxError, isWxError } from './errors.js';

describe('WxError', () => {
  it('carries a stable code and is recognised by isWxError', () => {
    const err = new WxError('WX_ERR_XML', 'bad xml');
    expect(err.code).toBe('WX_ERR_XML');
    expect(isWxError(err)).toBe(true);
    expect(isWxError(err, 'WX_ERR_XML')).toBe(true);
    expect(isWxError(err, 'WX_ERR_SIGNATURE')).toBe(false);
    expect(isWxError(new Error('x'))).toBe(false);
  });
});
