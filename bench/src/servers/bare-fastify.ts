/**
 * The ceiling: fastify answering `success` to POST /wx, with the body read as a string and nothing
 * else (no verification, no parsing, no Redis). Same fastify version and body handling as the gateway.
 */
import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: 64 * 1024 }, (_req, body, done) => done(null, body));
app.post('/wx', (_req, reply) => reply.type('text/plain; charset=utf-8').send('success'));
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });
process.on('SIGTERM', () => process.exit(0));
