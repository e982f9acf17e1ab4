export * from './redis.js';
export * from './build.js';
export * from './process.js';
