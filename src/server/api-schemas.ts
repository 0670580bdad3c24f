// Request bodies as zod schemas: the handlers validate with them (issues keep their JSON paths) and the OpenAPI
// document shows their JSON Schema. Responses are documented here too.

import { z } from 'zod';

const NAME = /^[A-Za-z0-9_.-]+$/;
const name = z.string().min(1).max(200).regex(NAME, 'use letters, digits, _ . and - only');
const config = z.record(z.string(), z.unknown());

export const profileBody = z.strictObject({
  name: name.meta({ description: 'Unique name; pipelines and YAML refer to the profile by it.' }),
  connector: z.string().min(1).meta({ description: 'Connector name or alias (GET /v1/connectors).' }),
  config: config.default({}).meta({ description: 'Connection options (the connector spec; aliases accepted). Secrets are stored encrypted and never returned.' }),
  description: z.string().max(2000).optional(),
});

export const profileTestBody = z.strictObject({
  id: z.string().optional().meta({ description: 'Test a stored profile instead of an inline one.' }),
  name: z.string().optional(),
  connector: z.string().min(1).optional(),
  config: config.optional(),
  description: z.string().optional(),
});

export const tableSchemaObject = z
  .record(z.string(), z.unknown())
  .meta({ description: '`{format, fields?, primary_key?, unknown_fields?, bad_data?, metadata_fields?, payload_path?}`; `format` as a name or `{json: {}}`; fields in Sluice or Laminar (`{primitive: "Int64"}`) spelling.' });

export const tableBody = z.strictObject({
  name,
  connector: z.string().min(1),
  connectionProfileId: z.string().optional(),
  config: config.default({}),
  schema: tableSchemaObject.default({}),
});

export const tableTestBody = tableBody.extend({ name: name.optional() });

export const schemaTestBody = z.strictObject({
  connector: z.string().min(1).optional().meta({ description: 'Sample from this source when no samples are given.' }),
  connectionProfileId: z.string().optional(),
  config: config.optional(),
  schema: tableSchemaObject.default({}),
  samples: z.array(z.unknown()).max(10_000).optional().meta({ description: 'Messages to validate against `schema.fields`, or to infer a schema from: JSON values or raw strings decoded with `schema.format`.' }),
  limit: z.number().int().min(1).max(1000).default(20).meta({ description: 'How many messages to sample from the source.' }),
  timeout_ms: z.number().int().min(100).max(60_000).default(5000),
});

export const pipelineBody = z
  .looseObject({
    name,
    query: z.string().min(1).max(1_000_000).optional().meta({ description: 'SQL (`CREATE TABLE ... WITH (...)`, `INSERT INTO ... SELECT ...`). Without it, the body is a YAML-equivalent pipeline definition.' }),
  })
  .meta({ description: 'Either `{name, query}` or a pipeline as in a YAML file: `{name, source, sink | routes, dlq?, batch?, buffer?, retry?, transform?}`; endpoints name a table (`"orders"`), or give `{connector | table | profile, config, format, schema, ...}`.' });

export const importBody = z.strictObject({
  version: z.union([z.number(), z.string()]).optional(),
  exported_at: z.string().optional(),
  connection_profiles: z.record(z.string(), z.unknown()).optional(),
  tables: z.record(z.string(), z.unknown()).optional(),
  pipelines: z.array(z.unknown()).optional(),
});

const issue = z.object({ path: z.string(), message: z.string() });
export const errorResponse = z.object({
  error: z.object({ status: z.number(), code: z.string(), message: z.string(), issues: z.array(issue).optional() }),
});

export const profileResponse = z.object({
  id: z.string(),
  name: z.string(),
  connector: z.string(),
  config: config,
  description: z.string().optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export const tableResponse = z.object({
  id: z.string(),
  name: z.string(),
  connector: z.string(),
  connectionProfileId: z.string().optional(),
  role: z.enum(['source', 'sink']),
  config: config,
  schema: z.record(z.string(), z.unknown()),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export const pipelineResponse = z.looseObject({
  id: z.string(),
  name: z.string(),
  kind: z.enum(['json', 'sql']),
  desiredState: z.enum(['running', 'stopped']),
  state: z.string(),
  /** While state is `paused` (retry.on_exhausted: pause): which output waits and why. */
  pausedReason: z.string().optional(),
  restarts: z.number(),
  lastErrors: z.array(z.object({ message: z.string(), at: z.string() })),
  version: z.number(),
});

export const listOf = (item: z.ZodType) => z.object({ data: z.array(item), hasMore: z.boolean() });

/** JSON Schema for the OpenAPI document; zod's `$schema` key is dropped (OpenAPI 3.1 has its own). */
export function js(s: z.ZodType): Record<string, unknown> {
  const { $schema: _s, ...rest } = z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}
