// Self time per function from a V8 .cpuprofile (what `npm run bench -- --profile` leaves in bench-results/profiles/).
//   node bench/profile.mjs <file.cpuprofile>... [--top N]
// Functions are grouped by file and name, paths shown relative to the repository, so hot spots can be quoted as
// file:function with their share of the samples.

import { readFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

// import.meta.dirname needs Node 20.11; the package promises 20.
const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '..');
const { positionals, values } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } });
if (!positionals.length) {
  console.error('usage: node bench/profile.mjs <file.cpuprofile>... [--top N]');
  process.exit(2);
}

function where(url) {
  if (!url) return '(native)';
  let p = url;
  if (p.startsWith('file://')) p = fileURLToPath(p);
  if (p.startsWith('/')) {
    const rel = relative(root, p);
    if (!rel.startsWith('..')) return rel;
  }
  return p;
}

for (const file of positionals) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let total = 0;
  // timeDeltas[i] is the time before sample i; charging it to that sample's node is how DevTools does it.
  prof.samples.forEach((id, i) => {
    const dt = prof.timeDeltas[i] ?? 0;
    total += dt;
    const cf = byId.get(id).callFrame;
    const key = `${where(cf.url)}:${cf.functionName || '(anonymous)'}${cf.url ? `:${cf.lineNumber + 1}` : ''}`;
    self.set(key, (self.get(key) ?? 0) + dt);
  });
  const byFile = new Map();
  for (const [k, us] of self) {
    const f = k.startsWith('(') ? k : k.split(':')[0];
    byFile.set(f, (byFile.get(f) ?? 0) + us);
  }
  const top = Number(values.top);
  const pct = (us) => ((us / total) * 100).toFixed(1).padStart(5);
  console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled`);
  console.log('  self%  function');
  for (const [k, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(us)}  ${k}`);
  console.log('  self%  file');
  for (const [k, us] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`  ${pct(us)}  ${k}`);
  console.log('');
}
