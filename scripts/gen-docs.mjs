// Regenerates docs/connectors/<name>.md from the connector specs (run through `npm run docs [-- name ...]`).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { allConnectors } from '../dist/connectors/index.js';
import { renderConnectorDoc, handwrittenDoc } from '../dist/docs/connector-doc.js';

const root = resolve(import.meta.dirname, '..');
mkdirSync(join(root, 'docs', 'connectors'), { recursive: true });
// `npm run docs -- kafka mqtt` regenerates only those pages.
const only = new Set(process.argv.slice(2));
for (const spec of await allConnectors()) {
  if (only.size && !only.has(spec.name)) continue;
  const out = join(root, 'docs', 'connectors', `${spec.name}.md`);
  writeFileSync(out, renderConnectorDoc(spec, handwrittenDoc(root, spec)));
  console.log(`wrote ${out}`);
}
