import { defineConnector, duration, lazyOptions, z } from '../../core/spec.js';

const options = lazyOptions('blackhole:sink', () =>
  z.strictObject({
  delay_per_batch: duration({ default: 0, description: 'Wait this long before acknowledging each batch: simulates a slow sink (backpressure tests).' }),
  delay_per_record: duration({ default: 0, description: 'Wait this long per record of each batch: simulates a sink slower than the source.' }),
  }),
);

export const spec = defineConnector({
  name: 'blackhole',
  aliases: ['nop', 'null'],
  title: 'Blackhole',
  description: 'Accepts every record and discards it. For benchmarks and for testing sources and backpressure.',
  sink: {
    options,
    create(o: z.output<ReturnType<typeof options>>) {
      const slow = o.delay_per_batch > 0 || o.delay_per_record > 0;
      return {
        async open() {},
        write: slow
          ? (records) => new Promise<void>((r) => setTimeout(r, o.delay_per_batch + o.delay_per_record * records.length))
          : async () => undefined,
      };
    },
  },
});
