/**
 * `@wxrelay/shared`: everything at once, as before the subpaths. Code that needs one part imports
 * its subpath instead (`/protocol`, `/queue`, `/config`, `/logging`), so that it loads only that.
 *
 * @module
 */
export * from './protocol/index.js';
export * from './config.js';
export * from './logger.js';
export * from './queue.js';
export * from './metrics-server.js';
export * from './redis-durability.js';
