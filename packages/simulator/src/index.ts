export * from './wechat-api.js';
export * from './fake-llm.js';
