/**
 * Peer: co-wechat (koa middleware). Verifies the signature (msg_signature in safe mode), parses
 * with xml2js, decrypts in safe mode, and answers with a passive text reply (encrypted in safe
 * mode), as its README shows. No logging.
 */
import { createRequire } from 'node:module';
import Koa from 'koa';

interface CoWechat {
  middleware(handle: (message: Record<string, unknown>, ctx: unknown) => Promise<string>): Koa.Middleware;
}
const require = createRequire(import.meta.url);
const coWechat = require('co-wechat') as (config: { token: string; appid: string; encodingAESKey: string }) => CoWechat;

const config = { token: process.env.WECHAT_TOKEN ?? '', appid: process.env.WECHAT_APP_ID ?? '', encodingAESKey: process.env.WECHAT_ENCODING_AES_KEY ?? '' };
const app = new Koa();
app.use(coWechat(config).middleware(async () => Promise.resolve('收到')));
app.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
