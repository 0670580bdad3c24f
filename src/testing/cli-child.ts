// `sluice run` as a child process, for tests that kill and restart the real CLI (crash and exactly-once tests).
// The fault suite's `Sluice` (test/fault/harness.ts) adds stats files and RSS sampling on top of the same command;
// test/support/cli.ts runs other CLI commands to completion.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
export const CLI = join(ROOT, 'bin', 'sluice.js');
/** The CLI runs `dist/`: tests that spawn it skip when it was not built (`npm test` builds it first). */
export const CLI_BUILT = existsSync(join(ROOT, 'dist', 'cli', 'main.js'));

export interface CliChild {
  child: ChildProcess;
  /** The exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  /** The tail of stdout and stderr together (JSON log lines). */
  output: () => string;
}

const children: CliChild[] = [];

/**
 * Starts `sluice run <file> --data-dir <dataDir>` with JSON logs and no status line. `keep`: how many characters of
 * output to keep (the tail), enough for an assertion message by default.
 */
export function runPipeline(file: string, dataDir: string, o: { keep?: number } = {}): CliChild {
  const keep = o.keep ?? 3000;
  const child = spawn(process.execPath, [CLI, 'run', file, '--data-dir', dataDir, '--log-format', 'json', '--no-status'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  // Trimmed as it grows, not only when read: a long run must not hold its whole log.
  const add = (d: Buffer) => {
    out += d.toString();
    if (out.length > 2 * keep) out = out.slice(-keep);
  };
  child.stdout!.on('data', add);
  child.stderr!.on('data', add);
  const c: CliChild = { child, exited: new Promise((r) => child.once('exit', (code) => r(code))), output: () => out.slice(-keep) };
  children.push(c);
  return c;
}

/** SIGKILLs every child `runPipeline` started that is still running (by its PID) and waits for them to exit. */
export async function stopChildren(): Promise<void> {
  for (const c of children.splice(0)) {
    if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
    await c.exited;
  }
}
