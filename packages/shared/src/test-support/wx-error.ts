import { expect } from 'vitest';
import { isWxError, type WxErrorCode } from '../errors.js';

/** Runs `fn`, expects a WxError with `code`, and returns it for further checks. */
export function catchWxError(code: WxErrorCode, fn: () => unknown): Error {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `expected a WxError ${code}`).toBeInstanceOf(Error);
  expect(isWxError(thrown, code), `expected code ${code}, got ${String(thrown)}`).toBe(true);
  return thrown as Error;
}
