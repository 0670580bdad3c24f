#!/usr/bin/env node
// Runs the compiled CLI; `npm install` builds it (the `prepare` script).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write('sluice: the compiled CLI is missing; run `npm install` (or `npm run build`) in the project folder first\n');
  process.exit(1);
}
await import(main.href);
