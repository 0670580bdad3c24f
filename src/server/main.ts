// A stand-alone entry for `serve` (`node dist/server/main.js serve ...`), usable before or without the main CLI.

import { Command, Option } from 'commander';
import { registerServeCommand } from './command.js';

const program = new Command();
program
  .name('sluice')
  .addOption(new Option('--log-format <format>').choices(['json', 'pretty']))
  .addOption(new Option('--log-level <level>').default('info'))
  .exitOverride();
registerServeCommand(program);
try {
  await program.parseAsync(process.argv.slice(2), { from: 'user' });
  process.exit(0);
} catch {
  process.exit(2);
}
