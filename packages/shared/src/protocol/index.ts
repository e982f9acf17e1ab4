/**
 * `@wxrelay/shared/protocol`: the WeChat protocol core alone — signatures, AES, the XML reader,
 * typed inbound messages, the safe-mode envelope, passive replies and dedup keys.
 *
 * Pure: strings and Buffers in, typed results or a {@link WxError} out; no I/O, no logging, no
 * environment. Its only dependency is fast-xml-parser (plus `node:crypto`), so it loads without the
 * logger, the config schema or Redis (a test holds it to that).
 *
 * @module
 */
export * from '../errors.js';
export * from './signature.js';
export * from './crypto.js';
export * from './messages.js';
export * from './xml-parse.js';
export * from './inbound.js';
export * from './envelope.js';
export * from './reply.js';
export * from './dedup.js';
