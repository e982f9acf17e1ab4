import { connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { LINGER_LIMITS } from '../src/plugins/xml-body.js';
import { plainRequest, textXml, useGateway } from './support.js';

/*
 * A body over the limit is refused with 413 while the client may still be sending. Closing the
 * socket then (with its unread bytes in the kernel) makes the kernel answer with a reset, and the
 * client sees EPIPE/ECONNRESET instead of the 413. The gateway reads and discards the rest of the
 * body for a bounded time and size first (nginx's lingering close). Real sockets over loopback.
 */

const gw = useGateway();
let port: number;

beforeAll(async () => {
  await gw.app.listen({ port: 0, host: '127.0.0.1' });
  port = (gw.app.server.address() as AddressInfo).port;
});

interface Outcome {
  /** Every byte the server sent back, as text. */
  readonly response: string;
  /** The first socket error the client met, if any (EPIPE, ECONNRESET…). */
  readonly error: string | undefined;
  /** Body bytes the client managed to write before it stopped (or was stopped). */
  readonly sent: number;
}

function writeAsync(socket: Socket, data: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => socket.write(data, (err) => (err === undefined || err === null ? resolve() : reject(err))));
}

interface PostOptions {
  /** Body chunks to send (Infinity: never stop). */
  readonly chunks: number;
  readonly chunkBytes?: number;
  /** Send a Content-Length for the whole body instead of chunked framing. */
  readonly contentLength?: boolean;
  /** A pause between chunks, ms (0: just a turn of the event loop). */
  readonly pauseMs?: number;
  /** Keep sending after the server's FIN (Node's default is to end our side too). */
  readonly halfOpen?: boolean;
}

/** Streams a POST body (a MsgId-bearing signed URL) and reads whatever comes back until the socket closes. */
function post(opts: PostOptions): Promise<Outcome> {
  const chunkBytes = opts.chunkBytes ?? 64 * 1024;
  const { url } = plainRequest(textXml());
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: opts.halfOpen === true });
  let response = '';
  let error: string | undefined;
  let sent = 0;
  let closed = false;
  socket.on('data', (d: Buffer) => (response += d.toString('latin1')));
  socket.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code ?? err.message));
  const done = new Promise<void>((resolve) => socket.once('close', () => ((closed = true), resolve())));
  const data = Buffer.alloc(chunkBytes, 0x61);
  const chunk = opts.contentLength === true ? data : Buffer.concat([Buffer.from(`${chunkBytes.toString(16)}\r\n`), data, Buffer.from('\r\n')]);
  const framing = opts.contentLength === true ? `Content-Length: ${opts.chunks * chunkBytes}` : 'Transfer-Encoding: chunked';
  const send = async (): Promise<void> => {
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    await writeAsync(socket, `POST ${url} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n${framing}\r\n\r\n`);
    for (let i = 0; i < opts.chunks && !closed && error === undefined; i++) {
      await writeAsync(socket, chunk);
      sent += chunkBytes;
      // Slowly-ish: the server gets turns between chunks, as with a real uploader on a network.
      await new Promise((r) => (opts.pauseMs === undefined ? setImmediate(r) : setTimeout(r, opts.pauseMs)));
    }
    if (!closed && error === undefined) {
      if (opts.contentLength !== true) await writeAsync(socket, '0\r\n\r\n');
      socket.end();
    }
  };
  return send()
    .catch(() => undefined)
    .then(() => done)
    .then(() => ({ response, error, sent }));
}

const statusOf = (o: Outcome): string => /^HTTP\/1\.1 (\d{3})/.exec(o.response)?.[1] ?? `none (${o.error ?? 'no error'})`;

describe('a body over the limit (lingering close)', () => {
  it('a 2 MiB chunked body gets its 413, every time (20 runs)', async () => {
    const outcomes: Outcome[] = [];
    for (let i = 0; i < 20; i++) outcomes.push(await post({ chunks: 32 }));
    expect(outcomes.map(statusOf)).toEqual(Array.from({ length: 20 }, () => '413'));
    for (const o of outcomes) expect(o.response.toLowerCase()).toContain('connection: close');
  }, 120_000);

  it('a 2 MiB body with a Content-Length over the limit gets its 413 too (5 runs)', async () => {
    const outcomes: Outcome[] = [];
    for (let i = 0; i < 5; i++) outcomes.push(await post({ chunks: 32, contentLength: true }));
    expect(outcomes.map(statusOf)).toEqual(Array.from({ length: 5 }, () => '413'));
  }, 60_000);

  it('a client that never stops sending is cut off after the byte bound', async () => {
    // It would send forever: the test ends only because the server closes the socket.
    const outcome = await post({ chunks: Number.POSITIVE_INFINITY, halfOpen: true });
    expect(outcome.sent).toBeGreaterThan(LINGER_LIMITS.maxBytes);
    // Bounded: what the kernels' buffers hold on top of the bound, not an endless upload.
    expect(outcome.sent).toBeLessThan(LINGER_LIMITS.maxBytes + 64 * 1024 * 1024);
  }, 60_000);

  it('a client that trickles forever is cut off after the time bound', async () => {
    // 1 KiB every 20 ms would take minutes to reach the byte bound: the time bound closes it.
    const outcome = await post({ chunks: Number.POSITIVE_INFINITY, chunkBytes: 1024, pauseMs: 20, halfOpen: true });
    expect(outcome.sent).toBeLessThan(LINGER_LIMITS.maxBytes);
    expect(statusOf(outcome)).toBe('413');
  }, 60_000);

  it('the gateway still serves afterwards', async () => {
    const req = plainRequest(textXml());
    const res = await fetch(`http://127.0.0.1:${port}${req.url}`, { method: 'POST', body: req.payload, headers: { 'content-type': 'text/xml' } });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('success');
  });
});
