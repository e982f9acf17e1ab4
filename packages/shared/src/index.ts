export * from './errors.js';
export * from './config.js';
export * from './logger.js';
export * from './queue.js';
export * from './protocol/signature.js';
export * from './protocol/crypto.js';
export * from './metrics-server.js';
