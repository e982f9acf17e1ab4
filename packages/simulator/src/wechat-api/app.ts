import Fastify, { type FastifyInstance } from 'fastify';
import type { FakeWechatContext } from './context.js';
import { mediaRoutes } from './media-routes.js';
import { messageRoutes } from './message-routes.js';
import { tokenRoutes } from './token-routes.js';

/**
 * The fake WeChat API as a fastify app, not listening. Bodies reach the routes as raw Buffers:
 * WeChat's answers depend on the raw text (44002 empty, 47001 not JSON, 40033 `\uXXXX`), not on
 * the Content-Type header, so no body parser of fastify's may answer first.
 */
export function buildFakeWechatApp(context: FakeWechatContext): FastifyInstance {
  // forceCloseConnections: close() must not wait on requests held by an injected delay.
  const app = Fastify({ logger: false, forceCloseConnections: true, bodyLimit: 16 * 1024 * 1024 });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => {
    done(null, body);
  });
  void app.register(tokenRoutes, { context });
  void app.register(messageRoutes, { context });
  void app.register(mediaRoutes, { context });
  return app;
}
