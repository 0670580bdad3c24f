// Options of the InfluxDB sink, apart from sink.ts so that validating them does not load undici.

import { duration, list, num, opt, z, lazyOptions } from '../../core/spec.js';

export const sinkOptions = lazyOptions('influxdb:sink', () =>
  z
    .strictObject({
      url: opt(
        z
          .string()
          .min(1)
          .refine((u) => /^https?:\/\/[^/]/i.test(u), { message: 'must be an http:// or https:// URL, e.g. http://localhost:8086' }),
        {
          description: 'Base URL of the InfluxDB server (v1 or v2 API), e.g. `http://localhost:8086`.',
          aliases: ['addr', 'address', 'server', 'host', 'endpoint'],
          examples: ['http://localhost:8086', 'https://eu-central-1-1.aws.cloud2.influxdata.com'],
        },
      ),
      api_version: opt(z.enum(['v1', 'v2']).optional(), {
        description:
          'Which write API to use: `v1` (`/write` with `database`, `retention_policy`, `username`/`password`) or `v2` (`/api/v2/write` with `org`, `bucket`, `token`). Default: `v2` when `bucket` is set, `v1` when `database` is set.',
        aliases: ['version'],
      }),
      database: opt(z.string().min(1).optional(), {
        description: 'v1: the database to write to.',
        aliases: ['db', 'database_name'],
      }),
      retention_policy: opt(z.string().min(1).optional(), {
        description: "v1: the retention policy to write to (default: the database's default policy).",
        aliases: ['rp', 'retentionPolicy', 'retention'],
      }),
      username: opt(z.string().optional(), { description: 'v1: user name.', aliases: ['user', 'username_v1'] }),
      password: opt(z.string().optional(), { description: 'v1: password. Never logged.', aliases: ['pass', 'passwd'], secret: true }),
      auth_method: opt(z.enum(['basic', 'query']).default('basic'), {
        description:
          'v1: how `username`/`password` are sent: `basic` (an `Authorization: Basic` header) or `query` (the `u` and `p` query parameters, for old servers or proxies that strip the header).',
      }),
      org: opt(z.string().min(1).optional(), { description: 'v2: organization name (or ID).', aliases: ['organization', 'org_id'] }),
      bucket: opt(z.string().min(1).optional(), { description: 'v2: bucket name (or ID).', aliases: ['bucket_name'] }),
      token: opt(z.string().min(1).optional(), {
        description: 'v2: API token, sent as `Authorization: Token <token>`. Never logged.',
        aliases: ['api_token', 'auth_token'],
        secret: true,
      }),
      measurement: opt(z.string().min(1).optional(), {
        description: 'Measurement name written for every record. Set this or `measurement_field`.',
        aliases: ['measurement_name', 'table'],
        examples: ['cpu', 'trades'],
      }),
      measurement_field: opt(z.string().min(1).optional(), {
        description: "Take each record's measurement from this field (which is then not written as a field).",
        aliases: ['measurementField', 'measurement_column'],
      }),
      tags: list(z.string().min(1), {
        description: 'Fields written as tags (indexed strings that make up the series key), e.g. `[host, region]`. A tag whose value is null or empty is left out.',
        aliases: ['tag_fields', 'tag_keys', 'tag_columns'],
      }).default([]),
      fields: list(z.string().min(1), {
        description:
          'Fields written as InfluxDB fields. Default: every field of the record that is not a tag, the measurement field or the timestamp field. Nulls are left out.',
        aliases: ['field_names', 'field_keys', 'fieldNames', 'value_fields'],
      }).optional(),
      timestamp_field: opt(z.string().min(1).optional(), {
        description:
          "Field holding the point's time: a timestamp (Date or date text), or an integer already in `precision` units. Default: the record's event time; without one, InfluxDB uses its arrival time.",
        aliases: ['tsFieldName', 'ts_field', 'time_field', 'timestamp_column'],
      }),
      precision: opt(z.enum(['ns', 'us', 'ms', 's']).default('ms'), {
        description: 'Unit of the timestamps sent (and of integer values in `timestamp_field`): `ns`, `us`, `ms` or `s`.',
        aliases: ['time_precision', 'timestamp_precision'],
      }),
      timeout: duration({ default: '10s', description: 'How long one write request may take before it is abandoned and retried.', aliases: ['request_timeout'] }),
      max_retries: num({
        default: 3,
        int: true,
        min: 0,
        description:
          "Retries of one write inside the sink after a 5xx, 429 or connection error (waiting as long as `Retry-After` says, or backing off). After them the write fails retriably and the pipeline's `retry` policy takes over.",
        aliases: ['retries', 'retry_count'],
      }),
      max_retry_delay: duration({ default: '30s', description: 'Longest wait between retries, also for a larger `Retry-After`.', advanced: true }),
    })
    .superRefine((o, ctx) => {
      const version = o.api_version ?? (o.bucket || o.org || o.token ? 'v2' : 'v1');
      if (version === 'v1') {
        if (!o.database) ctx.addIssue({ code: 'custom', path: ['database'], message: 'InfluxDB v1 needs a database (or set bucket/org/token for v2)' });
        for (const k of ['bucket', 'org', 'token'] as const) {
          if (o[k] !== undefined && o.api_version === 'v1') ctx.addIssue({ code: 'custom', path: [k], message: `${k} is a v2 option; api_version is v1` });
        }
      } else {
        if (!o.bucket) ctx.addIssue({ code: 'custom', path: ['bucket'], message: 'InfluxDB v2 needs a bucket' });
        if (!o.org) ctx.addIssue({ code: 'custom', path: ['org'], message: 'InfluxDB v2 needs an org' });
        for (const k of ['database', 'retention_policy', 'username', 'password'] as const) {
          if (o[k] !== undefined) ctx.addIssue({ code: 'custom', path: [k], message: `${k} is a v1 option; with v2 use org, bucket and token` });
        }
      }
      if (o.password !== undefined && o.username === undefined) ctx.addIssue({ code: 'custom', path: ['username'], message: 'password is set without a username' });
      if ((o.measurement === undefined) === (o.measurement_field === undefined)) {
        ctx.addIssue({ code: 'custom', path: ['measurement'], message: 'set exactly one of measurement (a fixed name) and measurement_field (taken from each record)' });
      }
      const roles = new Map<string, string>();
      const claim = (name: string | undefined, role: string) => {
        if (name === undefined) return;
        const prev = roles.get(name);
        if (prev) ctx.addIssue({ code: 'custom', path: [role], message: `'${name}' is both the ${prev} and the ${role}` });
        else roles.set(name, role);
      };
      claim(o.measurement_field, 'measurement_field');
      claim(o.timestamp_field, 'timestamp_field');
      for (const t of o.tags) claim(t, 'tags');
      for (const f of o.fields ?? []) claim(f, 'fields');
    }),
);

export type InfluxSinkOptions = z.output<ReturnType<typeof sinkOptions>>;

export const versionOf = (o: InfluxSinkOptions): 'v1' | 'v2' => o.api_version ?? (o.bucket || o.org || o.token ? 'v2' : 'v1');
