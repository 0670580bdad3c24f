// Connection profiles for redis against the local server: sources and sinks naming the same profile share one command
// connection (seen in the server's CLIENT LIST by name), which stays up while any of them runs and closes with the
// last one. Blocking readers stay per source.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPipeline, type PipelineHandle } from '../../core/runtime.js';
import { memoryStateStore } from '../../core/state.js';
import type { EndpointDef, PipelineDef } from '../../core/model.js';
import type { SluiceRecord } from '../../core/types.js';
import { ensureService } from '../../testing/services.js';
import type { Client } from './client.js';
import { sharedRedisClients } from './client.js';
import { sinkOptions, sourceOptions } from './index.js';
import { endpointDef, newRecordingSink, pipelineDef, recordingEndpoint, recordingEnv, type RecordingSink } from '../../testing/harness.js';
import { addEntries, adminClient, cleanup, parsed, uniquePrefix, waitFor } from './testkit.js';

let admin: Client;
let dataDir: string;
const P = uniquePrefix('share');
const handles: PipelineHandle[] = [];

beforeAll(async () => {
  await ensureService('redis');
  admin = await adminClient();
  dataDir = mkdtempSync(join(tmpdir(), 'sluice-redis-share-'));
}, 60_000);

afterAll(async () => {
  for (const h of handles.splice(0)) await h.stop();
  if (admin) {
    await cleanup(admin, P).catch(() => undefined);
    admin.destroy();
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** Names of the server's clients, from CLIENT LIST. */
async function clientNames(): Promise<string[]> {
  const text = String(await admin.sendCommand(['CLIENT', 'LIST']));
  return text
    .split('\n')
    .map((l) => /(?:^| )name=(\S*)/.exec(l)?.[1] ?? '')
    .filter(Boolean);
}
const count = (names: string[], name: string) => names.filter((n) => n === name).length;

const source = (o: Record<string, unknown>, profile?: string): EndpointDef =>
  endpointDef('redis', parsed(sourceOptions(), { block: '200ms', start_id: '0', ...o }) as Record<string, unknown>, profile ? { profile } : {});
const sink = (o: Record<string, unknown>, profile?: string): EndpointDef => endpointDef('redis', parsed(sinkOptions(), o) as Record<string, unknown>, profile ? { profile } : {});
const pipe = (name: string, src: EndpointDef, snk: EndpointDef): PipelineDef => pipelineDef(name, src, snk);
const ids = (rs: SluiceRecord[]) => rs.map((r) => (r.value as { i: number }).i);
const range = (from: number, n: number) => Array.from({ length: n }, (_, k) => from + k);

describe('redis connection profiles', () => {
  it('sources and sinks naming one profile share one command connection until the last of them stops', async () => {
    const profile = `p${randomBytes(3).toString('hex')}`;
    const shared = `sluice-profile-${profile}`;
    const [a, b, out] = [`${P}a`, `${P}b`, `${P}out`];
    await addEntries(admin, a, 0, 30);
    await addEntries(admin, b, 100, 30);
    const sinks: Record<string, RecordingSink> = { rb: newRecordingSink() };
    const e = recordingEnv(sinks, { state: memoryStateStore(), dataDir });
    const n1 = `share-1-${profile}`;
    const n2 = `share-2-${profile}`;
    // Pipeline 1: stream a -> XADD to out; pipeline 2: stream b -> recording sink. Three endpoints, one profile.
    const h1 = startPipeline(pipe(n1, source({ streams: a, group: 'g' }, profile), sink({ mode: 'stream', key: out }, profile)), e);
    const h2 = startPipeline(pipe(n2, source({ streams: b, group: 'g' }, profile), recordingEndpoint('rb')), e);
    handles.push(h1, h2);
    await waitFor(async () => (await admin.xLen(out)) === 30 && sinks.rb!.written.length === 30, 'both pipelines to deliver 30 records');
    expect(ids(sinks.rb!.written)).toEqual(range(100, 30));

    const names = await clientNames();
    expect(count(names, shared)).toBe(1);
    // No command or sink connection of their own; each source keeps its blocking reader.
    expect(names.filter((n) => n.startsWith(`sluice-share-`) && n.includes(profile)).sort()).toEqual([`sluice-${n1}-reader`, `sluice-${n2}-reader`]);
    expect(sharedRedisClients()).toBe(1);

    // The first pipeline stopping leaves the connection to the second, whose acknowledgements still go through it.
    await h1.stop();
    expect(count(await clientNames(), shared)).toBe(1);
    await addEntries(admin, b, 200, 10);
    await waitFor(() => sinks.rb!.written.length === 40, '10 more records in pipeline 2');
    await waitFor(async () => Number(((await admin.xPending(b, 'g')) as { pending: number }).pending) === 0, 'every entry of b acknowledged');

    await h2.stop();
    await waitFor(async () => count(await clientNames(), shared) === 0, 'the shared connection to close with the last endpoint');
    expect(sharedRedisClients()).toBe(0);
  }, 30_000);

  it('endpoints without a profile keep connections of their own', async () => {
    const tag = randomBytes(3).toString('hex');
    const s = `${P}own`;
    await addEntries(admin, s, 0, 5);
    const sinks: Record<string, RecordingSink> = { r: newRecordingSink() };
    const e = recordingEnv(sinks, { state: memoryStateStore(), dataDir });
    const h = startPipeline(pipe(`own-${tag}`, source({ streams: s, group: 'g' }), sink({ mode: 'list', key: `${P}own-out` })), e);
    handles.push(h);
    await waitFor(async () => (await admin.lLen(`${P}own-out`)) === 5, '5 elements in the output list');
    const names = await clientNames();
    expect(names.filter((n) => n.includes(`own-${tag}`)).sort()).toEqual([`sluice-own-${tag}-cmd`, `sluice-own-${tag}-reader`, `sluice-own-${tag}-sink`]);
    expect(sharedRedisClients()).toBe(0);
    await h.stop();
  }, 30_000);
});
