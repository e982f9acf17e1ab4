export * from './redis.js';
export * from './build.js';
export * from './process.js';
export * from './wait.js';
export * from './ndjson.js';
export * from './redis-topologies.js';
