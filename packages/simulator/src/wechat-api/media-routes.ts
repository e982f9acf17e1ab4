import { randomBytes } from 'node:crypto';
import type { FastifyPluginCallback } from 'fastify';
import { answerApiCall, checkAccessToken, queryParam, type ApiAnswer } from './api-call.js';
import type { FakeWechatContext, Upload } from './context.js';

/**
 * Size limits per media type, bytes (docs/wechat-protocol.md §12). The official page says both 2 MB and 10 MB for images;
 * the fake accepts the larger, so a client keeping images ≤ 2 MB (as advised) passes either way.
 */
const MAX_BYTES: Readonly<Record<Upload['type'], number>> = {
  image: 10 * 1024 * 1024,
  voice: 2 * 1024 * 1024,
  video: 10 * 1024 * 1024,
  thumb: 64 * 1024,
};

function isMediaType(value: string | undefined): value is Upload['type'] {
  return value !== undefined && Object.hasOwn(MAX_BYTES, value);
}

async function readMediaField(contentType: string | undefined, body: Buffer | undefined): Promise<File | undefined> {
  if (contentType?.startsWith('multipart/form-data') !== true || body === undefined) return undefined;
  try {
    // undici's multipart parser, reached through a local Request: no dependency needed.
    const form = await new Request('http://fake.invalid/', { method: 'POST', headers: { 'content-type': contentType }, body }).formData();
    const media = form.get('media');
    return typeof media === 'string' || media === null ? undefined : media;
  } catch {
    return undefined;
  }
}

async function upload(context: FakeWechatContext, query: unknown, contentType: string | undefined, body: Buffer | undefined): Promise<ApiAnswer> {
  const tokenCode = checkAccessToken(context, query);
  if (tokenCode !== 0) return { errcode: tokenCode };
  const type = queryParam(query, 'type');
  if (!isMediaType(type)) return { errcode: 40004 };
  const media = await readMediaField(contentType, body);
  if (media === undefined) return { errcode: 41005 };
  if (media.size === 0 || media.size > MAX_BYTES[type]) return { errcode: 40006 };
  const at = context.now();
  const record: Upload = {
    type,
    mediaId: randomBytes(48).toString('base64url'),
    filename: media.name,
    contentType: media.type,
    size: media.size,
    at,
  };
  context.records.uploads.push(record);
  return { errcode: 0, body: { type, media_id: record.mediaId, created_at: Math.floor(at / 1000) } };
}

/** `POST /cgi-bin/media/upload?type=…`, multipart with one file field `media` (docs/wechat-protocol.md §12). */
export const mediaRoutes: FastifyPluginCallback<{ context: FakeWechatContext }> = (app, { context }, done) => {
  app.post('/cgi-bin/media/upload', (request, reply) =>
    answerApiCall(context, '/cgi-bin/media/upload', reply, () =>
      upload(context, request.query, request.headers['content-type'], request.body as Buffer | undefined),
    ),
  );
  done();
};
