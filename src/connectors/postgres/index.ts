import { lazySink, lazySource } from '../../core/lazy.js';
import { bool, defineConnector, z, type EndpointInfo } from '../../core/spec.js';
import { checkSource, sinkOptionShape, sourceOptionShape, type ConnectionOpts, type SinkOpts, type SourceOpts } from '../sqldb/options.js';
import { probeSql } from '../sqldb/probe.js';
import { pgDialect } from './dialect.js';

const connect = async (o: ConnectionOpts) => (await import('./client.js')).connectPg(o);

export const sourceOptions = z.strictObject(sourceOptionShape(5432, 'postgres')).superRefine(checkSource);

export const sinkOptions = z.strictObject({
  ...sinkOptionShape(5432, 'postgres'),
  exactly_once: bool({
    default: false,
    description:
      'Write each batch and a position row in `sluice_offsets` (pipeline, position jsonb with a batch sequence and the last record\'s source metadata) in one transaction, so the table and the recorded position never disagree. See the notes below for what this does and does not guarantee.',
  }),
});

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
      return lazySource(async () => new (await import('../sqldb/source.js')).SqlSource(o, pgDialect, () => connect(o)));
    },
  },
  sink: {
    options: sinkOptions,
    defaultFormat: 'json',
    create(o: SinkOpts, info: EndpointInfo) {
      return lazySink(async () => new (await import('../sqldb/sink.js')).SqlSink(o, pgDialect, () => connect(o), info));
    },
  },
  test: (options, role, report) =>
    probeSql(
      { title: 'PostgreSQL', sourceOptions, sinkOptions, connect, tableExists: (t) => ({ sql: 'SELECT to_regclass($1) IS NOT NULL AS t', params: [t] }) },
      options,
      role,
      report,
    ),
});

