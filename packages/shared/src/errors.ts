/**
 * Every error wxrelay raises on purpose carries one of these stable codes. Callers and tests match
 * on the code, never on the prose; the gateway maps code → HTTP status in one table.
 */
export type WxErrorCode =
  /** A `signature` or `msg_signature` did not match. */
  | 'WX_ERR_SIGNATURE'
  /** Ciphertext could not be authenticated/decrypted: bad base64, length, padding, or appid. One code for all. */
  | 'WX_ERR_DECRYPT'
  /** The EncodingAESKey is not 43 characters of [A-Za-z0-9] decoding to 32 bytes. */
  | 'WX_ERR_AES_KEY'
  /** The XML body is not well-formed, has a DOCTYPE/entity, the wrong root, or lacks a required field. */
  | 'WX_ERR_XML'
  /** A request parameter is missing or malformed. */
  | 'WX_ERR_PARAM'
  /** A callback's timestamp is outside the accepted window. */
  | 'WX_ERR_TIMESTAMP'
  /** Plain (unencrypted) callbacks were refused by configuration. */
  | 'WX_ERR_PLAIN_REFUSED'
  /** The queue (Redis) did not accept a job in time. */
  | 'WX_ERR_ENQUEUE'
  /** Configuration is invalid (every problem listed in the message). */
  | 'WX_ERR_CONFIG'
  /** A WeChat API call failed (errcode in `details`). */
  | 'WX_ERR_API'
  /** An outbound HTTP call timed out or failed at the network level. */
  | 'WX_ERR_NETWORK';

/**
 * The one error class of the protocol core. Its message never holds ciphertext, keys, tokens or
 * signatures: callers may log it as it is.
 */
export class WxError extends Error {
  override readonly name = 'WxError';
  readonly code: WxErrorCode;

  constructor(code: WxErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** True when `err` is a {@link WxError}, optionally with the given code. */
export function isWxError(err: unknown, code?: WxErrorCode): err is WxError {
  return err instanceof WxError && (code === undefined || err.code === code);
}
