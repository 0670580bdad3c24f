// Shared helpers for the Redis tests: a plain client on the local server, unique key prefixes, cleanup, waits.

import { randomBytes } from 'node:crypto';
import { createClient } from 'redis';
import type { z } from 'zod';
import { parsedOptions, waitFor as pollUntil } from '../../testing/harness.js';
import type { Client } from './client.js';

export const REDIS_URL = 'redis://127.0.0.1:6379';

export async function adminClient(): Promise<Client> {
  const c = createClient({ url: REDIS_URL, socket: { reconnectStrategy: (n: number) => Math.min(50 * 2 ** n, 500) } }) as unknown as Client;
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

/** A key prefix no other run uses; every key a test creates starts with it. */
export function uniquePrefix(what: string): string {
  return `sluice-test:${what}:${process.pid}-${randomBytes(4).toString('hex')}:`;
}

/** Deletes every key under the prefix (SCAN, so it works for any number of keys). */
export async function cleanup(c: Client, prefix: string): Promise<void> {
  if (!c.isReady) return;
  let cursor = '0';
  do {
    const r = await c.scan(cursor, { MATCH: `${prefix}*`, COUNT: 1000 });
    cursor = String(r.cursor);
    if (r.keys.length) await c.del(r.keys.map(String));
  } while (cursor !== '0');
}

export const parsed = <T>(schema: z.ZodType<T, any>, o: Record<string, unknown>): T => parsedOptions(schema, { url: REDIS_URL, ...o });

export const waitFor = (cond: () => boolean | Promise<boolean>, what: string, ms = 15_000) => pollUntil(cond, what, ms);

/** Adds `n` JSON entries `{"i": from..}` to a stream in one pipelined round trip. */
export async function addEntries(c: Client, stream: string, from: number, n: number, field = 'payload'): Promise<void> {
  const m = c.multi();
  for (let i = from; i < from + n; i++) m.xAdd(stream, '*', { [field]: JSON.stringify({ i }) });
  await m.execAsPipeline();
}

export async function pendingCount(c: Client, stream: string, group: string): Promise<number> {
  try {
    const p = (await c.xPending(stream, group)) as { pending: number };
    return Number(p.pending);
  } catch {
    return 0;
  }
}
