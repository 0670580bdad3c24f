import { defineConnector, bool, lazyOptions, z } from '../../core/spec.js';
import { bus, topicMatcher } from './bus.js';

const sourceOptions = lazyOptions('memory:source', () =>
  z.strictObject({
  topic: z.string().min(1).meta({
    description: 'Topic to subscribe to; `+` matches one `/`-separated level and `#` all remaining levels.',
    aliases: ['datasource', 'topics'],
  }),
  end_with_publishers: bool({
    default: false,
    description: 'End the source (so `sluice run` can exit) once every pipeline publishing to a matching topic finished.',
  }),
  }),
);

const sinkOptions = lazyOptions('memory:sink', () =>
  z.strictObject({
    topic: z.string().min(1).meta({ description: 'Topic to publish to (no wildcards).', aliases: ['datasource'] }),
  }),
);

export const spec = defineConnector({
  name: 'memory',
  title: 'Memory topics',
  description:
    'In-process topics that chain pipelines running in the same process. A record published with no subscriber is discarded; nothing survives a restart.',
  source: {
    options: sourceOptions,
    defaultFormat: 'json',
    metadata: { _topic: 'the topic the record was published to' },
    create(o: z.output<ReturnType<typeof sourceOptions>>) {
      let unsubscribe: (() => void) | undefined;
      return {
        run(ctx) {
          return new Promise<void>((resolve) => {
            const end = () => {
              unsubscribe?.();
              resolve();
            };
            unsubscribe = bus.subscribe({
              pattern: o.topic,
              matches: topicMatcher(o.topic),
              deliver: (records) => ctx.emit({ records, decoded: true }),
              publishersGone: () => {
                if (o.end_with_publishers) end();
              },
            });
            if (ctx.signal.aborted) end();
            ctx.signal.addEventListener('abort', end, { once: true });
          });
        },
      };
    },
  },
  sink: {
    options: sinkOptions,
    create(o: z.output<ReturnType<typeof sinkOptions>>) {
      if (/[+#]/.test(o.topic)) throw new Error(`memory sink topic '${o.topic}' must not contain wildcards`);
      let opened = false;
      return {
        async open() {
          bus.openPublisher(o.topic);
          opened = true;
        },
        async write(records) {
          await bus.publish(o.topic, records);
        },
        async close() {
          if (opened) bus.closePublisher(o.topic);
          opened = false;
        },
      };
    },
  },
});
