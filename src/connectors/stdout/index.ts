import { defineConnector, bool, lazyOptions, z } from '../../core/spec.js';
import type { SinkContext } from '../../core/types.js';

const options = lazyOptions('stdout:sink', () =>
  z.strictObject({
  stream: z.enum(['stdout', 'stderr']).default('stdout').meta({ description: 'Which stream to write to.' }),
  flush: bool({ default: true, description: 'Wait until the stream accepted each batch before acknowledging it.' }),
  }),
);

export const spec = defineConnector({
  name: 'stdout',
  aliases: ['log', 'console'],
  title: 'Standard output',
  description: "Writes each record to the process's standard output in the sink's format (JSON lines by default). For debugging.",
  sink: {
    options,
    defaultFormat: 'json',
    create(o: z.output<ReturnType<typeof options>>) {
      let ctx: SinkContext;
      let first = true;
      const out = o.stream === 'stdout' ? process.stdout : process.stderr;
      return {
        async open(c) {
          ctx = c;
        },
        write(records) {
          const chunk = ctx.encoder.encodeStream(records.map((r) => r.value), first);
          first = false;
          if (!o.flush) {
            out.write(chunk);
            return Promise.resolve();
          }
          return new Promise<void>((resolve, reject) => out.write(chunk, (e) => (e ? reject(e) : resolve())));
        },
      };
    },
  },
});
