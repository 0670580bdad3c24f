// Input fixtures and output checks shared by the file scenarios.

import { closeSync, createReadStream, existsSync, openSync, readdirSync, readSync, statSync, writeSync } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** Deterministic, so every run and both implementations see byte-identical input. */
function lcg(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

/** Binance-style trade ticks; ~150 bytes each as a JSON line. */
function* trades(n) {
  const rnd = lcg(42);
  const E0 = 1_700_000_000_000;
  let price = 43_250;
  for (let i = 0; i < n; i++) {
    price += (rnd() - 0.5) * 4;
    const E = E0 + i * 3;
    const buyer = 21_000_000_000 + i * 2;
    yield {
      e: 'trade',
      E,
      s: 'BTCUSDT',
      t: 3_000_000_000 + i,
      p: price.toFixed(8),
      q: (rnd() * 2).toFixed(8),
      b: buyer,
      a: buyer + 1 + Math.floor(rnd() * 1000),
      T: E - Math.floor(rnd() * 5),
      m: rnd() < 0.5,
    };
  }
}

const FIELDS = ['e', 'E', 's', 't', 'p', 'q', 'b', 'a', 'T', 'm'];

function writeLines(path, n, header, line) {
  const fd = openSync(path, 'w');
  try {
    if (header) writeSync(fd, header + '\n');
    let buf = [];
    for (const t of trades(n)) {
      buf.push(line(t));
      if (buf.length === 10_000) {
        writeSync(fd, buf.join('\n') + '\n');
        buf = [];
      }
    }
    if (buf.length) writeSync(fd, buf.join('\n') + '\n');
  } finally {
    closeSync(fd);
  }
  return statSync(path).size;
}

/** `trades-<n>.jsonl` in `dir`, created once and reused by every run. */
export function jsonlFixture(dir, n) {
  const path = join(dir, `trades-${n}.jsonl`);
  const bytes = existsSync(path) ? statSync(path).size : writeLines(path, n, undefined, (t) => JSON.stringify(t));
  return { path, bytes };
}

/**
 * The baselines' JSON-lines reader: fs.createReadStream (utf8, 256 KiB chunks: the file source's default
 * read_chunk_size, so both sides make the same number of read calls), split on newlines, JSON.parse per line.
 * `onBatch(rows)` gets every `batch` rows and then the rest; a promise it returns is awaited before reading on.
 */
export async function readJsonLines(path, batch, onBatch) {
  let rows = [];
  let carry = '';
  for await (const chunk of createReadStream(path, { encoding: 'utf8', highWaterMark: 256 * 1024 })) {
    const text = carry + chunk;
    let start = 0;
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      if (nl > start) rows.push(JSON.parse(text.slice(start, nl)));
      start = nl + 1;
      if (rows.length === batch) {
        const p = onBatch(rows);
        rows = [];
        if (p) await p;
      }
    }
    carry = text.slice(start);
  }
  if (carry.trim()) rows.push(JSON.parse(carry));
  if (rows.length) await onBatch(rows);
}

/** `trades-<n>.csv` in `dir`: a header row, then n rows with the same fields as the JSON ticks. */
export function csvFixture(dir, n) {
  const path = join(dir, `trades-${n}.csv`);
  const bytes = existsSync(path) ? statSync(path).size : writeLines(path, n, FIELDS.join(','), (t) => FIELDS.map((f) => t[f]).join(','));
  return { path, bytes };
}

/** Newlines in a file, or in every file under a directory (a sink may rotate or name files itself). */
export async function countLines(path) {
  const st = statSync(path);
  if (st.isDirectory()) {
    let total = 0;
    for (const e of readdirSync(path, { withFileTypes: true })) if (e.isFile()) total += await countLines(join(path, e.name));
    return total;
  }
  // One reused buffer: a stream would allocate a fresh 1 MiB chunk per read, and the check, which runs inside the
  // worker after the measured part, would then show up in the worker's peak RSS.
  const buf = (countLines.buf ??= Buffer.allocUnsafeSlow(1 << 20));
  const fd = openSync(path, 'r');
  let lines = 0;
  try {
    for (let got = readSync(fd, buf); got > 0; got = readSync(fd, buf)) {
      const chunk = buf.subarray(0, got);
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
    }
  } finally {
    closeSync(fd);
  }
  return lines;
}

/** First line of the first file (sorted) under a directory: lets the parent compare what the implementations wrote. */
export async function firstLine(dir) {
  const files = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name).sort();
  if (!files.length) return undefined;
  const fh = await open(join(dir, files[0]), 'r');
  try {
    const { buffer, bytesRead } = await fh.read(Buffer.alloc(4096), 0, 4096, 0);
    const s = buffer.subarray(0, bytesRead).toString('utf8');
    const nl = s.indexOf('\n');
    return nl === -1 ? s : s.slice(0, nl);
  } finally {
    await fh.close();
  }
}

/**
 * The bare baselines' output side: one write per batch, optionally followed by fdatasync (what the Sluice file sink
 * calls with `fsync: true`, so both pay for the same flushes).
 */
export async function openBatchWriter(path, { fsync }) {
  await mkdir(dirname(path), { recursive: true });
  const fh = await open(path, 'w');
  return {
    async write(text) {
      await fh.write(text);
      if (fsync) await fh.datasync();
    },
    async close() {
      if (fsync) await fh.datasync();
      await fh.close();
    },
  };
}

/** The correctness check every file scenario ends with: exactly `n` lines written, or the run counts as failed. */
export async function checkOutput(outDir, n) {
  const lines = await countLines(outDir);
  if (lines !== n) throw new Error(`output has ${lines} lines, expected ${n}`);
  return { output_lines: lines, first_line: await firstLine(outDir) };
}
