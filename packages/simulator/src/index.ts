export * from './wechat-api.js';
export * from './fake-llm.js';
export * from './inbound-xml.js';
export * from './callback-client.js';
export * from './url-verification.js';
export * from './simulator-server.js';
export * from './sim-event-stream.js';
