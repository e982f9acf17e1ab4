import { describe, expect, it } from 'vitest';
import { computeSignature } from '@wxrelay/shared';
import { TOKEN, useGateway } from './support.js';

describe('GET /wx (URL verification)', () => {
  const gw = useGateway();

  const verifyUrl = (params: Record<string, string>) => `/wx?${new URLSearchParams(params).toString()}`;

  it('answers the echostr as the whole text/plain body when the signature holds', async () => {
    const timestamp = '1714036504';
    const nonce = '1514711492';
    const res = await gw.app.inject({ method: 'GET', url: verifyUrl({ signature: computeSignature(TOKEN, timestamp, nonce), timestamp, nonce, echostr: '4375120948345356249' }) });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.body).toBe('4375120948345356249');
  });

  it('refuses a wrong signature with 403 and never echoes the echostr', async () => {
    const res = await gw.app.inject({ method: 'GET', url: verifyUrl({ signature: 'f464b24fc39322e44b38aa78f5edd27bd1441696', timestamp: '1714036504', nonce: '1514711492', echostr: 'ECHO-SECRET-42' }) });
    expect(res.statusCode).toBe(403);
    expect(res.body).not.toContain('ECHO-SECRET-42');
    const refusal = gw.logs.records().find((r) => r.code === 'WX_ERR_SIGNATURE');
    expect(refusal).toMatchObject({ status: 403, reason: expect.stringMatching(/signature/) });
  });

  it.each(['signature', 'timestamp', 'nonce', 'echostr'])('answers 400 when %s is missing', async (missing) => {
    const timestamp = '1714036504';
    const nonce = '1514711492';
    const params: Record<string, string> = { signature: computeSignature(TOKEN, timestamp, nonce), timestamp, nonce, echostr: 'ECHO-777' };
    delete params[missing];
    const res = await gw.app.inject({ method: 'GET', url: verifyUrl(params) });
    expect(res.statusCode).toBe(400);
    expect(res.body).not.toContain('ECHO-777');
  });

  it('never logs the query string', () => {
    const text = gw.logs.lines.join('\n');
    expect(text).not.toContain('ECHO-SECRET-42');
    expect(text).not.toContain('signature=');
  });
});
