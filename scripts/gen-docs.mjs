// Regenerates docs/connectors/<name>.md from the connector specs (run through `npm run docs`).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CONNECTORS } from '../dist/connectors/index.js';
import { renderConnectorDoc, handwrittenDoc } from '../dist/docs/connector-doc.js';

const root = resolve(import.meta.dirname, '..');
mkdirSync(join(root, 'docs', 'connectors'), { recursive: true });
for (const spec of CONNECTORS) {
  const out = join(root, 'docs', 'connectors', `${spec.name}.md`);
  writeFileSync(out, renderConnectorDoc(spec, handwrittenDoc(root, spec)));
  console.log(`wrote ${out}`);
}
