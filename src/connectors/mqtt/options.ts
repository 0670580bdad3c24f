// MQTT options. The connection part is shared by source and sink (and by a connection profile), so both ends accept
// eKuiper's connection-profile keys (`server`, `clientid`, `certificationPath`, ...) as aliases of the canonical names.

import { bool, duration, list, num, opt, z, parseHeaderPairs, lazyOptions } from '../../core/spec.js';
import { durableStorageShape, durableOnFullBlocking } from '../../core/durable-options.js';
import { checkTemplate } from './template.js';
import { payloadTemplateShape } from '../../core/data-template.js';

const SCHEMES = ['tcp', 'mqtt', 'ssl', 'tls', 'mqtts', 'ws', 'wss'];

const serverUrl = lazyOptions('mqtt:server', () =>
  z.string().refine(
    (u) => {
      const m = /^([a-z]+):\/\//i.exec(u);
      return !!m && SCHEMES.includes(m[1]!.toLowerCase()) && URL.canParse(u);
    },
    { message: `must be a URL with scheme ${SCHEMES.map((s) => `${s}://`).join(', ')} (e.g. tcp://127.0.0.1:1883)` },
  ),
);

/** `3`/`3.1` is MQTT 3.1 (eKuiper's numbering, protocol level 3), `4`/`3.1.1` is 3.1.1, `5` is MQTT 5. */
const protocolVersion = lazyOptions('mqtt:protocol_version', () =>
  z
    .preprocess(
      (v) => {
        const s = typeof v === 'number' ? String(v) : typeof v === 'string' ? v.trim().toLowerCase().replace(/^v/, '') : v;
        switch (s) {
          case '3':
          case '3.1':
            return '3.1';
          case '4':
          case '3.1.1':
            return '3.1.1';
          case '5':
          case '5.0':
            return '5';
          default:
            return s;
        }
      },
      z.enum(['3.1', '3.1.1', '5']),
    )
    .prefault('5'),
);

/** Checks a topic filter's wildcards (`#` last and alone in its level, `+` alone in its level) and `$share/` form. */
export function topicFilterProblem(filter: string): string | undefined {
  if (!filter) return 'a topic filter cannot be empty';
  let f = filter;
  if (f.startsWith('$share/')) {
    const parts = f.split('/');
    if (parts.length < 3 || !parts[1] || !parts.slice(2).join('/')) return `'${filter}': a shared subscription is $share/<group>/<topic filter>`;
    if (/[+#]/.test(parts[1]!)) return `'${filter}': the share group name cannot contain + or #`;
    f = parts.slice(2).join('/');
  }
  const levels = f.split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!;
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) return `'${filter}': '#' must be a whole level and the last one`;
    if (l.includes('+') && l !== '+') return `'${filter}': '+' must be a whole level`;
  }
  return undefined;
}

const topicFilters = lazyOptions('mqtt:topics', () =>
  z
    .preprocess(
      (v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v),
      z.array(z.string()).min(1, { message: 'name at least one topic' }),
    )
    .superRefine((list, ctx) => {
      for (const t of list) {
        const p = topicFilterProblem(t);
        if (p) ctx.addIssue({ code: 'custom', message: p });
      }
    }),
);

const qos = lazyOptions('mqtt:qos', () =>
  z.preprocess(
    (v) => (typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : v),
    z
      .number()
      .refine((v) => v === 0 || v === 1 || v === 2, { message: 'QoS must be 0, 1 or 2' })
      .transform((v) => v as 0 | 1 | 2),
  ),
);

export const connectionOptionShape = lazyOptions('mqtt:connection', () =>
  ({
    server: opt(
      list(serverUrl(), {}).prefault(['tcp://127.0.0.1:1883']),
      {
        description:
          'Broker URL(s): `tcp://` (or `mqtt://`), `ssl://` (or `tls://`, `mqtts://`), `ws://`, `wss://`. With several, a failed connection moves on to the next one. A list or a comma-separated string.',
        aliases: ['servers', 'broker', 'brokers', 'url', 'urls'],
        examples: ['tcp://127.0.0.1:1883', ['ssl://broker-a:8883', 'ssl://broker-b:8883']],
      },
    ),
    client_id: opt(z.string().min(1).max(65535).optional(), {
      description:
        'Client identifier. Needed for a persistent session (`clean_session: false`): the broker keeps the session under this name. Unset: a random `sluice_…` id. Two live clients with one id disconnect each other.',
      aliases: ['clientid', 'clientId', 'client.id'],
    }),
    clean_session: bool({
      default: true,
      description:
        '`false`: a persistent session. The broker keeps the subscriptions and queues QoS 1/2 messages while the client is away, and resends unacknowledged ones on reconnect; needs a fixed `client_id`.',
      aliases: ['cleanSession', 'clean_start', 'cleanStart', 'clean'],
    }),
    session_expiry: duration({
      default: '1d',
      description: 'MQTT 5 with `clean_session: false`: how long the broker keeps the session after a disconnect (MQTT 5 ends it at once otherwise).',
      aliases: ['session_expiry_interval', 'sessionExpiryInterval'],
      advanced: true,
    }),
    protocol_version: opt(protocolVersion(), {
      description: 'MQTT version: `5`, `3.1.1` (also `4`) or `3.1` (also `3`, as in eKuiper).',
      aliases: ['protocolVersion', 'protocol', 'version'],
      default: '5',
    }),
    username: opt(z.string().optional(), { description: 'User name.', aliases: ['user', 'user_name'] }),
    password: opt(z.string().optional(), { description: 'Password. Never logged.', secret: true, aliases: ['pass'] }),
    certification_path: opt(z.string().min(1).optional(), {
      description: 'Client certificate (PEM file) for mutual TLS.',
      aliases: ['certificationPath', 'certificate_path', 'cert_file', 'cert'],
    }),
    private_key_path: opt(z.string().min(1).optional(), {
      description: 'Private key (PEM file) of the client certificate.',
      aliases: ['privateKeyPath', 'key_file', 'key'],
    }),
    root_ca_path: opt(z.string().min(1).optional(), {
      description: 'CA certificate(s) (PEM file) to trust instead of the system store, for `ssl://` and `wss://`.',
      aliases: ['rootCaPath', 'root_ca', 'ca_file', 'ca'],
    }),
    insecure_skip_verify: bool({
      default: false,
      description: 'Accept any server certificate. For tests only: it disables the protection TLS gives.',
      aliases: ['insecureSkipVerify', 'skip_verify', 'tls_skip_verify'],
    }),
    keepalive: duration({ default: '30s', description: 'MQTT keep-alive: a ping after this long without traffic; a broker that does not answer is reconnected.', aliases: ['keep_alive', 'keepAlive'] }),
    connect_timeout: duration({ default: '30s', description: 'How long connecting (TCP, TLS, CONNECT/CONNACK) may take.', aliases: ['connection_timeout', 'connectTimeout'] }),
    reconnect_interval: duration({ default: '1s', description: 'Delay between reconnect attempts; a source and a sink reconnect forever, logging each failure.', aliases: ['reconnect_period', 'reconnectPeriod', 'reconnect_delay'] }),
  }),
);

export const sourceOptionShape = lazyOptions('mqtt:source shape', () =>
  ({
    ...connectionOptionShape(),
    topic: opt(topicFilters(), {
      description:
        'Topic filter(s) to subscribe to, with `+` (one level) and `#` (the rest). A list or a comma-separated string. `$share/<group>/<filter>` is a shared subscription: the broker spreads the messages over the group members (scale-out).',
      aliases: ['topics', 'datasource', 'DATASOURCE', 'subscribe', 'filter'],
      examples: ['sensors/+/temperature', ['a/#', 'b/#'], '$share/ingest/sensors/#'],
    }),
    qos: opt(qos().prefault(1), {
      enum: [0, 1, 2],
      description:
        'Subscription QoS. `0`: at most once. `1`/`2`: the message is acknowledged to the broker (PUBACK/PUBREC) only after the sink accepted it; with a persistent session, nothing is lost across restarts.',
      default: 1,
    }),
    max_inflight: num({
      int: true,
      min: 1,
      max: 65535,
      default: 1000,
      description:
        'MQTT 5: how many QoS 1/2 messages the broker may send before the sink acknowledged them (Receive Maximum). MQTT 3.x brokers use their own limit (Mosquitto: `max_inflight_messages`, 20).',
      aliases: ['receive_maximum', 'receiveMaximum'],
    }),
    buffer: opt(z.enum(['memory', 'durable']).default('memory'), {
      description:
        '`durable`: append every received message to a log in the data dir before it enters the pipeline, delete it once the sink acknowledged it. For QoS 0 (which the broker never resends) it survives sink outages and restarts; with QoS 1/2 the broker is acknowledged once the message is in the log.',
    }),
    ...durableStorageShape(),
    ...durableOnFullBlocking('reading from the broker'),
  }),
);

function persistentNeedsId(o: { clean_session: boolean; client_id?: string }, ctx: z.RefinementCtx) {
  if (!o.clean_session && !o.client_id) {
    ctx.addIssue({ code: 'custom', path: ['client_id'], message: 'a persistent session (clean_session: false) needs a fixed client_id, or the broker cannot find it again' });
  }
}

function tlsPairs(o: { certification_path?: string; private_key_path?: string }, ctx: z.RefinementCtx) {
  if ((o.certification_path === undefined) !== (o.private_key_path === undefined)) {
    ctx.addIssue({ code: 'custom', path: [o.certification_path ? 'private_key_path' : 'certification_path'], message: 'mutual TLS needs both certification_path and private_key_path' });
  }
}

export const sourceOptions = lazyOptions('mqtt:source', () =>
  z.strictObject(sourceOptionShape()).superRefine((o, ctx) => {
    persistentNeedsId(o, ctx);
    tlsPairs(o, ctx);
  }),
);

/** `"k1:v1,k2:v2"` or a map; values are field templates. */
const userProperties = lazyOptions('mqtt:user_properties', () => z.preprocess(parseHeaderPairs, z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String).superRefine(templateIssue))));

function templateIssue(s: string, ctx: z.RefinementCtx) {
  const p = checkTemplate(s);
  if (p) ctx.addIssue({ code: 'custom', message: p });
}

export const sinkOptionShape = lazyOptions('mqtt:sink shape', () =>
  ({
    ...connectionOptionShape(),
    topic: opt(
      z.string().min(1).superRefine((s, ctx) => {
        templateIssue(s, ctx);
        if (/[+#]/.test(s.replace(/\{\{[^}]*\}\}/g, ''))) ctx.addIssue({ code: 'custom', message: 'a topic to publish to cannot contain the wildcards + or #' });
      }),
      {
        description:
          'Topic to publish to. `{{ field }}` inserts a field of the record (dotted paths such as `{{ device.id }}`; `_topic`, `_key` and other `_` names read the source metadata), e.g. `sensors/{{ device_id }}/temperature`.',
        aliases: ['datasource', 'DATASOURCE', 'topic_template'],
        examples: ['events', 'sensors/{{ device_id }}/state', 'copy/{{ _topic }}'],
      },
    ),
    qos: opt(qos().prefault(1), { enum: [0, 1, 2], description: 'QoS of the published messages. With 1 or 2 a write completes only when the broker acknowledged every message (PUBACK / PUBCOMP).', default: 1 }),
    retain: bool({ default: false, description: 'Publish with the retain flag: the broker keeps the last message per topic for new subscribers.', aliases: ['retained'] }),
    user_properties: opt(userProperties().optional(), {
      description: 'MQTT 5 user properties on every message: a map (or `"k1:v1,k2:v2"`) of templates, e.g. `{ source: sluice, device: "{{ device_id }}" }`.',
      aliases: ['userProperties', 'headers', 'properties'],
    }),
    headers_from_record: bool({
      default: false,
      description: 'MQTT 5: also send the record headers (for example the user properties an MQTT source read) as user properties.',
      aliases: ['forward_headers', 'propagate_headers'],
    }),
    max_inflight: num({
      int: true,
      min: 1,
      max: 65535,
      default: 20,
      description:
        'QoS 1/2 publishes awaiting their acknowledgement at once (a batch is sent in waves). MQTT 5 brokers announce their own limit, which is respected; MQTT 3.x brokers may silently drop QoS 2 messages beyond theirs (Mosquitto: `max_inflight_messages`, 20).',
      aliases: ['max_in_flight', 'maxInflight'],
      advanced: true,
    }),
    ...payloadTemplateShape(),
  }),
);

export const sinkOptions = lazyOptions('mqtt:sink', () =>
  z.strictObject(sinkOptionShape()).superRefine((o, ctx) => {
    persistentNeedsId(o, ctx);
    tlsPairs(o, ctx);
  }),
);

export type ConnectionOptions = z.output<z.ZodObject<ReturnType<typeof connectionOptionShape>>>;
export type MqttSourceOptions = z.output<ReturnType<typeof sourceOptions>>;
export type MqttSinkOptions = z.output<ReturnType<typeof sinkOptions>>;
