// Preloaded with `node --import` by the subpath test: records the URL of every module this process
// resolves (ESM imports and CommonJS requires alike, builtins as `node:…`) and, on exit, prints it
// with the builtins Node loaded, as one JSON line on stdout.
import { writeSync } from 'node:fs';
import { registerHooks } from 'node:module';
import process from 'node:process';

const resolved = new Set();
registerHooks({
  resolve(specifier, context, nextResolve) {
    const result = nextResolve(specifier, context);
    resolved.add(result.url);
    return result;
  },
});
process.on('exit', () => {
  const builtins = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length));
  // Synchronous: an exit handler cannot wait for a piped stdout to drain.
  writeSync(1, `${JSON.stringify({ resolved: [...resolved], builtins })}\n`);
});
