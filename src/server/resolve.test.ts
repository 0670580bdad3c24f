// What the control plane's in-use checks (409 on delete) see a pipeline use.

import { describe, expect, it } from 'vitest';
import { pipelineReferences } from './resolve.js';

describe('pipelineReferences', () => {
  it('JSON pipelines: endpoints by table name or profile, and the lookup tables their transform joins', async () => {
    const r = await pipelineReferences({
      kind: 'json',
      definition: { source: 'orders', sink: { profile: 'files', config: { path: 'x' } }, dlq: 'bad', transform: 'SELECT o.id, u.name FROM o LEFT JOIN users u ON u.id = o.uid' },
    });
    expect([...r.tables].sort()).toEqual(['bad', 'orders', 'users']);
    expect([...r.profiles]).toEqual(['files']);
  });

  it('SQL pipelines: tables used without CREATE TABLE, lower-cased as the compiler matches them', async () => {
    const r = await pipelineReferences({
      kind: 'sql',
      definition: { query: "CREATE TABLE o WITH (connector = 'file', path = 'o', connection_profile = 'Files'); SET 'pipeline.dlq' = 'Bad'; INSERT INTO o SELECT * FROM Orders;" },
    });
    expect([...r.tables].sort()).toEqual(['bad', 'orders']);
    expect([...r.profiles]).toEqual(['files']);
  });
});
