/**
 * `@wxrelay/shared`: everything at once, as before the subpaths. Code that needs one part imports
 * its subpath instead (`/protocol`, `/queue`, `/config`, `/logging`), so that it loads only that.
 *
 * @module
 */
export * from './protocol/index.js';
export * from './config.js';
export * from './logger.js';
// The queue contract only: the door to BullMQ (`@wxrelay/shared/queue`) loads bullmq.
export * from './queue/contract.js';
export * from './queue/shards.js';
export * from './metrics-server.js';
export * from './backlog-gauges.js';
export * from './redis-durability.js';
