import { defineConnector, z } from '../../core/spec.js';

export const spec = defineConnector({
  name: 'blackhole',
  aliases: ['nop', 'null'],
  title: 'Blackhole',
  description: 'Accepts every record and discards it. For benchmarks and for testing sources.',
  sink: {
    options: z.strictObject({}),
    create: () => ({
      async open() {},
      async write() {},
    }),
  },
});
