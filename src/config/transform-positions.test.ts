// `sluice check` / `sluice run` on YAML: errors inside a `transform:` string point at the offending token in the YAML
// file, whatever the scalar style.

import { describe, expect, it } from 'vitest';
import { ConfigError } from '../core/errors.js';
import { loadConfigText } from './load.js';

function where(yaml: string): Array<{ at: string; message: string }> {
  try {
    loadConfigText(yaml, 'p.yaml');
  } catch (e) {
    if (e instanceof ConfigError) return e.issues.map((i) => ({ at: `${i.loc?.file}:${i.loc?.line}:${i.loc?.col}`, message: i.message }));
    throw e;
  }
  throw new Error('expected a ConfigError');
}

const head = `source: { connector: generator, config: { template: sequence }, schema: { fields: { id: int64, name: string } } }
sink: { connector: blackhole }
`;

describe('transform errors at their YAML position', () => {
  it('plain scalar', () => {
    expect(where(`${head}transform: SELECT idd, name\n`)).toEqual([{ at: 'p.yaml:3:19', message: "unknown column 'idd'; did you mean 'id'?" }]);
  });

  it('double- and single-quoted scalars, with escapes before the token', () => {
    expect(where(`${head}transform: "SELECT 'a\\tb' AS t, idd"\n`)[0]!.at).toBe('p.yaml:3:33');
    expect(where(`${head}transform: 'SELECT ''it''''s'' AS t, idd'\n`)[0]!.at).toBe('p.yaml:3:38');
  });

  it('block literal: line and column inside the block', () => {
    const yaml = `${head}transform: |
  SELECT id,
         upper(nam) AS n
  WHERE id > 0
`;
    expect(where(yaml)).toEqual([{ at: 'p.yaml:5:16', message: "unknown column 'nam'; did you mean 'name'?" }]);
  });

  it('folded and multi-line plain scalars', () => {
    expect(where(`${head}transform: >\n  SELECT id,\n    idd\n`)[0]!.at).toBe('p.yaml:5:5');
    expect(where(`${head}transform: SELECT id,\n  idd\n`)[0]!.at).toBe('p.yaml:4:3');
  });

  it('syntax errors and pipelines in a list', () => {
    const yaml = `pipelines:
  - name: a
    source: { connector: generator, config: { template: sequence } }
    sink: { connector: blackhole }
    transform: "SELECT id FROM"
  - name: b
    source: { connector: generator }
    sink: { connector: blackhole }
    transform: SELECT lowerr(x)
`;
    const issues = where(yaml);
    expect(issues.map((i) => i.at)).toEqual(['p.yaml:5:31', 'p.yaml:9:23']);
    expect(issues[1]!.message).toMatch(/unknown function 'lowerr'; did you mean 'lower'/);
  });

  it('a valid transform loads', () => {
    expect(loadConfigText(`${head}transform: |\n  SELECT id * 2 AS twice\n`, 'p.yaml').pipelines[0]!.transform).toBe('SELECT id * 2 AS twice\n');
  });
});
