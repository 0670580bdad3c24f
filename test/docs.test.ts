import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { allConnectors } from '../src/connectors/index.js';
import { renderConnectorDoc, handwrittenDoc } from '../src/docs/connector-doc.js';
import { describeOptions } from '../src/core/spec.js';

const root = resolve(import.meta.dirname, '..');

const CONNECTORS = await allConnectors();

describe('connector docs', () => {
  for (const spec of CONNECTORS) {
    it(`docs/connectors/${spec.name}.md matches the spec (run npm run docs after changing options)`, () => {
      const p = join(root, 'docs', 'connectors', `${spec.name}.md`);
      expect(existsSync(p), `${p} is missing`).toBe(true);
      expect(readFileSync(p, 'utf8')).toBe(renderConnectorDoc(spec, handwrittenDoc(root, spec)));
    });
    it(`every ${spec.name} option has a description`, () => {
      for (const role of [spec.source, spec.sink]) {
        if (!role) continue;
        const walk = (docs: ReturnType<typeof describeOptions>) => {
          for (const d of docs) {
            expect(d.description, `${spec.name}.${d.name}`).not.toBe('');
            if (d.children) walk(d.children);
          }
        };
        walk(describeOptions(role.options));
      }
    });
  }
});
