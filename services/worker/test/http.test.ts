import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpTransport, HttpFailure, requestJson } from '../src/http.js';

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void;

let server: Server;
let base: string;
let handler: Handler = (_req, _body, res) => res.end('{}');
let connections = 0;
const seen: { method?: string; url?: string; headers: IncomingMessage['headers']; body: string }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      handler(req, body, res);
    });
  });
  server.on('connection', () => (connections += 1));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const transport = createHttpTransport();
const failure = (p: Promise<unknown>) => p.then(() => expect.fail('resolved'), (e: unknown) => e as HttpFailure);

describe('requestJson over the undici transport (a real HTTP server)', () => {
  it('POSTs JSON with the headers, parses the answer, and keeps the connection alive', async () => {
    handler = (_req, body, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ errcode: 0, echo: JSON.parse(body) as unknown }));
    const before = connections;
    const a = await requestJson(`${base}/cgi-bin/x?access_token=T`, { touser: 'o', text: '你好' }, { transport, timeoutMs: 1_000, headers: { authorization: 'Bearer k' } });
    expect(a).toEqual({ status: 200, json: { errcode: 0, echo: { touser: 'o', text: '你好' } } });
    expect(seen.at(-1)).toMatchObject({ method: 'POST', url: '/cgi-bin/x?access_token=T', headers: { 'content-type': 'application/json; charset=utf-8', authorization: 'Bearer k' } });
    for (let n = 0; n < 20; n++) expect((await requestJson(`${base}/cgi-bin/x`, { n }, { transport, timeoutMs: 1_000 })).json).toEqual({ errcode: 0, echo: { n } });
    // Keep-alive: 21 calls in a row, one or two connections (a socket returns to the pool a tick after its body ends).
    expect(connections - before).toBeLessThanOrEqual(2);
  });

  it('GETs when there is no body; returns a 4xx with its body and an empty body as undefined', async () => {
    handler = (_req, _body, res) => res.writeHead(403).end('{"errcode":40164}');
    expect(await requestJson(`${base}/token?secret=s`, undefined, { transport, timeoutMs: 1_000 })).toEqual({ status: 403, json: { errcode: 40164 } });
    expect(seen.at(-1)).toMatchObject({ method: 'GET', body: '' });
    handler = (_req, _body, res) => res.writeHead(204).end();
    expect(await requestJson(`${base}/x`, {}, { transport, timeoutMs: 1_000 })).toEqual({ status: 204, json: undefined });
  });

  it('throws HttpFailure on a 5xx and on a body that is not JSON, with the status', async () => {
    handler = (_req, _body, res) => res.writeHead(502).end('bad gateway');
    expect(await failure(requestJson(`${base}/x`, {}, { transport, timeoutMs: 1_000 }))).toMatchObject({ name: 'HttpFailure', code: 'WX_ERR_HTTP', status: 502, timedOut: false });
    handler = (_req, _body, res) => res.writeHead(200).end('<html>');
    expect(await failure(requestJson(`${base}/x`, {}, { transport, timeoutMs: 1_000 }))).toMatchObject({ status: 200, message: '/x: HTTP 200 with a body that is not JSON' });
  });

  it('times out waiting for the headers, and waiting for the rest of the body', async () => {
    handler = () => undefined; // never answers
    const headers = await failure(requestJson(`${base}/slow?access_token=SECRET`, {}, { transport, timeoutMs: 100 }));
    expect(headers).toBeInstanceOf(HttpFailure);
    expect(headers).toMatchObject({ code: 'WX_ERR_HTTP', timedOut: true, message: '/slow: timed out after 100 ms' });
    handler = (_req, _body, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"errcode":'); // and nothing more
    };
    const body = await failure(requestJson(`${base}/half?access_token=SECRET`, {}, { transport, timeoutMs: 100 }));
    expect(body).toMatchObject({ timedOut: true, status: 200 });
    expect(body.message).not.toContain('SECRET');
  });

  it('stops when the caller aborts, and reports a refused connection without a status', async () => {
    handler = () => undefined;
    const stop = new AbortController();
    const call = failure(requestJson(`${base}/x`, {}, { transport, timeoutMs: 5_000, signal: stop.signal }));
    setTimeout(() => stop.abort(new Error('shutting down')), 20);
    expect(await call).toMatchObject({ timedOut: false });
    const refused = await failure(requestJson('http://127.0.0.1:1/x?access_token=SECRET', {}, { transport, timeoutMs: 1_000 }));
    expect(refused).toMatchObject({ timedOut: false, status: undefined });
    expect(refused.message).toMatch(/^\/x: /);
    expect(refused.message).not.toContain('SECRET');
  });
});
