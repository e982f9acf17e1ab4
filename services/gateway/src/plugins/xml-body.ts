import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import fp from 'fastify-plugin';

/** WeChat's bodies are small; anything larger is not a callback (413). */
export const MAX_BODY_BYTES = 64 * 1024;

/** How long, and how much more of a refused body, the gateway reads before it closes (see {@link lingerAfterRefusal}). */
export interface LingerLimits {
  readonly maxMs: number;
  readonly maxBytes: number;
}

export const LINGER_LIMITS: LingerLimits = { maxMs: 5_000, maxBytes: 8 * 1024 * 1024 };

const kLingering = Symbol('wxrelay.lingering');

/**
 * A refusal sent before its request's body was read to the end (413, a broken Content-Length…)
 * goes out with `Connection: close`, and Node then closes the socket as soon as the response is
 * written. With the rest of the body still arriving, the kernel answers the unread bytes with a
 * reset, and a client that is still sending sees EPIPE/ECONNRESET instead of the refusal (and may
 * lose the refusal already in its receive buffer).
 *
 * So, as nginx's lingering close does: once the response is written, half-close (FIN after the
 * response), keep reading and discarding the body, and close when it ends, when the client closes,
 * or at the latest after `maxMs` or `maxBytes` more. Nothing is kept: the bytes are dropped.
 */
export function lingerAfterRefusal(req: IncomingMessage, limits: LingerLimits = LINGER_LIMITS): void {
  const socket = req.socket as Socket & { [kLingering]?: true };
  if (req.complete || socket.destroyed || socket[kLingering] === true) return;
  socket[kLingering] = true;

  let timer: NodeJS.Timeout | undefined;
  let lingering = false;
  // Socket.prototype.destroySoon: end (after what is written), then destroy once that is flushed.
  const close = (): void => Socket.prototype.destroySoon.call(socket);
  let discarded = 0;
  req.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > limits.maxBytes) socket.destroy();
  });
  req.once('end', () => {
    if (lingering) close();
  });
  socket.once('end', close);
  socket.once('close', () => clearTimeout(timer));
  // Node ends a `Connection: close` response's socket with destroySoon(); this one waits instead.
  socket.destroySoon = function lingeringClose(this: Socket): void {
    if (req.complete) return close();
    lingering = true;
    if (this.writable) this.end();
    timer = setTimeout(() => this.destroy(), limits.maxMs);
    timer.unref();
  };
}

/**
 * Reads every POST body as UTF-8 text, whatever its Content-Type says: WeChat sends `text/xml`,
 * but proxies and tools change it (or drop it). The XML itself is parsed by the route, after
 * the signature check, so unauthenticated bodies cost no parsing. A body refused before it was
 * read to its end (too large) gets a lingering close, so that its sender sees the 413.
 */
export const xmlBodyPlugin = fp(
  (app, _opts, done) => {
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: MAX_BODY_BYTES }, (_req, body, next) => {
      next(null, body);
    });
    app.addHook('onError', (request, _reply, _error, next) => {
      lingerAfterRefusal(request.raw);
      next();
    });
    done();
  },
  { name: 'wxrelay-xml-body', fastify: '5.x' },
);
