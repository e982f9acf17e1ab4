export * from './errors.js';
export * from './config.js';
export * from './logger.js';
export * from './queue.js';
