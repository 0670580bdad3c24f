#!/usr/bin/env node
// Runs the compiled CLI; `npm install` builds it (the `prepare` script).
import { existsSync } from 'node:fs';
import module from 'node:module';
import { fileURLToPath } from 'node:url';

// Node 22.1+: keep V8's compiled code of the CLI and its dependencies on disk (os.tmpdir()/node-compile-cache, or
// NODE_COMPILE_CACHE), so a second start skips most of the compiling (`sluice --version` on Node 24: ~315 -> ~267 ms).
// Node itself honours NODE_DISABLE_COMPILE_CACHE=1 here, and never throws when the cache cannot be used. Node 20 has
// no such API. It has to run before the import below: only modules loaded afterwards are cached.
module.enableCompileCache?.();

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write('sluice: the compiled CLI is missing; run `npm install` (or `npm run build`) in the project folder first\n');
  process.exit(1);
}
await import(main.href);
