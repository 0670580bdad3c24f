// `sluice dlq replay`: re-inject dead-letter entries (JSON lines, as a file `dlq:` sink writes them) into a pipeline.
// Payload entries go through the pipeline's own path (decode, schema, transform, routes, sink); entries whose `raw` is
// a row a sink refused (`raw_kind: row`) go straight to the output named in the entry. Each entry's outcome is
// reported by line; what is still bad is written to a remainder file in the same shape, ready to be corrected and
// replayed again. Nothing here moves the pipeline's checkpoints.

import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import type { Logger } from 'pino';
import { startPipeline, type RunOptions } from '../core/runtime.js';
import { memoryStateStore } from '../core/state.js';
import { RejectedRecordsError, SluiceError, errorMessage } from '../core/errors.js';
import type { ConnectorSpec } from '../core/spec.js';
import type { EndpointDef, PipelineDef } from '../core/model.js';
import type { SluiceRecord, SourceContext } from '../core/types.js';
import { stringifyJson } from '../formats/index.js';

/** Where a record came from: its line in the DLQ file, as record metadata the runtime carries along. */
const LINE = '_dlq_line';
const REPLAY_SOURCE = '__dlq_replay';
const CAPTURE_SINK = '__dlq_capture';
const BATCH = 500;

export interface DlqEntryLine {
  line: number;
  text: string;
  entry: Record<string, unknown>;
  payload: string | Uint8Array;
  /** The row to hand to `output` directly (a sink-stage entry without source bytes). */
  row?: unknown;
  output?: string;
}

export interface ParsedDlq {
  entries: DlqEntryLine[];
  malformed: Array<{ line: number; text: string; error: string }>;
}

/** Reads a JSON-lines DLQ file; a line that is not an entry is reported with its number, never thrown. */
export function parseDlqLines(text: string): ParsedDlq {
  const out: ParsedDlq = { entries: [], malformed: [] };
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const t = lines[i]!.replace(/\r$/, '');
    if (!t.trim()) continue;
    const line = i + 1;
    const bad = (error: string) => out.malformed.push({ line, text: t, error });
    let v: unknown;
    try {
      v = JSON.parse(t);
    } catch (e) {
      bad(`not valid JSON (${errorMessage(e)})`);
      continue;
    }
    if (!v || typeof v !== 'object' || Array.isArray(v)) {
      bad('expected a JSON object (a dead-letter entry)');
      continue;
    }
    const entry = v as Record<string, unknown>;
    if (typeof entry.raw !== 'string') {
      bad(entry.raw === undefined ? "missing 'raw' (the original payload)" : "'raw' must be a string");
      continue;
    }
    const enc = entry.raw_encoding ?? 'utf8';
    let payload: string | Uint8Array;
    if (enc === 'utf8') payload = entry.raw;
    else if (enc === 'base64') {
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(entry.raw.replace(/\s+/g, ''))) {
        bad("'raw' is not valid base64 (raw_encoding is 'base64')");
        continue;
      }
      payload = Buffer.from(entry.raw, 'base64');
    } else {
      bad(`raw_encoding must be 'utf8' or 'base64', got ${JSON.stringify(enc)}`);
      continue;
    }
    if (entry.metadata !== undefined && (entry.metadata === null || typeof entry.metadata !== 'object' || Array.isArray(entry.metadata))) {
      bad("'metadata' must be an object");
      continue;
    }
    const e: DlqEntryLine = { line, text: t, entry, payload };
    if (entry.raw_kind === 'row') {
      try {
        e.row = JSON.parse(typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8'));
      } catch (err) {
        bad(`'raw' holds a row (raw_kind 'row') but is not valid JSON (${errorMessage(err)})`);
        continue;
      }
      e.output = typeof entry.output === 'string' ? entry.output : 'sink';
    }
    out.entries.push(e);
  }
  return out;
}

export interface ReplayOptions {
  from: string;
  remainder: string;
  dryRun: boolean;
  log: Logger;
  connector(name: string): ConnectorSpec;
  makeTransform?: RunOptions['makeTransform'];
  write(line: string): void;
}

interface Outcome {
  written: number;
  bad: Array<Record<string, unknown>>;
}

/** Replays a DLQ file into `def`; returns the exit code (0: every entry written, 1: some are left over). */
export async function replayDlq(def: PipelineDef, o: ReplayOptions): Promise<number> {
  let text: string;
  try {
    text = readFileSync(o.from, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new SluiceError('CONFIG', `--from ${o.from}: ${code === 'ENOENT' ? 'file not found' : `cannot read the file (${code ?? errorMessage(e)})`}`);
  }
  const parsed = parseDlqLines(text);
  const outcomes = new Map<number, Outcome>();
  const entries: DlqEntryLine[] = [];
  const skipped: Array<{ line: number; text: string; why: string }> = [];
  for (const e of parsed.entries) {
    if (typeof e.entry.pipeline === 'string' && e.entry.pipeline !== def.name) {
      skipped.push({ line: e.line, text: e.text, why: `it is from pipeline '${e.entry.pipeline}'` });
      continue;
    }
    if (e.output !== undefined && e.output !== 'sink' && !def.routes?.some((r) => r.name === e.output)) {
      skipped.push({ line: e.line, text: e.text, why: `pipeline '${def.name}' has no output '${e.output}'` });
      continue;
    }
    if (e.output === 'sink' && !def.sink) {
      skipped.push({ line: e.line, text: e.text, why: `pipeline '${def.name}' has no default sink` });
      continue;
    }
    entries.push(e);
    outcomes.set(e.line, { written: 0, bad: [] });
  }

  const dataDir = mkdtempSync(join(tmpdir(), 'sluice-dlq-replay-'));
  const failures: string[] = [];
  try {
    // Payload entries take the pipeline's whole path; row entries go to their output, grouped by output.
    const payloads = entries.filter((e) => e.row === undefined);
    if (payloads.length) {
      const d = replayDef(def, { ...def.source, connector: REPLAY_SOURCE });
      const err = await runReplay(d, payloads, false, outcomes, dataDir, o, o.makeTransform);
      if (err) failures.push(err);
    }
    const byOutput = new Map<string, DlqEntryLine[]>();
    for (const e of entries) if (e.row !== undefined) byOutput.set(e.output!, [...(byOutput.get(e.output!) ?? []), e]);
    for (const [output, list] of byOutput) {
      const route = def.routes?.find((r) => r.name === output);
      const sink = route ? route.sink : def.sink!;
      // The row is what the output received: no decoding, transform or routing again, only the output's schema.
      const schema = route ? route.schema : def.transform ? undefined : def.source.schema;
      const d: PipelineDef = {
        ...replayDef(def, { ...def.source, connector: REPLAY_SOURCE, schema, payload_path: undefined, metadata_fields: {} }),
        sink,
        routes: undefined,
        transform: undefined,
        retry: { ...(route?.retry ?? def.retry), on_exhausted: 'dlq' },
      };
      const err = await runReplay(d, list, true, outcomes, dataDir, o, undefined);
      if (err) failures.push(err);
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }

  // ---- report ----
  const where = (line: number) => `${o.from}:${line}`;
  const remainder: Array<{ line: number; text: string }> = [];
  let written = 0;
  let stillBad = 0;
  let filtered = 0;
  const verb = o.dryRun ? 'would be written' : 'written';
  for (const m of parsed.malformed) {
    o.write(`${where(m.line)}: malformed: ${m.error}\n`);
    remainder.push({ line: m.line, text: m.text });
  }
  for (const s of skipped) {
    o.write(`${where(s.line)}: skipped: ${s.why}\n`);
    remainder.push({ line: s.line, text: s.text });
  }
  for (const e of entries) {
    const r = outcomes.get(e.line)!;
    if (r.bad.length) {
      stillBad++;
      const first = String(r.bad[0]!.error ?? 'rejected');
      o.write(`${where(e.line)}: still bad${r.written ? ` (${r.written} row(s) ${verb})` : ''}: ${first}\n`);
      for (const b of r.bad) {
        // The corrected-and-replayed entry keeps its history: the attempts add up.
        const prev = typeof e.entry.attempts === 'number' ? e.entry.attempts : 0;
        const entry = { ...e.entry, ...b, attempts: prev + (typeof b.attempts === 'number' ? b.attempts : 1) };
        remainder.push({ line: e.line, text: stringifyJson(entry) });
      }
    } else if (r.written) {
      written++;
      o.write(`${where(e.line)}: ${verb}${r.written > 1 ? ` (${r.written} rows)` : ''}\n`);
    } else if (failures.length) {
      // The run stopped before this entry got an outcome: keep it.
      o.write(`${where(e.line)}: not replayed (the replay stopped)\n`);
      remainder.push({ line: e.line, text: e.text });
    } else {
      filtered++;
      o.write(`${where(e.line)}: nothing to write (the transform filtered it out, or no route took it)\n`);
    }
  }
  for (const f of failures) o.write(`replay failed: ${f}\n`);
  remainder.sort((a, b) => a.line - b.line);
  const parts = [`${written} ${verb}`, `${stillBad} still bad`, `${parsed.malformed.length} malformed`];
  if (skipped.length) parts.push(`${skipped.length} skipped`);
  if (filtered) parts.push(`${filtered} filtered`);
  let summary = `${parsed.entries.length + parsed.malformed.length} entries: ${parts.join(', ')}`;
  if (o.dryRun) summary += '; dry run: nothing was written';
  else if (remainder.length) {
    writeFileSync(o.remainder, remainder.map((r) => r.text + '\n').join(''));
    summary += `; ${remainder.length} kept in ${o.remainder}`;
  } else if (existsSync(o.remainder) && o.remainder !== o.from) {
    // A remainder left by an earlier replay of this file is stale now that everything went through.
    unlinkSync(o.remainder);
  }
  o.write(summary + '\n');
  return remainder.length || failures.length ? 1 : 0;
}

/** The pipeline as the replay runs it: entries as its source, still-bad ones captured instead of dead-lettered. */
function replayDef(def: PipelineDef, source: EndpointDef): PipelineDef {
  const capture: EndpointDef = { connector: CAPTURE_SINK, options: {}, config: {}, format: { name: 'json', options: {} }, bad_data: 'fail', metadata_fields: {} };
  return {
    ...def,
    source: { ...source, bad_data: 'dlq' },
    dlq: capture,
    // Whatever still fails gets an outcome (the remainder file) instead of stopping the replay.
    retry: { ...def.retry, on_exhausted: 'dlq' },
    routes: def.routes?.map((r) => (r.retry ? { ...r, retry: { ...r.retry, on_exhausted: 'dlq' as const } } : r)),
    batch: { ...def.batch, linger_ms: 0 },
  };
}

async function runReplay(
  def: PipelineDef,
  list: DlqEntryLine[],
  rows: boolean,
  outcomes: Map<number, Outcome>,
  dataDir: string,
  o: ReplayOptions,
  makeTransform: RunOptions['makeTransform'],
): Promise<string | undefined> {
  const lineOf = (r: SluiceRecord) => r.meta?.[LINE] as number | undefined;
  const markWritten = (records: SluiceRecord[], skip?: Set<number>) => {
    records.forEach((r, i) => {
      const l = lineOf(r);
      if (l !== undefined && !skip?.has(i)) outcomes.get(l)!.written++;
    });
  };
  const replaySource: ConnectorSpec = {
    name: REPLAY_SOURCE,
    title: 'DLQ replay',
    description: '',
    source: {
      options: z.object({}).passthrough(),
      create: () => ({
        async run(ctx: SourceContext) {
          for (let i = 0; i < list.length && !ctx.signal.aborted; i += BATCH) {
            const records = list.slice(i, i + BATCH).map((e) => {
              const meta = { ...((e.entry.metadata as Record<string, unknown> | undefined) ?? {}), [LINE]: e.line };
              return { value: rows ? e.row : e.payload, meta };
            });
            const p = ctx.emit({ records, decoded: rows });
            if (p) await p;
          }
        },
      }),
    },
  };
  const capture: ConnectorSpec = {
    name: CAPTURE_SINK,
    title: 'DLQ replay remainder',
    description: '',
    sink: {
      options: z.object({}).passthrough(),
      create: () => ({
        async open() {},
        async write(records: SluiceRecord[]) {
          for (const r of records) {
            const v = { ...(r.value as Record<string, unknown>) };
            const meta = { ...((v.metadata as Record<string, unknown> | undefined) ?? {}) };
            const line = meta[LINE] as number | undefined;
            delete meta[LINE];
            v.metadata = meta;
            if (line !== undefined) outcomes.get(line)!.bad.push(v);
          }
        },
      }),
    },
  };
  const connector = (name: string): ConnectorSpec => {
    if (name === REPLAY_SOURCE) return replaySource;
    if (name === CAPTURE_SINK) return capture;
    const spec = o.connector(name);
    if (!spec.sink) return spec;
    // Outputs: count what each accepted per DLQ line; a dry run opens nothing and accepts everything.
    return {
      ...spec,
      sink: {
        ...spec.sink,
        create: (opts, info) => {
          const inner = o.dryRun ? undefined : spec.sink!.create(opts, info);
          return {
            open: async (ctx) => inner?.open(ctx),
            write: async (records, position) => {
              try {
                await inner?.write(records, position);
              } catch (e) {
                if (e instanceof RejectedRecordsError) markWritten(records, new Set(e.rejected.map((x) => x.index)));
                throw e;
              }
              markWritten(records);
            },
            close: async () => inner?.close?.(),
          };
        },
      },
    };
  };
  const h = startPipeline({ ...def, name: def.name }, { log: o.log, state: memoryStateStore(), dataDir, connector }, { makeTransform });
  const r = await h.done;
  return r.status === 'failed' ? errorMessage(r.error) : undefined;
}
