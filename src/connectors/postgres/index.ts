import { lazySink, lazySource } from '../../core/lazy.js';
import { bool, defineConnector, lazyOptions, z, type EndpointInfo } from '../../core/spec.js';
import { checkSource, sinkOptionShape, sourceOptionShape, type ConnectionOpts, type SinkOpts, type SourceOpts } from '../sqldb/options.js';

// The dialect (SQL text, error classification) loads with the source or sink that uses it, not with the registry.
const dialect = async () => (await import('./dialect.js')).pgDialect;

const connect = async (o: ConnectionOpts) => (await import('./client.js')).connectPg(o);

export const sourceOptions = lazyOptions('postgres:source', () => z.strictObject(sourceOptionShape(5432, 'postgres')).superRefine(checkSource));

export const sinkOptions = lazyOptions('postgres:sink', () =>
  z.strictObject({
    ...sinkOptionShape(5432, 'postgres'),
    exactly_once: bool({
      default: false,
      description:
        'Exactly-once: write each batch and the source position it completes in one transaction (a row per pipeline in `sluice_offsets`), and after a restart resume the source from that stored position, so a crash neither loses nor repeats a row, in insert mode too. Needs a replayable source; not with `routes` or a `dlq:` sink.',
    }),
  }),
);

export const spec = defineConnector({
  name: 'postgres',
  aliases: ['postgresql', 'pg'],
  title: 'PostgreSQL',
  description:
    'Polls a table or a query by an incremental column (an id or a timestamp) with the cursor kept as the committed position, and writes batches as multi-row INSERT, upsert (ON CONFLICT) and Debezium deletes, optionally creating the table and recording positions in the same transaction.',
  source: {
    options: sourceOptions,
    defaultFormat: 'json',
    replayable: true,
    metadata: { _table: 'the table the row was read from (null for a query)' },
    create(o: SourceOpts) {
      return lazySource(async () => new (await import('../sqldb/source.js')).SqlSource(o, await dialect(), () => connect(o)));
    },
  },
  sink: {
    options: sinkOptions,
    defaultFormat: 'json',
    exactlyOnce: (o: SinkOpts) => !!o.exactly_once,
    create(o: SinkOpts, info: EndpointInfo) {
      return lazySink(async () => new (await import('../sqldb/sink.js')).SqlSink(o, await dialect(), () => connect(o), info));
    },
  },
  // The probe loads only for `sluice test`.
  test: async (options, role, report) =>
    (await import('../sqldb/probe.js')).probeSql(
      { title: 'PostgreSQL', sourceOptions: sourceOptions(), sinkOptions: sinkOptions(), connect, tableExists: (t) => ({ sql: 'SELECT to_regclass($1) IS NOT NULL AS t', params: [t] }) },
      options,
      role,
      report,
    ),
});

