import { lazySink, lazySource } from '../../core/lazy.js';
import { defineConnector, lazyOptions, z, type EndpointInfo } from '../../core/spec.js';
import { checkSource, sinkOptionShape, sourceOptionShape, type ConnectionOpts, type SinkOpts, type SourceOpts } from '../sqldb/options.js';

// The dialect (SQL text, error classification) loads with the source or sink that uses it, not with the registry.
const dialect = async () => (await import('./dialect.js')).mysqlDialect;

const connect = async (o: ConnectionOpts) => (await import('./client.js')).connectMysql(o);

export const sourceOptions = lazyOptions('mysql:source', () => z.strictObject(sourceOptionShape(3306, 'root')).superRefine(checkSource));
export const sinkOptions = lazyOptions('mysql:sink', () => z.strictObject(sinkOptionShape(3306, 'root')));

export const spec = defineConnector({
  name: 'mysql',
  aliases: ['mariadb', 'sql'],
  title: 'MySQL / MariaDB',
  description:
    'Polls a table or a query by an incremental column (an id or a timestamp) with the cursor kept as the committed position, and writes batches as multi-row INSERT, upsert (ON DUPLICATE KEY UPDATE) and Debezium deletes, optionally creating the table.',
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
    create(o: SinkOpts, info: EndpointInfo) {
      return lazySink(async () => new (await import('../sqldb/sink.js')).SqlSink(o, await dialect(), () => connect(o), info));
    },
  },
  // The probe loads only for `sluice test`.
  test: async (options, role, report) =>
    (await import('../sqldb/probe.js')).probeSql(
      {
        title: 'MySQL',
        sourceOptions: sourceOptions(),
        sinkOptions: sinkOptions(),
        connect,
        tableExists: (t) => {
          const parts = t.split('.');
          const name = parts.pop()!;
          return {
            sql: 'SELECT COUNT(*) AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?',
            params: [parts[0] ?? null, name],
          };
        },
      },
      options,
      role,
      report,
    ),
});
