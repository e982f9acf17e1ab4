/**
 * Peer: wechat (node-webot, express/connect middleware). Verifies, parses with xml2js, decrypts
 * in safe mode and answers with `res.reply(text)` (encrypted in safe mode), as its README shows.
 */
import { createRequire } from 'node:module';
import express, { type RequestHandler } from 'express';

type ReplyResponse = { reply(content: string): void };
const require = createRequire(import.meta.url);
const wechat = require('wechat') as (
  config: { token: string; appid: string; encodingAESKey: string },
  handle: (req: unknown, res: ReplyResponse) => void,
) => RequestHandler;

const config = { token: process.env.WECHAT_TOKEN ?? '', appid: process.env.WECHAT_APP_ID ?? '', encodingAESKey: process.env.WECHAT_ENCODING_AES_KEY ?? '' };
const app = express();
app.disable('x-powered-by');
app.use('/wx', wechat(config, (_req, res) => res.reply('收到')));
app.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
