import type { FastifyPluginCallback } from 'fastify';
import type { FakeWechatContext } from './context.js';
import { mediaRoutes } from './media-routes.js';
import { messageRoutes } from './message-routes.js';
import { tokenRoutes } from './token-routes.js';

/**
 * The fake WeChat API routes (`/cgi-bin/...`) as a fastify plugin. Deliberately *not* wrapped in
 * fastify-plugin: its content-type parsers stay inside its own encapsulation context, so a host
 * app (the simulator server) keeps its JSON parser for its other routes.
 *
 * Bodies reach the routes as raw Buffers: WeChat's answers depend on the raw text (44002 empty,
 * 47001 not JSON, 40033 `\uXXXX`), not on the Content-Type header, so no body parser of fastify's
 * may answer first.
 */
export const fakeWechatApiPlugin: FastifyPluginCallback<{ context: FakeWechatContext }> = (app, { context }, done) => {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => {
    done(null, body);
  });
  void app.register(tokenRoutes, { context });
  void app.register(messageRoutes, { context });
  void app.register(mediaRoutes, { context });
  done();
};
