#!/usr/bin/env node
import { runCli } from './run.js';

/** `pnpm wxrelay …` (root package.json): the operator's command line. See run.ts. */
process.exitCode = await runCli(process.argv.slice(2), { env: process.env, stdout: process.stdout, stderr: process.stderr, stdin: process.stdin });
