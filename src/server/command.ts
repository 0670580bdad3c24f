// The `serve` command's definition. The server itself (fastify, the store) loads only when `serve` runs, so other
// commands start fast.

import { Option, type Command } from 'commander';
import { errorMessage } from '../core/errors.js';

function collectTokens(v: string, prev: string[]): string[] {
  return [...prev, v];
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the control plane: REST API, OpenAPI docs at /docs, metrics at /metrics, and the pipelines created through it')
    .option('--host <host>', 'address to listen on (non-loopback needs --api-token or --insecure)', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0 = any free port)', '8000')
    .option('--data-dir <dir>', 'where the embedded store, checkpoints and buffers live', './.sluice')
    .option('--store <url>', 'sqlite:<path> (default <data-dir>/sluice.db) or postgres://user@host/db[?schema=name]')
    .option('--api-token <token>', 'bearer token clients must send (repeatable; also SLUICE_API_TOKEN, comma-separated)', collectTokens, [])
    .addOption(new Option('--insecure', 'allow a non-loopback --host without a token').default(false))
    .action(async (opts: { host: string; port: string; dataDir: string; store?: string; apiToken: string[]; insecure: boolean }, cmd: Command) => {
      const g = (cmd.parent?.opts() ?? {}) as { logFormat?: 'json' | 'pretty'; logLevel?: string };
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        process.stderr.write(`sluice: --port: expected a port number, got '${opts.port}'\n`);
        process.exit(2);
      }
      const tokens = [...opts.apiToken, ...(process.env.SLUICE_API_TOKEN ?? '').split(',')].map((t) => t.trim()).filter(Boolean);
      const { serve, ServeUsageError } = await import('./cli.js');
      let server: Awaited<ReturnType<typeof serve>>;
      try {
        server = await serve({ host: opts.host, port, dataDir: opts.dataDir, store: opts.store, tokens, insecure: opts.insecure, logFormat: g.logFormat, logLevel: g.logLevel });
      } catch (e) {
        process.stderr.write(`sluice: ${e instanceof ServeUsageError ? e.message : `cannot start the server: ${errorMessage(e).replace(/:\/\/([^\s/:@]*):[^\s/@]+@/g, '://$1:***@')}`}\n`);
        process.exit(e instanceof ServeUsageError ? 2 : 1);
      }
      await new Promise<void>((resolve) => {
        let signals = 0;
        const onSignal = (sig: string) => {
          if (++signals > 1) {
            process.stderr.write(`\nsluice: second ${sig}; exiting without draining\n`);
            process.exit(1);
          }
          process.stderr.write(`sluice: ${sig}: draining pipelines and stopping\n`);
          void server.close().then(resolve, resolve);
        };
        process.on('SIGINT', () => onSignal('SIGINT'));
        process.on('SIGTERM', () => onSignal('SIGTERM'));
      });
    });
}
