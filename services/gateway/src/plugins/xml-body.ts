import fp from 'fastify-plugin';

/** WeChat's bodies are small; anything larger is not a callback (413). */
export const MAX_BODY_BYTES = 64 * 1024;

/**
 * Reads every POST body as UTF-8 text, whatever its Content-Type says: WeChat sends `text/xml`,
 * but proxies and tools change it (or drop it). The XML itself is parsed by the route, after
 * the signature check, so unauthenticated bodies cost no parsing.
 */
export const xmlBodyPlugin = fp(
  (app, _opts, done) => {
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: MAX_BODY_BYTES }, (_req, body, next) => {
      next(null, body);
    });
    done();
  },
  { name: 'wxrelay-xml-body', fastify: '5.x' },
);
