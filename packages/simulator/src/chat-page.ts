import { readFile } from 'node:fs/promises';
import type { FastifyPluginAsync } from 'fastify';

/**
 * The page's files, beside this module: `src/page/` when run from source, `dist/page/` once built
 * (the build copies them). No build step, no CDN.
 */
const PAGE_DIR = new URL('./page/', import.meta.url);

const FILES = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/chat.js': { file: 'chat.js', type: 'text/javascript; charset=utf-8' },
  '/chat.css': { file: 'chat.css', type: 'text/css; charset=utf-8' },
} as const;

/**
 * Scripts and styles only from this origin, no inline script, no framing; images may come from
 * anywhere (news cards show their picture).
 */
const CSP = "default-src 'self'; img-src * data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

/** Serves the chat page at `/` with its script and stylesheet. */
export const chatPage: FastifyPluginAsync = async (app) => {
  for (const [path, { file, type }] of Object.entries(FILES)) {
    const content = await readFile(new URL(file, PAGE_DIR), 'utf8');
    app.get(path, (_request, reply) =>
      reply.type(type).header('content-security-policy', CSP).header('cache-control', 'no-cache').send(content),
    );
  }
};
