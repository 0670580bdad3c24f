// The `buffer_*` options of every push source that can keep what it received in the durable buffer
// (docs/durable-buffer.md), worded once, and the buffer they open.

import { join } from 'node:path';
import { opt, size, z } from './spec.js';
import type { DurableBufferOptions } from './durable-buffer.js';

/**
 * `buffer_max_bytes` and `buffer_fsync`. `prefix` goes before each description where the buffer is one mode of a
 * wider option (webhook: "`ack: buffer`: "); `whenFull` says what happens at the bound where `buffer_on_full` does not.
 */
export function durableStorageShape(prefix = '', whenFull = '') {
  const say = (text: string) => (prefix ? prefix + text : text[0]!.toUpperCase() + text.slice(1));
  return {
    buffer_max_bytes: size({ default: '1GiB', description: say(`bound of the durable buffer on disk${whenFull}.`) }),
    buffer_fsync: opt(z.enum(['never', 'interval', 'always']).default('interval'), {
      description: say(
        'when the durable buffer syncs to disk: `always` (before records enter the pipeline; survives power loss), `interval` (every 100 ms; a power loss may lose the last 100 ms), `never` (survives a crash of the process, not a power loss).',
      ),
    }),
  };
}

/** `buffer_on_full` of a source that can stop reading: `stops` names what `block` stops. */
export function durableOnFullBlocking(stops: string) {
  return {
    buffer_on_full: opt(z.enum(['block', 'drop_oldest', 'drop_newest']).default('block'), {
      description: `When the durable buffer is full: \`block\` (stop ${stops}), \`drop_oldest\` (delete the oldest stored records) or \`drop_newest\` (discard arriving ones); drops are counted.`,
    }),
  };
}

/** `buffer_on_full` of a source whose server cannot be told to wait (`why`), so the choice is what to drop. */
export function durableOnFullDropping(why: string) {
  return {
    buffer_on_full: opt(z.enum(['drop_newest', 'drop_oldest']).default('drop_newest'), {
      description: `When the durable buffer is full: discard arriving messages (\`drop_newest\`) or the oldest stored ones (\`drop_oldest\`); both are counted. ${why}`,
    }),
  };
}

/** What `openDurableBuffer` takes for a source's options, in `<data dir>/buffer/<name>`. */
export function durableBufferConfig(
  dataDir: string,
  name: string,
  o: { buffer_max_bytes: number; buffer_fsync: DurableBufferOptions['fsync']; buffer_on_full?: DurableBufferOptions['onFull'] },
): DurableBufferOptions {
  return { dir: join(dataDir, 'buffer', name), maxBytes: o.buffer_max_bytes, fsync: o.buffer_fsync, onFull: o.buffer_on_full ?? 'block' };
}
