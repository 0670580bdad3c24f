// Kafka options. The connection part (brokers, SASL, TLS, the Laminar `authentication` profile shape, the schema
// registry settings the Avro format reads) is shared by the source and the sink, so a connection profile works for
// both ends under the same names and aliases.

import { readFileSync } from 'node:fs';
import { bool, duration, list, num, opt, size, z, lazyOptions } from '../../core/spec.js';
import { SluiceError } from '../../core/errors.js';
import { fieldTemplateString, payloadTemplateShape } from '../../core/data-template.js';

const PEM_OR_PATH = 'A file path, or the PEM text itself.';

const tlsSchema = lazyOptions('kafka:tls', () =>
  z
    .strictObject({
      enabled: bool({ description: 'Turn TLS on without any other TLS setting (system CA store).' }).optional(),
      disable: bool({ description: 'Connect without TLS even when other TLS or SASL_SSL settings are present (Timeplus `tls.disable`).' }).optional(),
      skip_verify_server: bool({
        description: 'Accept any broker certificate (self-signed, expired, wrong host). For tests only: it disables the protection TLS gives.',
        aliases: ['skip_verify', 'insecure_skip_verify', 'insecure'],
      }).optional(),
      ca: opt(z.string().optional(), { description: `CA certificate(s) to trust instead of the system store. ${PEM_OR_PATH}`, aliases: ['ca_file', 'ca_cert', 'ca_location'] }),
      cert: opt(z.string().optional(), { description: `Client certificate for mutual TLS. ${PEM_OR_PATH}`, aliases: ['cert_file', 'client_cert', 'certificate_location'] }),
      key: opt(z.string().optional(), { description: `Private key of the client certificate. ${PEM_OR_PATH}`, aliases: ['key_file', 'client_key', 'key_location'], secret: true }),
      passphrase: opt(z.string().optional(), { description: 'Passphrase of an encrypted private key.', secret: true, advanced: true }),
      server_name: opt(z.string().optional(), { description: 'Host name to verify the certificate against (SNI), when it differs from the broker address.', aliases: ['servername', 'sni'], advanced: true }),
    })
    .optional(),
);

const SASL = ['none', 'plain', 'scram-sha-256', 'scram-sha-512'] as const;
type SaslMechanism = (typeof SASL)[number];

/** Laminar's connection-profile shape: `{protocol, mechanism, username, password}`. */
const authenticationSchema = lazyOptions('kafka:authentication', () =>
  z
    .strictObject({
      protocol: opt(
        z.preprocess((v) => (typeof v === 'string' ? v.toUpperCase() : v), z.enum(['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL'])),
        { description: 'Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.', aliases: ['security_protocol', 'security.protocol'] },
      ),
      mechanism: opt(
        z.preprocess((v) => (typeof v === 'string' ? v.toLowerCase().replace(/_/g, '-') : v), z.enum(['plain', 'scram-sha-256', 'scram-sha-512'])).optional(),
        { description: 'SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.', aliases: ['sasl_mechanism', 'sasl.mechanism'] },
      ),
      username: opt(z.string().optional(), { description: 'SASL user name.', aliases: ['user'] }),
      password: opt(z.string().optional(), { description: 'SASL password.', secret: true }),
    })
    .optional(),
);

const registrySchema = lazyOptions('kafka:registry', () =>
  z
    .strictObject({
      address: opt(z.string().optional(), { description: 'Schema Registry URL.', aliases: ['endpoint', 'url'] }),
      api_key: opt(z.string().optional(), { description: 'Schema Registry API key (basic-auth user).', aliases: ['username', 'key'] }),
      api_secret: opt(z.string().optional(), { description: 'Schema Registry API secret (basic-auth password).', aliases: ['password', 'secret'], secret: true }),
    })
    .optional(),
);

export const connectionOptionShape = lazyOptions('kafka:connection', () =>
  ({
    brokers: list(z.string().min(1), {
      description: 'Bootstrap brokers as `host:port`: a comma-separated string or a list.',
      aliases: ['bootstrap_servers', 'bootstrapServers', 'bootstrap.servers', 'broker', 'kafka_brokers'],
      examples: ['kafka1:9092,kafka2:9092'],
    }).refine((l) => l.length > 0, { message: 'needs at least one broker as host:port' }),
    client_id: opt(z.string().min(1).default('sluice'), { description: 'Client id sent to the brokers (shows in broker logs and quotas).', aliases: ['clientId', 'client.id'], advanced: true }),
    sasl: opt(z.preprocess((v) => (typeof v === 'string' ? v.toLowerCase().replace(/_/g, '-') : v), z.enum(SASL)).optional(), {
      description: 'SASL mechanism: `none`, `plain`, `scram-sha-256` or `scram-sha-512` (with `username` and `password`). Default: none, or the `authentication.mechanism` of a Laminar profile.',
      aliases: ['sasl_mechanism', 'sasl.mechanism'],
    }),
    username: opt(z.string().optional(), { description: 'SASL user name.', aliases: ['user', 'sasl_username', 'sasl.username'] }),
    password: opt(z.string().optional(), { description: 'SASL password. Never logged.', aliases: ['sasl_password', 'sasl.password'], secret: true }),
    tls: opt(tlsSchema(), {
      description:
        'TLS settings. TLS is on when any of them is given (except `disable: true`) or the security protocol is SSL/SASL_SSL; `tls.disable: true` turns it off.',
      aliases: ['ssl'],
    }),
    authentication: opt(authenticationSchema(), { description: "Laminar's connection-profile form of the security settings: `{protocol, mechanism, username, password}`." }),
    connection_timeout: duration({ default: '10s', description: 'How long opening a TCP (and TLS) connection to a broker may take.', aliases: ['connectionTimeout', 'connect_timeout'] }),
    request_timeout: duration({ default: '30s', description: 'How long a request to a broker may take.', aliases: ['requestTimeout'], advanced: true }),
    retries: num({
      int: true,
      min: 0,
      default: 5,
      description: 'Retries of a failed connection or request, with exponential backoff, before the error is reported (at startup: the pipeline fails naming the brokers).',
      aliases: ['connect_retries', 'max_retries'],
    }),
    schema_registry_address: opt(z.string().optional(), {
      description: 'Schema Registry URL, used by the `avro` format (handed to it as `registry`).',
      aliases: ['schema_registry_url', 'schemaRegistryUrl', 'schemaRegistryEnum.endpoint'],
    }),
    schema_registry_api_key: opt(z.string().optional(), { description: 'Schema Registry API key (basic-auth user).', aliases: ['schemaRegistryEnum.apiKey', 'schema_registry_username'] }),
    schema_registry_api_secret: opt(z.string().optional(), {
      description: 'Schema Registry API secret (basic-auth password). Never logged.',
      aliases: ['schemaRegistryEnum.apiSecret', 'schema_registry_password'],
      secret: true,
    }),
    schema_registry: opt(registrySchema(), { description: "Laminar's nested form of the Schema Registry settings (`schemaRegistryEnum: {endpoint}`).", aliases: ['schemaRegistryEnum'], advanced: true }),
  }),
);

/** `/regex/` in a topic name means a pattern (the Timeplus and Benthos convention). */
const REGEX_TOPIC = /^\/(.+)\/([a-z]*)$/;

function validRegex(src: string, flags = ''): boolean {
  try {
    new RegExp(src, flags);
    return true;
  } catch {
    return false;
  }
}

const topicList = lazyOptions('kafka:topics', () =>
  z.preprocess(
    (v) => (typeof v === 'string' && !REGEX_TOPIC.test(v.trim()) ? v.split(',').map((s) => s.trim()).filter(Boolean) : typeof v === 'string' ? [v.trim()] : v),
    z.array(z.string().min(1)).min(1, { message: 'needs at least one topic' }),
  ),
);

export const sourceOptions = lazyOptions('kafka:source', () =>
  z
    .strictObject({
      ...connectionOptionShape(),
      topic: opt(topicList().optional(), {
        description: 'Topic(s) to read: a name, a comma-separated list, a list, or a regular expression written as `/^orders-.*/`.',
        aliases: ['topics', 'kafka.topic', 'kafka_topic'],
        examples: ['orders', ['orders', 'refunds'], '/^orders-.*/'],
      }),
      topic_pattern: opt(z.string().refine((s) => validRegex(s), { message: 'not a valid regular expression' }).optional(), {
        description: 'Regular expression of the topics to read (instead of `topic`). Matched against the topics that exist when the source starts.',
        aliases: ['topic_regex', 'topicPattern'],
      }),
      offset: opt(z.enum(['earliest', 'latest', 'group']).default('group'), {
        description:
          'Where to start. `group`: the consumer group\'s committed offset, falling back to `offset_reset` for partitions without one. `earliest` / `latest`: the start / end of each partition on the first run; a restarted pipeline resumes from the offsets it committed (kept in the data dir).',
        aliases: ['source.offset', 'auto_offset_reset_initial', 'start_offset'],
      }),
      offset_reset: opt(z.enum(['earliest', 'latest']).default('latest'), {
        description: 'With `offset: group`: where to start in partitions the group has no committed offset for (Kafka\'s `auto.offset.reset`).',
        aliases: ['auto_offset_reset', 'auto.offset.reset'],
      }),
      group: opt(z.string().min(1).optional(), {
        description: 'Consumer group id. Default: `sluice-source-<pipeline name>`. Offsets are committed to this group.',
        aliases: ['group_id', 'groupId', 'group.id', 'consumer_group'],
      }),
      read_mode: opt(z.enum(['read_committed', 'read_uncommitted']).default('read_committed'), {
        description: '`read_committed` skips records of aborted transactions and waits for open ones; `read_uncommitted` reads everything.',
        aliases: ['isolation_level', 'isolation.level', 'readMode'],
      }),
      concurrency: num({
        int: true,
        min: 1,
        default: 4,
        description: 'Partitions processed concurrently. Records of one partition always stay in order.',
        aliases: ['partitions_consumed_concurrently', 'partitionsConsumedConcurrently'],
      }),
      session_timeout: duration({ default: '30s', description: 'Consumer group session timeout: a member silent this long is removed and its partitions reassigned.', aliases: ['sessionTimeout', 'session.timeout.ms'], advanced: true }),
      heartbeat_interval: duration({ default: '3s', description: 'Consumer group heartbeat interval.', aliases: ['heartbeatInterval', 'heartbeat.interval.ms'], advanced: true }),
      rebalance_timeout: duration({ default: '60s', description: 'How long the group coordinator waits for every member to rejoin during a rebalance. After a crash the dead member holds the rebalance up to this long unless its session expired first; lower it with a short session_timeout for fast restarts.', aliases: ['rebalanceTimeout', 'rebalance.timeout.ms'], advanced: true }),
      max_wait: duration({ default: '500ms', description: 'How long a fetch waits on the broker for new records before returning empty (latency vs. request rate).', aliases: ['fetch_max_wait', 'maxWaitTimeInMs', 'fetch.max.wait.ms'], advanced: true }),
      max_bytes_per_partition: size({ default: '1MiB', description: 'Largest fetch per partition.', aliases: ['maxBytesPerPartition', 'max.partition.fetch.bytes'], advanced: true }),
    })
    .superRefine((o, ctx) => {
      if (!o.topic && !o.topic_pattern) ctx.addIssue({ code: 'custom', path: ['topic'], message: 'missing required option \'topic\' (or `topic_pattern`)' });
      if (o.topic && o.topic_pattern) ctx.addIssue({ code: 'custom', path: ['topic_pattern'], message: 'set either `topic` or `topic_pattern`, not both' });
      for (const t of o.topic ?? []) {
        const m = REGEX_TOPIC.exec(t);
        if (m && !validRegex(m[1]!, m[2])) ctx.addIssue({ code: 'custom', path: ['topic'], message: `'${t}' is not a valid regular expression` });
      }
      securityIssues(o, ctx);
    }),
);

export type KafkaSourceOptions = z.output<ReturnType<typeof sourceOptions>>;

const PARTITIONERS = ['default', 'murmur2', 'legacy', 'random'] as const;
const COMPRESSION = ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const;

const templateOption = fieldTemplateString;

export const sinkOptions = lazyOptions('kafka:sink', () =>
  z
    .strictObject({
      ...connectionOptionShape(),
      topic: templateOption({
        description: 'Topic to write to: a name, or a template such as `events-{{ region }}` that takes each record\'s field (dotted paths allowed; `{{ _topic }}` and other metadata too).',
        aliases: ['kafka.topic', 'kafka_topic', 'topic_template'],
        examples: ['orders', 'trades-{{ symbol }}'],
      }),
      key_field: opt(z.string().min(1).optional(), { description: 'Record field (dotted path) whose value becomes the message key. Without `key_field` and `key`, the record\'s own key (e.g. from a Kafka source) is kept.', aliases: ['keyField', 'key_column', 'message_key_field'] }),
      key: templateOption({ description: 'Message key as a template, e.g. `{{ customer_id }}-{{ region }}` (instead of `key_field`).', aliases: ['key_template'] }).optional(),
      timestamp_field: opt(z.string().min(1).optional(), {
        description: 'Record field (dotted path) with the message timestamp: epoch milliseconds, an ISO 8601 string or a date. Default: the record\'s event time, else the broker\'s time.',
        aliases: ['timestampField', 'timestamp_column'],
      }),
      headers: opt(z.record(z.string(), z.string()).optional(), {
        description: 'Message headers: header name -> template, e.g. `{ source: sluice, region: "{{ region }}" }`.',
        aliases: ['header_templates'],
      }),
      header_fields: list(z.string().min(1), { description: 'Record fields copied as headers under their own names (dotted paths; non-strings are written as JSON).', aliases: ['headers_from_fields'] }).optional(),
      ...payloadTemplateShape(),
      forward_headers: bool({ default: true, description: 'Keep the headers a record arrived with (from a Kafka or other header-carrying source).', aliases: ['propagate_headers'] }),
      partitioner: opt(z.enum(PARTITIONERS).default('default'), {
        description:
          '`default` (alias `murmur2`): murmur2 hash of the key, as the Java client does, so keys land on the same partitions as with other clients; keyless messages are spread. `legacy`: KafkaJS 1.x partitioner. `random`: a random partition per message.',
      }),
      acks: opt(z.preprocess((v) => (v === -1 || v === '-1' ? 'all' : typeof v === 'number' ? String(v) : v), z.enum(['all', '1', '0'])).default('all'), {
        description: '`all` (every in-sync replica has the message), `1` (the leader has it) or `0` (no answer awaited: writes can be lost without an error).',
        aliases: ['required_acks', 'requiredAcks', 'request.required.acks'],
      }),
      ack_timeout: duration({ default: '30s', description: 'How long the broker may take to acknowledge a write.', aliases: ['timeout', 'produce_timeout'], advanced: true }),
      compression: opt(z.preprocess((v) => (typeof v === 'string' ? v.toLowerCase() : v), z.enum(COMPRESSION)).default('none'), {
        description: '`none` or `gzip`. `snappy`, `lz4` and `zstd` need a codec package that is not installed; they are refused with a config error.',
        aliases: ['compression_type', 'compression.type', 'compression_codec'],
      }),
      idempotent: bool({ default: false, description: 'Idempotent producer: broker-side deduplication of retried writes (needs acks `all`).', aliases: ['enable_idempotence', 'enable.idempotence'] }),
      commit_mode: opt(z.enum(['at_least_once', 'exactly_once']).default('at_least_once'), {
        description:
          '`at_least_once`: every batch is one produce request, retried on failure (a retry after a lost answer can duplicate). `exactly_once`: every batch is written in a Kafka transaction (read it with `read_committed`); see the reliability section.',
        aliases: ['commitMode', 'delivery', 'delivery_guarantee'],
      }),
      transactional_id: opt(z.string().min(1).optional(), { description: 'With `exactly_once`: the transactional id. Default `sluice-<pipeline>-sink`. Must be unique per running pipeline.', aliases: ['transactionalId', 'transactional.id'], advanced: true }),
      source_group: opt(z.string().min(1).optional(), {
        description: 'With `exactly_once` and a Kafka source: that source\'s consumer group; its offsets are committed inside the same transaction as the written records.',
        aliases: ['consumer_group', 'offsets_group'],
        advanced: true,
      }),
    })
    .superRefine((o, ctx) => {
      if (o.key_field && o.key) ctx.addIssue({ code: 'custom', path: ['key'], message: 'set either `key_field` or `key`, not both' });
      if (o.compression === 'snappy' || o.compression === 'lz4' || o.compression === 'zstd') {
        const pkg = { snappy: 'kafkajs-snappy', lz4: 'kafkajs-lz4', zstd: '@kafkajs/zstd' }[o.compression];
        ctx.addIssue({ code: 'custom', path: ['compression'], message: `compression '${o.compression}' needs the ${pkg} codec, which is not installed; use 'gzip' or 'none'` });
      }
      if (o.idempotent && o.acks !== 'all') ctx.addIssue({ code: 'custom', path: ['idempotent'], message: "an idempotent producer needs acks 'all'" });
      if (o.commit_mode === 'exactly_once' && o.acks !== 'all') ctx.addIssue({ code: 'custom', path: ['acks'], message: "commit_mode 'exactly_once' needs acks 'all'" });
      if (o.source_group && o.commit_mode !== 'exactly_once') ctx.addIssue({ code: 'custom', path: ['source_group'], message: "only applies with commit_mode 'exactly_once'" });
      securityIssues(o, ctx);
    }),
);

export type KafkaSinkOptions = z.output<ReturnType<typeof sinkOptions>>;
export type ConnectionOptions = z.output<z.ZodObject<ReturnType<typeof connectionOptionShape>>>;

// ---- security ------------------------------------------------------------------------------------------------

export interface Security {
  sasl?: { mechanism: Exclude<SaslMechanism, 'none'>; username: string; password: string };
  tls?: { ca?: string; cert?: string; key?: string; passphrase?: string; servername?: string; rejectUnauthorized: boolean };
}

type IssueCtx = { addIssue(i: { code: 'custom'; path: (string | number)[]; message: string }): void };

/** Check the combination of `sasl`, `username`, `password`, `tls` and `authentication`; messages name the options. */
function securityIssues(o: ConnectionOptions, ctx: IssueCtx) {
  const a = o.authentication;
  if (a) {
    if (o.sasl && o.sasl !== 'none' && a.mechanism && a.mechanism !== o.sasl) {
      ctx.addIssue({ code: 'custom', path: ['authentication', 'mechanism'], message: `'${a.mechanism}' contradicts sasl '${o.sasl}'` });
    }
    const saslProto = a.protocol === 'SASL_PLAINTEXT' || a.protocol === 'SASL_SSL';
    if (saslProto && !a.mechanism && (!o.sasl || o.sasl === 'none')) {
      ctx.addIssue({ code: 'custom', path: ['authentication', 'mechanism'], message: `protocol ${a.protocol} needs a mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)` });
    }
    if (!saslProto && a.mechanism) ctx.addIssue({ code: 'custom', path: ['authentication', 'mechanism'], message: `a SASL mechanism needs protocol SASL_PLAINTEXT or SASL_SSL, not ${a.protocol}` });
    if (a.protocol === 'PLAINTEXT' || a.protocol === 'SASL_PLAINTEXT') {
      if (o.tls && o.tls.disable !== true && Object.keys(o.tls).length) {
        ctx.addIssue({ code: 'custom', path: ['tls'], message: `TLS settings contradict authentication.protocol ${a.protocol}` });
      }
    }
  }
  const mech = effectiveMechanism(o);
  const user = o.username ?? a?.username;
  const pass = o.password ?? a?.password;
  if (mech !== 'none') {
    if (user === undefined) ctx.addIssue({ code: 'custom', path: ['username'], message: `sasl '${mech}' needs a username` });
    if (pass === undefined) ctx.addIssue({ code: 'custom', path: ['password'], message: `sasl '${mech}' needs a password` });
  } else if (user !== undefined || pass !== undefined) {
    ctx.addIssue({ code: 'custom', path: [o.username !== undefined ? 'username' : 'password'], message: "a username/password needs a SASL mechanism: set sasl to 'plain', 'scram-sha-256' or 'scram-sha-512'" });
  }
  if (o.tls?.disable === true && a?.protocol && (a.protocol === 'SSL' || a.protocol === 'SASL_SSL')) {
    ctx.addIssue({ code: 'custom', path: ['tls', 'disable'], message: `contradicts authentication.protocol ${a.protocol}` });
  }
  if (o.tls?.key && !o.tls.cert) ctx.addIssue({ code: 'custom', path: ['tls', 'cert'], message: 'tls.key needs tls.cert (the client certificate)' });
  if (o.tls?.cert && !o.tls.key) ctx.addIssue({ code: 'custom', path: ['tls', 'key'], message: 'tls.cert needs tls.key (its private key)' });
}

function effectiveMechanism(o: ConnectionOptions): SaslMechanism {
  if (o.sasl && o.sasl !== 'none') return o.sasl;
  return o.authentication?.mechanism ?? 'none';
}

/** Whether TLS is on: any TLS setting (other than `disable: true`) or an SSL protocol turns it on. */
export function tlsEnabled(o: ConnectionOptions): boolean {
  if (o.tls?.disable === true) return false;
  const proto = o.authentication?.protocol;
  if (proto === 'SSL' || proto === 'SASL_SSL') return true;
  if (o.tls?.enabled === false) return false;
  return !!o.tls && Object.values(o.tls).some((v) => v !== undefined);
}

function pem(value: string | undefined, option: string): string | undefined {
  if (value === undefined) return undefined;
  if (value.includes('-----BEGIN')) return value;
  try {
    return readFileSync(value, 'utf8');
  } catch (e) {
    throw new SluiceError('CONFIG', `${option}: cannot read '${value}': ${(e as Error).message}`);
  }
}

/** The SASL and TLS settings in effect, with PEM files read. */
export function resolveSecurity(o: ConnectionOptions): Security {
  const out: Security = {};
  const mech = effectiveMechanism(o);
  if (mech !== 'none') {
    out.sasl = { mechanism: mech, username: o.username ?? o.authentication?.username ?? '', password: o.password ?? o.authentication?.password ?? '' };
  }
  if (tlsEnabled(o)) {
    const t = o.tls ?? {};
    out.tls = {
      ca: pem(t.ca, 'tls.ca'),
      cert: pem(t.cert, 'tls.cert'),
      key: pem(t.key, 'tls.key'),
      passphrase: t.passphrase,
      servername: t.server_name,
      rejectUnauthorized: t.skip_verify_server !== true,
    };
  }
  return out;
}

/** Schema Registry settings for the Avro format (the flat Timeplus names win over the nested Laminar form). */
export interface RegistryConfig {
  url: string;
  api_key?: string;
  api_secret?: string;
}

export function registryConfig(o: ConnectionOptions): RegistryConfig | undefined {
  const url = o.schema_registry_address ?? o.schema_registry?.address;
  if (!url) return undefined;
  return { url, api_key: o.schema_registry_api_key ?? o.schema_registry?.api_key, api_secret: o.schema_registry_api_secret ?? o.schema_registry?.api_secret };
}

/** A `/regex/` topic entry as a RegExp, or undefined for a plain name. */
export function topicRegex(t: string): RegExp | undefined {
  const m = REGEX_TOPIC.exec(t);
  return m ? new RegExp(m[1]!, m[2]) : undefined;
}
