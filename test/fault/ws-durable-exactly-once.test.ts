// Exactly-once from receipt: a WebSocket source with `buffer: durable` into an exactly-once sink (the file sink with
// `commit_mode: exactly_once`, the postgres sink with `exactly_once: true`). The durable buffer gives each batch a position (its log sequence) that the sink stores
// with the records, and a restart skips what the sink holds. `sluice run` is killed with SIGKILL at random points;
// the WebSocket server sends every id once and never again, so after each kill the test reads the log itself to learn
// the newest id the dead run had appended (received). The output must then hold every id exactly once, in order,
// except ids the dead run had not yet appended when it died (the documented window: what the socket had delivered to
// the OS or to the process, but not to the log).

import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { WebSocketServer, type WebSocket } from 'ws';
import { loadConfigText } from '../../src/config/load.js';
import { crc32 } from '../../src/core/durable-buffer.js';
import { waitFor } from '../../src/testing/harness.js';
import { ensureService } from '../../src/testing/services.js';
import { CLI_BUILT, runPipeline, stopChildren } from '../../src/testing/cli-child.js';
import { finals, linesWritten } from '../../src/testing/file-output.js';

const N = 30_000;
const KILLS = 6;

/** Every `.seg` file under `dir`, oldest first (names are zero-padded base sequence numbers). */
function segments(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (f.endsWith('.seg')) out.push(p);
    }
  };
  if (existsSync(dir)) walk(dir);
  return out.sort();
}

/**
 * The id of the newest complete entry in the durable buffer's log (format in docs/durable-buffer.md), or -1. A torn
 * entry at the end (the kill hit a write) is not appended: the next start cuts it off.
 */
function newestLoggedId(dataDir: string): number {
  const segs = segments(dataDir);
  for (let s = segs.length - 1; s >= 0; s--) {
    const b = readFileSync(segs[s]!);
    let off = 16;
    let last = -1;
    while (off + 8 <= b.length) {
      const len = b.readUInt32LE(off);
      const end = off + 8 + len;
      if (len < 14 || end > b.length || crc32(b, off + 8, end) !== b.readUInt32LE(off + 4)) break;
      // The value follows seq (8) and flags (2): the frame's text or the JSON of its row, either way the record's JSON.
      const vlen = b.readUInt32LE(off + 18);
      const value = b.toString('utf8', off + 22, off + 22 + vlen);
      last = (JSON.parse(value) as { id: number }).id;
      off = end;
    }
    if (last >= 0) return last;
  }
  return -1;
}

/** Sends ids 0..N-1, each once, to whichever connection is open; never re-sends what a dead connection got. */
async function idServer() {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const port = (wss.address() as { port: number }).port;
  const conns: Array<{ ws: WebSocket; first: number; sent: number }> = [];
  const s = { next: 0, port, conns, close: async () => {} };
  let current: (typeof conns)[number] | undefined;
  let wake: (() => void) | undefined;
  let closed = false;
  wss.on('connection', (ws) => {
    current = { ws, first: s.next, sent: s.next };
    conns.push(current);
    ws.on('error', () => undefined);
    ws.on('close', () => {
      if (current?.ws === ws) current = undefined;
    });
    wake?.();
  });
  const pad = 'p'.repeat(60);
  const produce = (async () => {
    while (s.next < N && !closed) {
      const c = current;
      if (!c || c.ws.readyState !== c.ws.OPEN || c.ws.bufferedAmount > 64 * 1024) {
        // An event (a new connection) or a short tick while ws drains its own buffer.
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, c ? 2 : 50);
        });
        continue;
      }
      // About 12k messages/s: a live feed the process keeps up with, so what a kill loses is what the socket held.
      const to = Math.min(N, s.next + 60);
      for (let i = s.next; i < to; i++) c.ws.send(`{"id":${i},"pad":"${pad}"}`);
      s.next = to;
      c.sent = to;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  s.close = async () => {
    closed = true;
    wake?.();
    await produce;
    for (const c of wss.clients) c.terminate();
    await new Promise<void>((r) => wss.close(() => r()));
  };
  return s;
}

afterAll(stopChildren);

interface EoSink {
  yaml: string;
  /** Records written so far, uncommitted ones included (progress only). */
  written(): Promise<number>;
  /** The ids the sink holds at the end, in the order it holds them (file: output order; table: by id). */
  ids(): Promise<number[]>;
  /** Whether `ids()` is the sink's own order, so that order can be checked. */
  ordered: boolean;
  check?(): void;
  close(): Promise<void>;
}

function fileEoSink(dir: string): EoSink {
  const out = join(dir, 'out');
  return {
    yaml: `{ connector: file, config: { path: ${JSON.stringify(join(out, 'out.jsonl'))}, rotate_size: 256KiB, commit_mode: exactly_once }, format: json }`,
    written: async () => linesWritten(out),
    async ids() {
      const got: number[] = [];
      for (const f of finals(out)) for (const l of readFileSync(join(out, f), 'utf8').split('\n')) if (l) got.push((JSON.parse(l) as { id: number }).id);
      return got;
    },
    ordered: true,
    check() {
      // Everything is final after the graceful stop, across several rotated files.
      expect(readdirSync(out).filter((f) => f.startsWith('.'))).toEqual([]);
      expect(finals(out).length).toBeGreaterThan(3);
    },
    close: async () => undefined,
  };
}

const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';

async function postgresEoSink(name: string): Promise<EoSink> {
  await ensureService('postgres');
  // A connection per query: other test files restart the shared server (sink outage cases), which would leave one
  // long-lived admin connection broken.
  const query = async (sql: string, params: unknown[] = []) => {
    const db = new pg.Client({ connectionString: PG_URL });
    db.on('error', () => undefined);
    await db.connect();
    try {
      return (await db.query(sql, params)).rows as Array<Record<string, number>>;
    } finally {
      await db.end().catch(() => undefined);
    }
  };
  const table = `sl_ws_eo_${randomBytes(4).toString('hex')}`;
  await query(`CREATE TABLE "${table}" (id int, pad text)`);
  return {
    yaml: `{ connector: postgres, config: { url: '${PG_URL}', table: ${table}, mode: insert, exactly_once: true } }`,
    // Progress only: a server restarting under another test file's fault case reads as "not yet".
    written: async () => (await query(`SELECT count(*)::int AS n FROM "${table}"`).catch(() => [{ n: -1 }]))[0]!.n!,
    ids: async () => (await query(`SELECT id FROM "${table}" ORDER BY id`)).map((r) => r.id!),
    ordered: false,
    async close() {
      await query(`DROP TABLE IF EXISTS "${table}"`).catch(() => undefined);
      await query('DELETE FROM sluice_offsets WHERE pipeline = $1', [name]).catch(() => undefined);
    },
  };
}

const built = CLI_BUILT;

describe.skipIf(!built)('websocket + durable buffer -> exactly-once sink across kill -9', () => {
  it.each(['file', 'postgres'] as const)(`%s: ${N} messages, killed ${KILLS} times at random points: every id the buffer received is written exactly once`, async (kind) => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-ws-eo-'));
    const server = await idServer();
    const name = `wseo_${kind}_${randomBytes(3).toString('hex')}`;
    const sink = kind === 'file' ? fileEoSink(dir) : await postgresEoSink(name);
    try {
      const yaml = [
        `name: ${name}`,
        `source: { connector: websocket, config: { url: "ws://127.0.0.1:${server.port}/", buffer: durable, buffer_fsync: never, reconnect: { initial: 20ms, max: 100ms } }, format: json }`,
        `sink: ${sink.yaml}`,
        'batch: { max_records: 500, linger: 2ms }',
        '',
      ].join('\n');
      const file = join(dir, 'p.yaml');
      writeFileSync(file, yaml);
      loadConfigText(yaml, file);
      const data = join(dir, 'data');
      /** Ids a dead run had been sent but not appended to its log: never re-sent, so never written. */
      const window = new Set<number>();
      let skips = 0;
      for (let k = 0; k < KILLS; k++) {
        const p = runPipeline(file, data, { keep: 400_000 });
        if (k % 3 === 2) {
          // A kill at a random moment of start-up and recovery (replaying the log) rather than mid-stream.
          await new Promise((r) => setTimeout(r, Math.random() * 400));
        } else {
          const target = Math.min(N - 1000, server.next + 500 + Math.floor(Math.random() * ((N - server.next) / (KILLS - k + 1))));
          await waitFor(() => server.next >= target || p.child.exitCode !== null, `${target} ids sent (${p.output().slice(-2000)})`, 60_000, 2);
        }
        p.child.kill('SIGKILL');
        await p.exited;
        skips += p.output().split('\n').filter((l) => l.includes('skipping entries the exactly-once sink already holds')).length;
        expect(p.output()).not.toMatch(/gives no positions to resume from/);
        // What the dead run's connection delivered past the newest logged id was lost with the process.
        const c = server.conns[server.conns.length - 1];
        if (c) {
          const logged = newestLoggedId(data);
          for (let i = Math.max(c.first, logged + 1); i < c.sent; i++) window.add(i);
        }
        // The runtime commits to the buffer a moment after the sink commits, so a kill rarely falls in between;
        // dropping the state store (the buffer's acknowledged position) makes every restart replay the whole log,
        // and only the position stored with the sink's output keeps what it holds from being written twice.
        if (k % 2 === 0 && existsSync(data)) for (const f of readdirSync(data)) if (f.startsWith('state.db')) rmSync(join(data, f));
      }
      const last = runPipeline(file, data, { keep: 400_000 });
      await waitFor(() => server.next >= N || last.child.exitCode !== null, 'all ids sent', 60_000, 5).catch((e: Error) => {
        throw new Error(`${e.message}: ${server.next} sent, ${server.conns.length} connections, sluice ${last.child.exitCode ?? 'running'}:\n${last.output().slice(-3000)}`);
      });
      expect(last.child.exitCode, last.output().slice(-3000)).toBeNull();
      const expected = N - window.size;
      await waitFor(async () => (await sink.written()) >= expected || last.child.exitCode !== null, `${expected} records written`, 60_000, 10);
      last.child.kill('SIGTERM');
      expect(await last.exited, last.output().slice(-3000)).toBe(0);
      skips += last.output().split('\n').filter((l) => l.includes('skipping entries the exactly-once sink already holds')).length;

      const got = await sink.ids();
      const want: number[] = [];
      for (let i = 0; i < N; i++) if (!window.has(i)) want.push(i);
      // Exactly once: the output is precisely the received ids, none twice, none missing (and in order for a file).
      const dup = got.length - new Set(got).size;
      expect(dup, 'duplicates').toBe(0);
      expect(got.length).toBe(want.length);
      expect(got.every((id, i) => id === want[i]), sink.ordered ? 'every received id once, in order' : 'every received id once').toBe(true);
      // The window is what the socket held, not a share of the stream; and restarts did rely on the sink's position.
      expect(window.size).toBeLessThan(N / 4);
      expect(skips).toBeGreaterThan(0);
      sink.check?.();
    } finally {
      await server.close();
      await sink.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);
});
