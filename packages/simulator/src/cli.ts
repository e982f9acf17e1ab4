#!/usr/bin/env node
// The `sim` command (`pnpm sim …`): see cli-commands.ts for what it does.
import { once } from 'node:events';
import { runCli } from './cli-commands.js';

const stopSignal = Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')]).then(() => undefined);

runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, stopSignal })
  .then((code) => {
    process.exitCode = code;
    // Exit even when stdin or a keep-alive socket would hold the loop open.
    process.stdout.write('', () => process.exit(code));
  })
  .catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(70);
  });
