import fp from 'fastify-plugin';

/** How long /healthz waits for Redis to answer a PING. */
const PING_TIMEOUT_MS = 500;

/** `GET /healthz`: 200 when Redis answers a ping, 503 otherwise (for load balancers and compose). */
export const healthPlugin = fp(
  (app, _opts, done) => {
    app.get('/healthz', async (_req, reply) => {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          app.redis.ping(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error('ping timed out')), PING_TIMEOUT_MS);
          }),
        ]);
        return await reply.code(200).send({ status: 'ok', redis: 'up' });
      } catch {
        return await reply.code(503).send({ status: 'unavailable', redis: 'down' });
      } finally {
        clearTimeout(timer);
      }
    });
    done();
  },
  { name: 'wxrelay-health', dependencies: ['wxrelay-redis'], fastify: '5.x' },
);
