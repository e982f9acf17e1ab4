import Fastify, { type FastifyInstance } from 'fastify';
import type { FakeWechatContext } from './context.js';
import { fakeWechatApiPlugin } from './plugin.js';

/** The fake WeChat API as a fastify app of its own, not listening. */
export function buildFakeWechatApp(context: FakeWechatContext): FastifyInstance {
  // forceCloseConnections: close() must not wait on requests held by an injected delay.
  const app = Fastify({ logger: false, forceCloseConnections: true, bodyLimit: 16 * 1024 * 1024 });
  void app.register(fakeWechatApiPlugin, { context });
  return app;
}
