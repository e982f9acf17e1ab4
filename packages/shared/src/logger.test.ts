import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, maskId, scrubSecrets, serializeRequest, shorten, stripQuery } from './logger.js';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  return { lines, destination, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('createLogger', () => {
  it('writes NDJSON with the service name', () => {
    const out = capture();
    const log = createLogger({ name: 'gateway', destination: out.destination });
    log.info({ jobId: 'msg-1' }, 'queued');
    expect(out.records()[0]).toMatchObject({ service: 'gateway', jobId: 'msg-1', msg: 'queued', level: 30 });
  });

  it('never writes the AppSecret, access tokens or AES keys, at any nesting a caller is likely to use', () => {
    const out = capture();
    const log = createLogger({ name: 'worker', destination: out.destination });
    const secrets = { appSecret: 'APPSECRET-123', access_token: 'ACCESS-TOKEN-456', encodingAesKey: 'K'.repeat(43), apiKey: 'sk-LLMKEY' };
    log.info(secrets, 'top level');
    log.info({ config: { wechat: secrets } }, 'nested');
    log.info({ wechat: { appSecret: 'APPSECRET-123' }, token: { accessToken: 'ACCESS-TOKEN-456' } }, 'one level');
    log.error({ err: new Error('GET /cgi-bin/message/custom/send?access_token=ACCESS-TOKEN-456 failed') }, 'send failed');
    const text = out.lines.join('\n');
    for (const s of Object.values(secrets)) expect(text).not.toContain(s);
    expect(text).toContain('[Redacted]');
    expect(out.lines).toHaveLength(4);
  });

  it('logs a request without its query string (openid and signature live there)', () => {
    const out = capture();
    const log = createLogger({ name: 'gateway', destination: out.destination });
    log.info({ req: { method: 'POST', url: '/wx?signature=abc&openid=oUSER123&timestamp=1', id: 'r1' } }, 'incoming');
    const text = out.lines.join('\n');
    expect(text).not.toContain('oUSER123');
    expect(text).not.toContain('signature=');
    expect(out.records()[0]).toMatchObject({ req: { method: 'POST', url: '/wx' } });
  });
});

describe('helpers', () => {
  it('strip queries and scrub secrets from free text', () => {
    expect(stripQuery('/wx?openid=x')).toBe('/wx');
    expect(stripQuery('/healthz')).toBe('/healthz');
    expect(scrubSecrets('url?access_token=abc&x=1 and secret=zz')).toBe('url?access_token=[Redacted]&x=1 and secret=[Redacted]');
    expect(serializeRequest({ method: 'GET', url: '/wx?echostr=1' })).toMatchObject({ url: '/wx' });
  });
});

describe('maskId and shorten', () => {
  it('masks an openid to its first 4 and last 2 characters, a short id to its first one', () => {
    expect(maskId('oia2TjuEGTNoeX76QEjQNrcURxG8')).toBe('oia2…G8');
    expect(maskId('u-log')).toBe('u…');
    expect(maskId('')).toBe('');
  });

  it('shortens by code points, with … only when something was cut', () => {
    expect(shorten('0123456789abcdef', 6)).toBe('012345…');
    expect(shorten('short', 6)).toBe('short');
    expect(shorten('😀😀😀', 2)).toBe('😀😀…');
  });
});
