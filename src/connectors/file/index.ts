import { open } from 'node:fs/promises';
import { ConfigError, SluiceError, errorMessage } from '../../core/errors.js';
import { bool, defineConnector, duration, lazyOptions, opt, parseOptions, size, z, type TestReporter } from '../../core/spec.js';
import { lazySource } from '../../core/lazy.js';
import { describePatterns, displayPath, resolvePaths, toPatterns } from './paths.js';
import { checkWritable, FileSink, unknownPlaceholders } from './sink.js';
import { payloadTemplateShape } from '../../core/data-template.js';

// The reader (source.ts) loads when a pipeline creates one: every `sluice run` imports this spec, most never read a
// file (issue 9: start-up). The sink stays eager: tests reach into the FileSink that `create` returns.
export type { FileSource } from './source.js';
export { FileSink };
export type { FileAck, FileCheckpoint, FileSourceOptions } from './source.js';
export type { FileSinkOptions } from './sink.js';

/** The format a file's extension implies, when the pipeline names none. */
export function formatForPath(path: string, fallback = 'text'): string {
  const m = /\.([A-Za-z0-9]+)$/.exec(path.replace(/\{[^}]*\}/g, ''));
  switch (m?.[1]?.toLowerCase()) {
    case 'csv':
    case 'tsv':
      return 'csv';
    case 'json':
    case 'jsonl':
    case 'ndjson':
      return 'json';
    case 'txt':
    case 'log':
      return 'text';
    case 'parquet':
    case 'pq':
      return 'parquet';
    default:
      return fallback;
  }
}

const sourceOptions = lazyOptions('file:source', () => z.strictObject({
  path: opt(z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]), {
    description:
      'File to read: a path, a directory (its files), a glob such as `logs/*.jsonl`, or a list of them. Relative paths are resolved against the working directory.',
    aliases: ['paths', 'file', 'filename', 'path_pattern'],
    examples: ['in/orders.csv', 'logs/**/*.jsonl', ['a.jsonl', 'b.jsonl']],
  }),
  mode: opt(z.enum(['read', 'follow']).default('read'), {
    description:
      '`read`: read each matching file once, then finish. `follow`: like `tail -F`, keep reading what is appended, pick up new files matching the path, and survive rotation and truncation.',
  }),
  poll_interval: duration({
    default: '250ms',
    description: 'Follow mode: how often files are checked for new data, new files, rotation and truncation.',
  }),
  start_at: opt(z.enum(['beginning', 'end']).default('beginning'), {
    description:
      'Follow mode, files without a checkpoint that exist at startup: read them from the `beginning`, or only what is appended from now on (`end`). Files appearing later are always read from the beginning.',
  }),
  read_chunk_size: size({ default: '256KiB', description: 'Bytes read from a file per read call.', advanced: true }),
  max_line_bytes: size({
    default: '16MiB',
    description:
      'Longest accepted line (or frame, or whole file with `framing: whole_file`). A longer one is reported as bad data and skipped without buffering it.',
    advanced: true,
  }),
  framing: opt(z.enum(['lines', 'length_delimited', 'whole_file']).default('lines'), {
    description:
      'How a file is cut into payloads for the format: `lines` (newline-delimited; with the csv format, newlines inside quoted fields do not end a record), `length_delimited` (each payload preceded by its 4-byte big-endian length) or `whole_file` (the whole file is one payload, e.g. a JSON array).',
  }),
  include_path: bool({
    default: false,
    description: "Add the file's absolute path to every decoded row as the field `_path` (it is always available as metadata).",
  }),
}));

const sinkOptions = lazyOptions('file:sink', () => z.strictObject({
  path: opt(
    z
      .string()
      .min(1)
      .refine((p) => unknownPlaceholders(p).length === 0, {
        message: 'unknown placeholder in path; use {date} (YYYY-MM-DD, UTC), {hour} (HH, UTC) or {n} (rotation number)',
      }),
    {
      description:
        'File to write. May contain `{date}` (YYYY-MM-DD), `{hour}` (HH), both in UTC, and `{n}` (rotation number; without it, rotated files get `.1`, `.2`, ... before the extension). Parent directories are created.',
      aliases: ['file', 'filename', 'path_pattern'],
      examples: ['out/orders.jsonl', 'out/{date}/events-{hour}-{n}.csv'],
    },
  ),
  rotate_size: size({ description: 'Start a new file once the current one reached this size, e.g. `100MB`.' }).optional(),
  rotate_interval: duration({ description: 'Start a new file once the current one has been open this long, e.g. `1h`.' }).optional(),
  append: bool({
    default: true,
    description: 'Append to an existing file (a CSV header is then not written again). `false` truncates each file when it is opened.',
  }),
  fsync: bool({
    default: true,
    description: 'Acknowledge a batch only after its bytes were flushed to disk (fdatasync). `false` is faster but a crash may lose acknowledged records.',
  }),
  commit_mode: opt(z.enum(['at_least_once', 'exactly_once']).default('at_least_once'), {
    description:
      '`at_least_once`: batches are appended to the file; after a crash the source may send the last records again. `exactly_once`: a file is written under a hidden in-progress name (`.name.inprogress`), each batch is committed together with the source position in a manifest in the data directory, and the file gets its final name when it rotates or the pipeline stops; after a crash the uncommitted tail is cut off and the source resumes from the stored position, so every record is written once. Final files are never appended to (Parquet: one file per batch). Needs a replayable source; not with `routes` or a `dlq:` sink.',
    aliases: ['commitMode', 'delivery', 'delivery_guarantee'],
  }),
  ...payloadTemplateShape(),
}));

export const spec = defineConnector({
  name: 'file',
  aliases: ['filesystem', 'FileSystem'],
  title: 'Files',
  description:
    'Reads local files (once, or following them like `tail -F` through rotation) with exact resume after a restart, and writes files with size- and time-based rotation, flushed to disk before a batch is acknowledged.',
  source: {
    options: sourceOptions,
    defaultFormat: (o: { path: string | string[] }) => formatForPath(Array.isArray(o.path) ? o.path[0]! : o.path),
    replayable: true,
    metadata: {
      _path: 'absolute path of the file the record was read from',
      _offset: "byte offset of the record's first byte in the file",
      _line: 'line number the record starts on (1-based; the frame number with length_delimited framing)',
    },
    create(o: z.output<ReturnType<typeof sourceOptions>>, info) {
      // A Parquet file can only be decoded whole (its footer locates everything), so no other framing makes sense.
      const options = info.format === 'parquet' ? { ...o, framing: 'whole_file' as const } : o;
      return lazySource(async () => new (await import('./source.js')).FileSource(options, info));
    },
  },
  sink: {
    options: sinkOptions,
    defaultFormat: (o: { path: string }) => formatForPath(o.path, 'json'),
    exactlyOnce: (o: z.output<ReturnType<typeof sinkOptions>>) => o.commit_mode === 'exactly_once',
    create(o: z.output<ReturnType<typeof sinkOptions>>) {
      return new FileSink(o);
    },
  },
  test: testFile,
});

function parsed<T>(schema: z.ZodType<T, any>, options: unknown): T {
  const r = parseOptions(schema, options);
  if (!r.ok) throw new ConfigError(r.issues);
  return r.value;
}

async function testFile(options: unknown, role: 'source' | 'sink', report: TestReporter, signal: AbortSignal): Promise<void> {
  if (role === 'sink') {
    const o = parsed(sinkOptions(), options);
    try {
      const w = await checkWritable(o);
      report({ message: `directory ${displayPath(w.dir)} is writable`, done: true });
      if (w.existing !== undefined) {
        report({ message: `${displayPath(w.path)} exists (${w.existing} bytes); it will be ${o.append ? 'appended to' : 'truncated'}`, done: true });
      }
    } catch (e) {
      report({ message: `cannot write to ${o.path}: ${errorMessage(e)}`, error: true });
      throw new SluiceError('SINK', `cannot write to '${o.path}': ${errorMessage(e)}`, { cause: e });
    }
    return;
  }
  const o = parsed(sourceOptions(), options);
  const patterns = toPatterns(o.path);
  const files = await resolvePaths(patterns, signal);
  if (files.length === 0) {
    if (o.mode === 'follow') {
      report({ message: `no file matches ${describePatterns(patterns)} yet; follow mode waits for one to appear`, done: true });
      return;
    }
    report({ message: `no file matches ${describePatterns(patterns)}`, error: true });
    throw new SluiceError('CONFIG', `no file matches ${describePatterns(patterns)}`);
  }
  report({ message: `path resolved to ${files.length} file${files.length === 1 ? '' : 's'}`, done: true });
  // A sample is enough to catch permission problems; opening thousands of files would only slow the check down.
  const sample = files.slice(0, TEST_SAMPLE);
  for (const f of sample) {
    if (signal.aborted) return;
    try {
      const fh = await open(f, 'r');
      try {
        const st = await fh.stat();
        // Reading one byte proves the file is readable, not just that it can be opened.
        if (st.size > 0) await fh.read(Buffer.alloc(1), 0, 1, 0);
        report({ message: `opened ${displayPath(f)} (${st.size} bytes)`, done: true });
      } finally {
        await fh.close();
      }
    } catch (e) {
      report({ message: `cannot read ${displayPath(f)}: ${errorMessage(e)}`, error: true });
      throw new SluiceError('CONNECT', `cannot read '${displayPath(f)}': ${errorMessage(e)}`, { cause: e });
    }
  }
  if (files.length > sample.length) report({ message: `checked ${sample.length} of ${files.length} files`, done: true });
}

const TEST_SAMPLE = 20;
