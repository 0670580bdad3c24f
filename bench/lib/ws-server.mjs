// The local WebSocket feed of the websocket-* scenarios, and the code that starts it in a child process.
//
// The server runs in its own process so that its CPU time is not charged to the measured worker (on a 2-core machine
// it still competes with the worker for the cores; that is why it is kept cheap). It does the HTTP upgrade with `ws`,
// waits for the client's first message (the subscription), then writes wire-ready frames that were built once, in
// slices of whole frames straight to the upgraded socket. Going through `ws.send` per message would cost the server
// a few microseconds per frame, enough to make the feed, not the client, the bottleneck. Writing ends where the
// socket's own buffer says so (`write()` returns false, then 'drain'), so a client that stops reading makes the
// server wait instead of grow, and TCP carries the backpressure end to end. The connection stays open afterwards.
//
// With `--rate R` it paces itself instead: R frames per second (checked every millisecond), each stamped with the
// wall-clock time it was written at (see `stampedFramesFixture`), for the end-to-end latency scenarios.
//
//   node bench/lib/ws-server.mjs <frames.bin> [--loop] [--rate R]
// prints {"port": P} once listening; on SIGTERM prints {"frames_sent", "cpu_s"} and exits.

import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readSync, renameSync, statSync, writeSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import { jsonlFixture } from './data.mjs';

/** What the clients send to start the feed (the Binance spelling; the server only waits for any first message). */
export const SUBSCRIBE = '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}';

// Big enough that a slice is one syscall's worth, small enough that a pong from `ws` is never stuck behind much.
const SLICE_BYTES = 256 * 1024;

/** A server-to-client text frame (FIN, opcode 1, unmasked) around `payload`. */
function frame(payload) {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x81, n]) : n < 65536 ? Buffer.from([0x81, 126, n >> 8, n & 0xff]) : null;
  if (!head) throw new Error('frame payload over 64 KiB is not needed here');
  return Buffer.concat([head, payload]);
}

/**
 * `ws-frames-<n>.bin` in `dir`: the n JSON trade ticks of the file scenarios' fixture, each as a complete frame.
 * Built once in the parent and shared by every run. Streamed in 1 MiB pieces: on Linux a worker's peak RSS
 * (ru_maxrss) starts from the parent's RSS at fork time, so a parent that held the whole fixture would inflate every
 * worker's figure.
 */
export function framesFixture(dir, n) {
  return buildFrames(dir, n, `ws-frames-${n}.bin`, (line) => line);
}

/** Where a stamped frame's send time goes: `{"S":` then 17 characters (13 integer digits, a dot, 3 decimals). */
const STAMP_FIELD = '{"S":';
const STAMP_PLACEHOLDER = '0000000000000.000';

/** Wall-clock milliseconds with microsecond resolution, comparable across processes on one machine. */
export const wallMs = () => performance.timeOrigin + performance.now();

/**
 * Like `framesFixture`, but each tick starts with `"S":0000000000000.000,`: the paced server overwrites those digits
 * with the time it writes the frame (the width stays the same until the year 2286), and the receiving side takes
 * `now - S` as the record's end-to-end latency.
 */
export function stampedFramesFixture(dir, n) {
  return buildFrames(dir, n, `ws-frames-stamped-${n}.bin`, (line) => Buffer.concat([Buffer.from(`${STAMP_FIELD}${STAMP_PLACEHOLDER},`), line.subarray(1)]));
}

function buildFrames(dir, n, name, payloadOf) {
  const path = join(dir, name);
  if (!existsSync(path)) {
    const tmp = `${path}.tmp`;
    const src = openSync(jsonlFixture(dir, n).path, 'r');
    const dst = openSync(tmp, 'w');
    try {
      const chunk = Buffer.alloc(1 << 20);
      let carry = Buffer.alloc(0);
      let frames = 0;
      for (let got = readSync(src, chunk); got > 0; got = readSync(src, chunk)) {
        const buf = carry.length ? Buffer.concat([carry, chunk.subarray(0, got)]) : chunk.subarray(0, got);
        const parts = [];
        let start = 0;
        for (let nl = buf.indexOf(10); nl !== -1; nl = buf.indexOf(10, start)) {
          if (nl > start) parts.push(frame(payloadOf(buf.subarray(start, nl))));
          start = nl + 1;
        }
        frames += parts.length;
        writeSync(dst, Buffer.concat(parts));
        carry = Buffer.from(buf.subarray(start));
      }
      if (carry.length) throw new Error('fixture does not end with a newline');
      if (frames !== n) throw new Error(`fixture has ${frames} lines, expected ${n}`);
    } finally {
      closeSync(src);
      closeSync(dst);
    }
    renameSync(tmp, path);
  }
  return { path, bytes: statSync(path).size };
}

/** Cut the frame file into slices that end on frame boundaries, so nothing `ws` writes can land inside a frame. */
function slices(buf) {
  const out = [];
  let frames = 0;
  let start = 0;
  let at = 0;
  const counts = [];
  while (at < buf.length) {
    const len7 = buf[at + 1] & 0x7f;
    at += len7 < 126 ? 2 + len7 : 4 + buf.readUInt16BE(at + 2);
    frames++;
    if (at - start >= SLICE_BYTES || at >= buf.length) {
      out.push(buf.subarray(start, at));
      counts.push(frames);
      frames = 0;
      start = at;
    }
  }
  return { out, counts };
}

/** Start and end offsets of every frame in `buf`, and where its payload starts. */
function frameOffsets(buf) {
  const starts = [];
  const payloads = [];
  let at = 0;
  while (at < buf.length) {
    const len7 = buf[at + 1] & 0x7f;
    const head = len7 < 126 ? 2 : 4;
    starts.push(at);
    payloads.push(at + head);
    at += head + (len7 < 126 ? len7 : buf.readUInt16BE(at + 2));
  }
  starts.push(at);
  return { starts, payloads };
}

/**
 * Write the frames at `rate` per second: every millisecond (or as soon as the event loop gets to it), the frames due
 * by now are stamped with the current time and written in one piece. A client that falls behind does not slow the
 * schedule down: the frames then wait in the socket buffers, and that wait is part of the latency it measures.
 */
function pacedSender(buf, rate, isClosed, onSent) {
  const { starts, payloads } = frameOffsets(buf);
  const total = payloads.length;
  for (let i = 0; i < Math.min(total, 3); i++) {
    if (buf.toString('latin1', payloads[i], payloads[i] + STAMP_FIELD.length) !== STAMP_FIELD) throw new Error('--rate needs stamped frames (stampedFramesFixture)');
  }
  return (socket) => {
    const t0 = performance.now();
    let sent = 0;
    const tick = () => {
      if (isClosed()) return;
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate) + 1);
      if (due > sent) {
        const stamp = wallMs().toFixed(3).padStart(STAMP_PLACEHOLDER.length, '0');
        for (let i = sent; i < due; i++) buf.write(stamp, payloads[i] + STAMP_FIELD.length, 'latin1');
        socket.write(buf.subarray(starts[sent], starts[due]));
        onSent(due - sent);
        sent = due;
      }
      if (sent < total) setTimeout(tick, 1);
    };
    tick();
  };
}

function serve(framesPath, loop, rate) {
  if (rate) return servePaced(framesPath, rate);
  const { out: chunks, counts } = slices(readFileSync(framesPath));
  let framesSent = 0;
  listen((ws, socket, isClosed) => {
    ws.once('message', async () => {
      let i = 0;
      while (!isClosed()) {
        if (i === chunks.length) {
          if (!loop) break;
          i = 0;
        }
        framesSent += counts[i];
        if (!socket.write(chunks[i++])) {
          await new Promise((resolve) => {
            const done = () => {
              socket.off('drain', done);
              socket.off('close', done);
              resolve();
            };
            socket.on('drain', done);
            socket.on('close', done);
          });
        }
      }
    });
  }, () => framesSent);
}

function servePaced(framesPath, rate) {
  let framesSent = 0;
  const buf = readFileSync(framesPath);
  listen((ws, socket, isClosed) => {
    const start = pacedSender(buf, rate, isClosed, (k) => (framesSent += k));
    ws.once('message', () => start(socket));
  }, () => framesSent);
}

/**
 * Serves WebSocket upgrades on a free loopback port (printed as the first stdout line); `onConnection(ws, socket,
 * isClosed)` per client. On SIGTERM prints what `framesSent()` says and the CPU seconds used, then exits.
 */
function listen(onConnection, framesSent) {
  const http = createServer((_req, res) => res.writeHead(426).end());
  const wss = new WebSocketServer({ noServer: true });
  http.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => {
      let closed = false;
      ws.on('close', () => (closed = true));
      ws.on('error', () => (closed = true));
      onConnection(ws, socket, () => closed);
    });
  });
  http.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ port: http.address().port }) + '\n'));
  process.on('SIGTERM', () => {
    const cpu = process.cpuUsage();
    process.stdout.write(JSON.stringify({ frames_sent: framesSent(), cpu_s: (cpu.user + cpu.system) / 1e6 }) + '\n', () => process.exit(0));
  });
  // The parent died without stopping us: do not linger.
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

/**
 * Start the server in a child process. `close()` stops it (by its PID, through the ChildProcess) and returns what it
 * reported: frames written and its own CPU seconds.
 */
export async function startFrameServer(framesPath, { loop = false, rate } = {}) {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), framesPath, ...(loop ? ['--loop'] : []), ...(rate ? ['--rate', String(rate)] : [])], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  const lines = [];
  let wake;
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
      lines.push(JSON.parse(buf.slice(0, nl)));
      buf = buf.slice(nl + 1);
      wake?.();
    }
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const next = () =>
    new Promise((resolve, reject) => {
      if (lines.length) return resolve(lines.shift());
      wake = () => {
        wake = undefined;
        resolve(lines.shift());
      };
      exited.then(() => reject(new Error('the WebSocket feed server exited early')));
    });
  const { port } = await next();
  let closing;
  return {
    url: `ws://127.0.0.1:${port}/ws`,
    /** Safe to call more than once (a scenario calls it for the report, and again in `finally`). */
    close() {
      closing ??= (async () => {
        child.kill('SIGTERM');
        const report = await Promise.race([next().catch(() => ({})), exited.then(() => ({}))]);
        await exited;
        process.off('exit', killOnExit);
        return report;
      })();
      return closing;
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = process.argv.indexOf('--rate');
  serve(process.argv[2], process.argv.includes('--loop'), r === -1 ? undefined : Number(process.argv[r + 1]));
}
