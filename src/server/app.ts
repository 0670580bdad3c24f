// The REST API (Fastify). Handlers validate bodies with the zod schemas of api-schemas.ts, compile everything with the
// YAML compiler, and answer errors as `{error: {status, code, message, issues?}}`, never with a stack trace. Every
// response body passes through the secret scrubber on its way out.

import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { ConfigError, formatPath, errorMessage, type ConfigIssue } from '../core/errors.js';
import { allConnectors, findConnector } from '../connectors/index.js';
import { parseOptions, toJsonSchema, type ConnectorSpec } from '../core/spec.js';
import { startPipeline, type RuntimeEnv } from '../core/runtime.js';
import { DEFAULT_BATCH, DEFAULT_BUFFER, DEFAULT_RETRY, type EndpointDef } from '../core/model.js';
import type { StateStore } from '../core/state.js';
import type { SluiceRecord } from '../core/types.js';
import { createFormat, loadFormats } from '../formats/index.js';
import { compileSchema, describeSchema, inferSchema, parseSchemaConfig, schemaToJson } from '../core/schema.js';
import type { ControlStore, PipelineRow, ProfileRow, TableRow, ControlTx } from './store.js';
import { PipelineManager } from './manager.js';
import { createMetricsRegistry } from './metrics.js';
import { REDACTED, redactConfig, redactedPaths, restoreRedacted, secretValues, type Scrubber, type SecretBox } from './secrets.js';
import { compilePipelineRow, compileTable, pipelineReferences, SqlUnavailableError, tableRole, tableToYaml, yamlToTable, loadSqlCompiler, loadSqlRuntime, substituteTree, type Catalog } from './resolve.js';
import * as S from './api-schemas.js';
import { findMount, installMountHost } from '../connectors/webhook/mount.js';
import { nestedDeeperThan } from '../formats/util.js';

const WEBHOOK_PREFIX = '/v1/webhooks/';

export interface AppOptions {
  store: ControlStore;
  box: SecretBox;
  scrubber: Scrubber;
  log: Logger;
  dataDir: string;
  tokens: string[];
  bodyLimit?: number;
  initialBackoffMs?: number;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly issues?: ConfigIssue[],
  ) {
    super(message);
  }
}

const where = (i: ConfigIssue) => (i.loc ? ` (line ${i.loc.line}, column ${i.loc.col})` : '');
const bad = (issues: ConfigIssue[], message = 'invalid request') => new HttpError(400, 'invalid', `${message}: ${issues.map((i) => `${formatPath(i.path) || '(body)'}: ${i.message}${where(i)}`).join('; ')}`, issues);
const issueView = (i: ConfigIssue, scrub: (s: string) => string) => ({ path: formatPath(i.path), message: scrub(i.message), ...(i.loc ? { line: i.loc.line, col: i.loc.col } : {}) });
const notFound = (what: string, id: string) => new HttpError(404, 'not_found', `${what} '${id}' not found`);

/** Deeper request bodies are refused before anything walks them recursively (validation, sealing, compiling). */
const MAX_BODY_DEPTH = 100;

function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  if (nestedDeeperThan(body, MAX_BODY_DEPTH)) throw bad([{ path: [], message: `nested more than ${MAX_BODY_DEPTH} levels deep` }]);
  const r = schema.safeParse(body ?? {});
  if (!r.success) throw bad(r.error.issues.map((i) => ({ path: i.path.filter((p): p is string | number => typeof p !== 'symbol'), message: i.message })));
  return r.data;
}

const newId = (prefix: string) => `${prefix}_${randomBytes(9).toString('base64url')}`;
const iso = (ms: number) => new Date(ms).toISOString();
const digest = (s: string) => createHash('sha256').update(s).digest();

/** Validates connection options that are only part of a connector's options (no topic yet): every role is tried. */
function validateProfileConfig(spec: ConnectorSpec, config: Record<string, unknown>): ConfigIssue[] {
  let best: ConfigIssue[] | undefined;
  for (const f of [spec.source, spec.sink, spec.lookup]) {
    if (!f) continue;
    const r = parseOptions(f.options, config, ['config']);
    const issues = r.ok ? [] : r.issues.filter((i) => !i.message.startsWith('missing required option'));
    if (!best || issues.length < best.length) best = issues;
  }
  return best ?? [];
}

function redactDefinition(definition: unknown): unknown {
  if (!definition || typeof definition !== 'object') return definition;
  const d = { ...(definition as Record<string, unknown>) };
  const ep = (e: unknown) => {
    if (!e || typeof e !== 'object') return e;
    const o = e as Record<string, unknown>;
    const spec = typeof o.connector === 'string' ? findConnector(o.connector) : undefined;
    return redactConfig(o, spec);
  };
  for (const k of ['source', 'sink', 'dlq']) if (d[k] !== undefined) d[k] = ep(d[k]);
  if (Array.isArray(d.routes)) d.routes = d.routes.map((r) => (r && typeof r === 'object' ? { ...(r as object), sink: ep((r as Record<string, unknown>).sink) } : r));
  if (typeof d.query === 'string') d.query = redactSql(d.query);
  return d;
}

/** `'password' = '...'` in SQL WITH lists. */
function redactSql(q: string): string {
  return q.replace(/((?:'[^']*(?:pass|secret|token|key|credential)[^']*'|\b\w*(?:pass|secret|token|key|credential)\w*)\s*=\s*)'((?:[^']|'')*)'/gi, (m, lhs: string, v: string) => (/^\$\{[^}]+\}$/.test(v) ? m : `${lhs}'${REDACTED}'`));
}

function sealDefinition(box: SecretBox, definition: unknown): unknown {
  if (!box.enabled || !definition || typeof definition !== 'object') return definition;
  const d = { ...(definition as Record<string, unknown>) };
  const ep = (e: unknown) => (e && typeof e === 'object' ? box.seal(e, typeof (e as { connector?: unknown }).connector === 'string' ? findConnector((e as { connector: string }).connector) : undefined) : e);
  for (const k of ['source', 'sink', 'dlq']) if (d[k] !== undefined) d[k] = ep(d[k]);
  if (Array.isArray(d.routes)) d.routes = d.routes.map((r) => (r && typeof r === 'object' ? { ...(r as object), sink: ep((r as Record<string, unknown>).sink) } : r));
  return d;
}

function openDefinition(box: SecretBox, definition: unknown): unknown {
  return box.open(definition, undefined);
}

export async function buildApp(o: AppOptions): Promise<{ app: FastifyInstance; manager: PipelineManager; ready(): Promise<void> }> {
  const { store, box, scrubber, log } = o;
  // The control plane lists, validates and runs any connector and format, at any time: load them all once here, so the
  // synchronous lookups below never meet one that is not loaded (they load on first use elsewhere: src/core/loading.ts).
  const [CONNECTORS] = await Promise.all([allConnectors(), loadFormats()]);
  const tokenDigests = o.tokens.map(digest);
  const catalog = async (t: ControlTx = store): Promise<Catalog> => ({ profiles: await t.listProfiles(), tables: await t.listTables() });
  const manager = new PipelineManager({
    log,
    store,
    dataDir: o.dataDir,
    scrubber,
    initialBackoffMs: o.initialBackoffMs,
    // Inline secrets of a JSON definition are stored sealed; the compiler needs them in clear.
    compile: async (row) => compilePipelineRow({ ...row, definition: openDefinition(box, row.definition) }, await catalog(), box),
  });
  let isReady = false;

  const app = Fastify({
    loggerInstance: log.child({ component: 'http' }),
    bodyLimit: o.bodyLimit ?? 1024 * 1024,
    disableRequestLogging: false,
    routerOptions: { maxParamLength: 200 },
  });
  // Schemas serve the OpenAPI document; validation is zod's, so issues carry the field paths users see elsewhere.
  app.setValidatorCompiler(() => () => true);
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));

  await app.register(swagger, {
    openapi: {
      info: { title: 'Sluice control plane', version: '1', description: 'Connection profiles, connection tables and pipelines. See docs/api.md.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: o.tokens.length ? [{ bearer: [] }] : [],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  const open = new Set(['/healthz', '/readyz']);
  app.addHook('onRequest', async (req, reply) => {
    if (!tokenDigests.length) return;
    const path = req.url.split('?')[0]!;
    // Mounted webhooks authenticate their senders themselves (their own bearer token or HMAC signature).
    if (open.has(path) || path === '/docs' || path.startsWith('/docs/') || path.startsWith(WEBHOOK_PREFIX)) return;
    const h = req.headers.authorization ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(h);
    // Compare digests against every token without stopping early, so timing says nothing about which part matched.
    let ok = false;
    if (m) {
      const d = digest(m[1]!.trim());
      for (const t of tokenDigests) ok = timingSafeEqual(d, t) || ok;
    }
    if (!ok) {
      reply.header('www-authenticate', 'Bearer');
      throw new HttpError(401, 'unauthorized', 'missing or invalid bearer token');
    }
  });
  app.addHook('onSend', async (req, _reply, payload) => {
    if ((req as FastifyRequest & { includeSecrets?: boolean }).includeSecrets) return payload;
    return typeof payload === 'string' ? scrubber.scrub(payload) : payload;
  });
  app.setErrorHandler((err: unknown, req, reply) => {
    if (err instanceof HttpError) {
      void reply.status(err.status).send({ error: { status: err.status, code: err.code, message: scrubber.scrub(err.message), ...(err.issues ? { issues: err.issues.map((i) => issueView(i, (x) => scrubber.scrub(x))) } : {}) } });
      return;
    }
    if (err instanceof ConfigError) {
      void reply.status(400).send({ error: { status: 400, code: 'invalid', message: scrubber.scrub(err.message), issues: err.issues.map((i) => issueView(i, (x) => scrubber.scrub(x))) } });
      return;
    }
    if (err instanceof SqlUnavailableError) {
      void reply.status(501).send({ error: { status: 501, code: 'not_implemented', message: err.message } });
      return;
    }
    const e = err as { statusCode?: number; code?: string; message?: string };
    if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const send = (drained: boolean) => {
        if (!drained) void reply.header('connection', 'close');
        return reply.status(413).send({ error: { status: 413, code: 'too_large', message: scrubber.scrub(e.message ?? 'request body is too large') } });
      };
      return drainRequest(req.raw, Math.max(DRAIN_CAP, o.bodyLimit ?? 0)).then(send);
    }
    if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
      // Fastify's own client errors: bad JSON, wrong content type (a body too large is answered above).
      void reply.status(e.statusCode).send({ error: { status: e.statusCode, code: 'bad_request', message: scrubber.scrub(e.message ?? 'bad request') } });
      return;
    }
    log.error({ err: scrubber.scrub(errorMessage(err)) }, 'request failed');
    void reply.status(500).send({ error: { status: 500, code: 'internal', message: scrubber.scrub(errorMessage(err)) } });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ error: { status: 404, code: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` } });
  });

  const learnSecrets = (config: unknown, spec: ConnectorSpec | undefined) => scrubber.add(secretValues(box.open(config, spec), spec));
  for (const p of await store.listProfiles()) learnSecrets(p.config, findConnector(p.connector));
  for (const t of await store.listTables()) learnSecrets(t.config, findConnector(t.connector));
  for (const p of await store.listPipelines()) learnSecrets(openDefinition(box, p.definition), undefined);

  // ---- views ----
  const profileView = (p: ProfileRow) => ({ id: p.id, name: p.name, connector: p.connector, config: redactConfig(p.config, findConnector(p.connector)), ...(p.description ? { description: p.description } : {}), createdAt: iso(p.created_at), updatedAt: iso(p.updated_at) });
  const tableView = (t: TableRow) => ({ id: t.id, name: t.name, connector: t.connector, ...(t.profile_id ? { connectionProfileId: t.profile_id } : {}), role: tableRole(t), config: redactConfig(t.config, findConnector(t.connector)), schema: t.schema, createdAt: iso(t.created_at), updatedAt: iso(t.updated_at) });

  // Rates come from the difference between two samples a few seconds apart.
  const samples = new Map<string, { at: number; in: number; out: number; rateIn: number; rateOut: number }>();
  const sampler = setInterval(() => {
    const now = Date.now();
    for (const r of manager.runs()) {
      if (!r.handle) continue;
      const prev = samples.get(r.id);
      const cur = { at: now, in: r.handle.stats.records_in, out: r.handle.stats.records_out, rateIn: 0, rateOut: 0 };
      if (prev && cur.in >= prev.in && now > prev.at) {
        cur.rateIn = ((cur.in - prev.in) * 1000) / (now - prev.at);
        cur.rateOut = ((cur.out - prev.out) * 1000) / (now - prev.at);
      }
      samples.set(r.id, cur);
    }
  }, 2000);
  sampler.unref();

  const pipelineView = (p: PipelineRow) => {
    const s = manager.status(p.id);
    const h = s?.handle;
    const rate = samples.get(p.id);
    return {
      id: p.id,
      name: p.name,
      kind: p.kind,
      ...(p.kind === 'sql' ? { query: redactSql(String((p.definition as { query: string }).query)) } : { definition: redactDefinition(p.definition) }),
      desiredState: p.desired_state,
      state: s?.state ?? (p.finished ? 'completed' : 'stopped'),
      ...(s?.paused_reason ? { pausedReason: s.paused_reason } : {}),
      restarts: s?.restarts ?? 0,
      lastErrors: s?.errors ?? [],
      ...(s?.next_restart_at ? { nextRestartAt: s.next_restart_at } : {}),
      ...(s?.started_at ? { startedAt: s.started_at } : {}),
      stats: h ? { ...h.stats } : undefined,
      rates: { records_in_per_sec: rate?.rateIn ?? 0, records_out_per_sec: rate?.rateOut ?? 0 },
      version: p.version,
      createdAt: iso(p.created_at),
      updatedAt: iso(p.updated_at),
    };
  };

  const getProfile = async (id: string) => (await store.getProfile(id)) ?? Promise.reject(notFound('connection profile', id));
  const getTable = async (id: string) => (await store.getTable(id)) ?? Promise.reject(notFound('connection table', id));
  const getPipeline = async (id: string) => (await store.getPipeline(id)) ?? Promise.reject(notFound('pipeline', id));

  const id = { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] };
  const doc = (tags: string, summary: string, extra: Record<string, unknown> = {}) => ({ schema: { tags: [tags], summary, ...extra } });
  const err = { 400: S.js(S.errorResponse), 404: S.js(S.errorResponse), 409: S.js(S.errorResponse) };

  // ---- health and metrics ----
  app.get('/healthz', doc('health', 'Liveness: the process answers.'), async () => ({ status: 'ok' }));
  app.get('/readyz', doc('health', 'Readiness: the store answers and stored pipelines were resumed.'), async (_req, reply) => {
    try {
      await store.ping();
    } catch (e) {
      return reply.status(503).send({ status: 'unavailable', reason: `store: ${errorMessage(e)}` });
    }
    if (!isReady) return reply.status(503).send({ status: 'starting' });
    return { status: 'ready', store: store.description };
  });
  const registry = createMetricsRegistry(() => manager.runs());
  app.get('/metrics', doc('health', 'Prometheus metrics.'), async (_req, reply) => {
    reply.header('content-type', registry.contentType);
    return registry.metrics();
  });

  // ---- mounted webhook sources ----
  // A webhook source of a pipeline this server runs (mount: true, or neither host nor port given) registers here, and
  // its requests arrive under /v1/webhooks/<pipeline><path>: no port of its own. The body is left unread for the
  // webhook, which applies its own size limit, authentication and acknowledgement.
  const uninstallMount = installMountHost({ urlFor: (pipeline, path) => `${WEBHOOK_PREFIX}${encodeURIComponent(pipeline)}${path}` });
  app.addHook('onClose', async () => uninstallMount());
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));
    const handler = async (req: FastifyRequest<{ Params: { pipeline: string; '*'?: string } }>, reply: FastifyReply) => {
      const name = req.params.pipeline;
      const mounted = findMount(name);
      if (!mounted) {
        const known = (await store.listPipelines()).some((p) => p.name === name);
        if (!known) throw new HttpError(404, 'not_found', `no pipeline '${name}' with a mounted webhook`);
        // A sender retries on 503: the records arrive once the pipeline runs again.
        reply.header('retry-after', '5');
        throw new HttpError(503, 'not_running', `pipeline '${name}' has no running webhook source`);
      }
      reply.hijack();
      mounted(req.raw, reply.raw, `/${req.params['*'] ?? ''}`);
    };
    const methods = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];
    const schema = { tags: ['webhooks'], summary: "A mounted webhook source: the pipeline's webhook answers (its own auth applies)." };
    scope.route({ method: methods, url: `${WEBHOOK_PREFIX}:pipeline`, schema, handler });
    scope.route({ method: methods, url: `${WEBHOOK_PREFIX}:pipeline/*`, schema, handler });
  });

  // ---- connectors ----
  app.get('/v1/connectors', doc('connectors', 'Every connector with its option JSON Schemas.'), async () => ({
    data: CONNECTORS.map((c) => ({
      name: c.name,
      aliases: c.aliases ?? [],
      title: c.title,
      description: c.description,
      source: !!c.source,
      sink: !!c.sink,
      lookup: !!c.lookup,
      testable: !!c.test,
      autocomplete: !!c.autocomplete,
      docs: `docs/connectors/${c.name}.md`,
      metadata: c.source?.metadata ?? {},
      sourceOptions: c.source ? toJsonSchema(c.source.options) : null,
      sinkOptions: c.sink ? toJsonSchema(c.sink.options) : null,
      lookupOptions: c.lookup ? toJsonSchema(c.lookup.options) : null,
      // A profile holds the connection part of the options, so every option of either role may appear in it.
      profileOptions: c.source ? toJsonSchema(c.source.options) : c.sink ? toJsonSchema(c.sink.options) : null,
    })),
    hasMore: false,
  }));

  // ---- connection profiles ----
  const checkProfile = (body: { connector: string; config: Record<string, unknown> }): ConnectorSpec => {
    const spec = findConnector(body.connector);
    if (!spec) throw bad([{ path: ['connector'], message: `unknown connector '${body.connector}'` }]);
    const envIssues: ConfigIssue[] = [];
    const config = substituteTree(body.config, process.env, ['config'], envIssues) as Record<string, unknown>;
    const redacted = redactedPaths(body.config, ['config']).map((p) => ({ path: p, message: `secret given as '${REDACTED}'; send its value` }));
    const issues = [...envIssues, ...redacted, ...validateProfileConfig(spec, config)];
    if (issues.length) throw bad(issues);
    return spec;
  };
  app.post('/v1/connection_profiles', doc('connection profiles', 'Create a connection profile.', { body: S.js(S.profileBody), response: { 201: S.js(S.profileResponse), ...err } }), async (req, reply) => {
    const body = parseBody(S.profileBody, req.body);
    const spec = checkProfile(body);
    const now = Date.now();
    const row: ProfileRow = { id: newId('prof'), name: body.name, connector: spec.name, config: box.seal(body.config, spec) as Record<string, unknown>, description: body.description, created_at: now, updated_at: now };
    await store.tx(async (t) => {
      if ((await t.listProfiles()).some((p) => p.name === body.name)) throw new HttpError(409, 'conflict', `a connection profile named '${body.name}' exists`);
      await t.putProfile(row);
    });
    learnSecrets(body.config, spec);
    return reply.status(201).send(profileView(row));
  });
  app.get('/v1/connection_profiles', doc('connection profiles', 'List connection profiles.'), async () => ({ data: (await store.listProfiles()).map(profileView), hasMore: false }));
  app.get<{ Params: { id: string } }>('/v1/connection_profiles/:id', doc('connection profiles', 'One connection profile.', { params: id }), async (req) => profileView(await getProfile(req.params.id)));
  app.delete<{ Params: { id: string } }>('/v1/connection_profiles/:id', doc('connection profiles', 'Delete a profile; 409 while a table or pipeline uses it.', { params: id }), async (req, reply) => {
    await store.tx(async (t) => {
      const p = (await t.getProfile(req.params.id)) ?? Promise.reject(notFound('connection profile', req.params.id));
      const prof = await p;
      const users = (await t.listTables()).filter((x) => x.profile_id === prof.id).map((x) => `table '${x.name}'`);
      for (const pl of await t.listPipelines()) {
        const refs = await pipelineReferences(pl);
        if (refs.profiles.has(pl.kind === 'sql' ? prof.name.toLowerCase() : prof.name)) users.push(`pipeline '${pl.name}'`);
      }
      if (users.length) throw new HttpError(409, 'in_use', `connection profile '${prof.name}' is used by ${users.join(', ')}`);
      await t.deleteProfile(prof.id);
    });
    return reply.status(204).send();
  });
  app.post('/v1/connection_profiles/test', doc('connection profiles', 'Connect with a profile (stored or inline) and report.', { body: S.js(S.profileTestBody) }), async (req) => {
    const body = parseBody(S.profileTestBody, req.body);
    let connector: string;
    let config: Record<string, unknown>;
    if (body.id) {
      const p = await getProfile(body.id);
      connector = p.connector;
      config = box.open(p.config, findConnector(p.connector)) as Record<string, unknown>;
    } else {
      if (!body.connector) throw bad([{ path: ['connector'], message: "missing 'connector' (or give the 'id' of a stored profile)" }]);
      connector = body.connector;
      config = body.config ?? {};
      checkProfile({ connector, config });
    }
    const spec = findConnector(connector)!;
    const resolved = substituteTree(config, process.env, ['config'], []) as Record<string, unknown>;
    const messages: Array<{ message: string; error?: boolean }> = [];
    const signal = AbortSignal.timeout(15_000);
    try {
      if (spec.autocomplete) {
        const v = await spec.autocomplete(resolved, signal);
        const summary = Object.entries(v).map(([k, list]) => `${list.length} ${k}`).join(', ');
        messages.push({ message: `connected${summary ? `; found ${summary}` : ''}` });
      } else if (spec.test) {
        try {
          await spec.test(resolved, spec.source ? 'source' : 'sink', (s) => messages.push({ message: s.message, ...(s.error ? { error: true } : {}) }), signal);
        } catch (e) {
          // A profile holds only the connection part; options a table adds (a path, a topic) are not its fault.
          const absent = (i: ConfigIssue) => i.message.startsWith('missing required option') || (typeof i.path[0] === 'string' && !(i.path[0] in resolved));
          const missing = e instanceof ConfigError && e.issues.every(absent);
          if (!missing) throw e;
          const names = (e as ConfigError).issues.map((i) => formatPath(i.path)).join(', ');
          messages.push({ message: `the connection options are valid; testing a connection also needs ${names}, which a table supplies (POST /v1/connection_tables/test)` });
        }
      } else {
        messages.push({ message: `the options are valid; connector '${spec.name}' connects to nothing, so there is nothing more to test` });
      }
      return { ok: !messages.some((m) => m.error), messages };
    } catch (e) {
      messages.push({ message: errorMessage(e), error: true });
      return { ok: false, messages };
    }
  });
  app.get<{ Params: { id: string } }>('/v1/connection_profiles/:id/autocomplete', doc('connection profiles', 'Suggestions (topics, streams, queues) from the system the profile connects to.', { params: id }), async (req) => {
    const p = await getProfile(req.params.id);
    const spec = findConnector(p.connector)!;
    if (!spec.autocomplete) return { supported: false, values: {} };
    const config = substituteTree(box.open(p.config, spec), process.env, ['config'], []) as Record<string, unknown>;
    try {
      return { supported: true, values: await spec.autocomplete(config, AbortSignal.timeout(15_000)) };
    } catch (e) {
      throw new HttpError(502, 'upstream', `autocomplete failed: ${errorMessage(e)}`);
    }
  });

  // ---- connection tables ----
  const tableFrom = async (body: z.output<typeof S.tableTestBody>, name: string): Promise<{ row: TableRow; spec: ConnectorSpec; c: Catalog }> => {
    const spec = findConnector(body.connector);
    if (!spec) throw bad([{ path: ['connector'], message: `unknown connector '${body.connector}'` }]);
    const c = await catalog();
    if (body.connectionProfileId && !c.profiles.some((p) => p.id === body.connectionProfileId)) {
      throw bad([{ path: ['connectionProfileId'], message: `no connection profile with id '${body.connectionProfileId}'` }]);
    }
    const redacted = redactedPaths(body.config, ['config']).map((p) => ({ path: p, message: `secret given as '${REDACTED}'; send its value` }));
    if (redacted.length) throw bad(redacted);
    const now = Date.now();
    const row: TableRow = { id: newId('tbl'), name, connector: spec.name, profile_id: body.connectionProfileId, config: body.config, schema: body.schema, created_at: now, updated_at: now };
    return { row, spec, c };
  };
  app.post('/v1/connection_tables', doc('connection tables', 'Create a connection table.', { body: S.js(S.tableBody), response: { 201: S.js(S.tableResponse), ...err } }), async (req, reply) => {
    const body = parseBody(S.tableBody, req.body);
    const { row, spec, c } = await tableFrom(body, body.name);
    const r = compileTable(row, c, box, tableRole(row));
    if (r.issues.length) throw bad(r.issues);
    const stored = { ...row, config: box.seal(row.config, spec) as Record<string, unknown> };
    await store.tx(async (t) => {
      if ((await t.listTables()).some((x) => x.name === row.name)) throw new HttpError(409, 'conflict', `a connection table named '${row.name}' exists`);
      await t.putTable(stored);
    });
    learnSecrets(row.config, spec);
    return reply.status(201).send(tableView(stored));
  });
  app.get('/v1/connection_tables', doc('connection tables', 'List connection tables.'), async () => ({ data: (await store.listTables()).map(tableView), hasMore: false }));
  app.get<{ Params: { id: string } }>('/v1/connection_tables/:id', doc('connection tables', 'One connection table.', { params: id }), async (req) => tableView(await getTable(req.params.id)));
  app.delete<{ Params: { id: string } }>('/v1/connection_tables/:id', doc('connection tables', 'Delete a table; 409 while a pipeline uses it.', { params: id }), async (req, reply) => {
    await store.tx(async (t) => {
      const tbl = await t.getTable(req.params.id);
      if (!tbl) throw notFound('connection table', req.params.id);
      const users: string[] = [];
      for (const pl of await t.listPipelines()) {
        const refs = await pipelineReferences(pl);
        if (refs.tables.has(pl.kind === 'sql' ? tbl.name.toLowerCase() : tbl.name)) users.push(`pipeline '${pl.name}'`);
      }
      if (users.length) throw new HttpError(409, 'in_use', `connection table '${tbl.name}' is used by ${users.join(', ')}`);
      await t.deleteTable(tbl.id);
    });
    return reply.status(204).send();
  });

  const readOnly = (s: StateStore): StateStore => ({
    scope(p, n) {
      const x = s.scope(p, n);
      return { get: (k) => x.get(k), entries: () => x.entries(), set: async () => undefined, delete: async () => undefined };
    },
    close: async () => undefined,
  });
  const sampleEnv = (): RuntimeEnv => ({
    log: log.child({ component: 'sample' }),
    state: readOnly(store.state),
    dataDir: o.dataDir,
    connector: (n) => {
      const c = findConnector(n);
      if (!c) throw new Error(`unknown connector '${n}'`);
      return c;
    },
  });
  /** Read a few records from a source endpoint without writing anywhere or moving any checkpoint. */
  const sample = async (endpoint: EndpointDef, limit: number, timeoutMs: number, onRecords?: (r: SluiceRecord[]) => void): Promise<{ values: unknown[]; error?: string }> => {
    const values: unknown[] = [];
    const h = startPipeline(
      { name: `sample-${randomBytes(4).toString('hex')}`, source: endpoint, batch: { ...DEFAULT_BATCH, linger_ms: 0 }, buffer: DEFAULT_BUFFER, retry: { ...DEFAULT_RETRY, max_attempts: 1 } },
      sampleEnv(),
      {
        preview: {
          limit,
          onRecords(records) {
            const take = records.slice(0, Math.max(0, limit - values.length));
            for (const r of take) values.push(r.value);
            if (take.length) onRecords?.(take);
          },
        },
      },
    );
    const timer = setTimeout(() => void h.stop(), timeoutMs);
    const r = await h.done;
    clearTimeout(timer);
    return { values, error: r.status === 'failed' ? errorMessage(r.error) : undefined };
  };

  app.post('/v1/connection_tables/test', doc('connection tables', 'Test a table: streams progress as newline-delimited JSON.', { body: S.js(S.tableTestBody) }), async (req, reply) => {
    const body = parseBody(S.tableTestBody, req.body);
    const { row, spec, c } = await tableFrom(body, body.name ?? `test_${randomBytes(3).toString('hex')}`);
    const role = tableRole(row);
    const r = compileTable(row, c, box, role);
    if (r.issues.length || !r.endpoint) throw bad(r.issues);
    const endpoint = r.endpoint;
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store' });
    const ac = new AbortController();
    reply.raw.on('close', () => ac.abort());
    const send = (m: Record<string, unknown>) => {
      if (!reply.raw.writableEnded) reply.raw.write(scrubber.scrub(JSON.stringify(m)) + '\n');
    };
    let failed = false;
    try {
      send({ message: `testing ${role} '${row.name}' (${spec.name})` });
      if (spec.test) {
        await spec.test(endpoint.config, role, (s) => {
          if (s.error) failed = true;
          send({ message: s.message, ...(s.done ? { done: true } : {}), ...(s.error ? { error: true } : {}) });
        }, AbortSignal.any([ac.signal, AbortSignal.timeout(20_000)]));
      } else if (role === 'source') {
        // No dedicated test: read one record the way a pipeline would.
        send({ message: 'started reading' });
        const s = await sample(endpoint, 1, 5000, () => send({ message: 'received the first message' }));
        if (s.error) throw new Error(s.error);
        send({ message: s.values.length ? `first message: ${JSON.stringify(s.values[0]).slice(0, 500)}` : 'no message within 5s (the source is reachable but quiet)' });
      } else {
        send({ message: `the options are valid; connector '${spec.name}' has no connection test` });
      }
    } catch (e) {
      failed = true;
      send({ message: errorMessage(e), error: true });
    }
    send({ done: true, ok: !failed, message: failed ? 'test failed' : 'test succeeded' });
    reply.raw.end();
  });

  app.post('/v1/connection_tables/schemas/test', doc('connection tables', 'Validate a schema, check samples against it, or infer one from samples or from the source.', { body: S.js(S.schemaTestBody) }), async (req) => {
    const body = parseBody(S.schemaTestBody, req.body);
    const { format = 'json', bad_data: _b, metadata_fields: _m, payload_path: _p, ...decl } = body.schema as Record<string, unknown>;
    const hasFields = decl.fields !== undefined || decl.stream_schema !== undefined || decl.columns !== undefined;
    let spec;
    if (hasFields) {
      const s = parseSchemaConfig(decl, ['schema']);
      if (!s.ok) throw bad(s.issues);
      spec = s.value;
    }
    let values: unknown[] | undefined;
    if (body.samples) {
      const fmt = (await import('../formats/index.js')).parseFormatConfig(format, ['schema', 'format']);
      if (!fmt.ok) throw bad(fmt.issues);
      const dec = createFormat(fmt.value).decoder();
      values = [];
      const errors: ConfigIssue[] = [];
      body.samples.forEach((x, i) => {
        if (typeof x !== 'string') return void values!.push(x);
        const rows: unknown[] = [];
        try {
          dec.decode(x, rows, (e) => errors.push({ path: ['samples', i], message: errorMessage(e) }));
        } catch (e) {
          errors.push({ path: ['samples', i], message: errorMessage(e) });
        }
        values!.push(...rows);
      });
      if (errors.length) return { ok: false, errors: errors.map((i) => ({ path: formatPath(i.path), message: i.message })) };
    } else if (body.connector) {
      const { row, c } = await tableFrom({ name: undefined, connector: body.connector, connectionProfileId: body.connectionProfileId, config: body.config ?? {}, schema: { format } }, `schema_test_${randomBytes(3).toString('hex')}`);
      const r = compileTable(row, c, box, 'source');
      if (r.issues.length || !r.endpoint) throw bad(r.issues);
      const s = await sample(r.endpoint, body.limit, body.timeout_ms);
      if (s.error) return { ok: false, sampled: s.values.length, errors: [{ path: '', message: s.error }] };
      values = s.values;
    }
    if (!values) {
      if (!spec) throw bad([{ path: ['schema', 'fields'], message: 'give fields to validate, samples, or a connector to sample from' }]);
      return { ok: true, schema: schemaToJson(spec), description: describeSchema(spec) };
    }
    if (spec) {
      const coerce = compileSchema(spec);
      const errors: Array<{ path: string; message: string }> = [];
      values.forEach((v, i) => {
        try {
          coerce(structuredClone(v));
        } catch (e) {
          errors.push({ path: `samples[${i}]`, message: errorMessage(e) });
        }
      });
      return { ok: errors.length === 0, sampled: values.length, schema: schemaToJson(spec), errors };
    }
    if (!values.length) return { ok: false, sampled: 0, errors: [{ path: '', message: 'no message arrived to infer a schema from' }] };
    const inferred = inferSchema(values, { parseStrings: format === 'csv' });
    return { ok: true, sampled: values.length, inferred: true, schema: schemaToJson(inferred), description: describeSchema(inferred) };
  });

  // ---- pipelines ----
  const validatePipeline = async (row: Pick<PipelineRow, 'name' | 'kind' | 'definition'>, c: Catalog) => {
    const r = await compilePipelineRow({ ...row, definition: openDefinition(box, row.definition) }, c, box);
    if (!r.def) throw bad(r.issues, 'invalid pipeline');
    if (r.def.transform) {
      const sql = await loadSqlRuntime();
      if (!sql) throw new SqlUnavailableError('this pipeline has a SQL transform, but this build has no SQL layer');
      const issues = sql.checkTransform(r.def, { tables: r.doc?.tables, profiles: r.doc?.profiles });
      if (issues.length) throw bad(issues.map((i) => ({ ...i, path: row.kind === 'sql' ? ['query', ...i.path] : ['transform', ...i.path] })), 'invalid pipeline');
    }
    return r.def;
  };
  const definitionOf = (body: Record<string, unknown>): Pick<PipelineRow, 'kind' | 'definition'> => {
    if (typeof body.query === 'string') {
      const extra = Object.keys(body).filter((k) => k !== 'name' && k !== 'query');
      if (extra.length) throw bad(extra.map((k) => ({ path: [k], message: 'a SQL pipeline takes only name and query' })));
      return { kind: 'sql', definition: { query: body.query } };
    }
    const { name: _n, ...def } = body;
    return { kind: 'json', definition: def };
  };
  app.post<{ Querystring: { start?: string } }>('/v1/pipelines', doc('pipelines', 'Create a pipeline from SQL or a YAML-equivalent definition; it starts unless ?start=false.', { body: S.js(S.pipelineBody), response: { 201: S.js(S.pipelineResponse), ...err, 501: S.js(S.errorResponse) } }), async (req, reply) => {
    const body = parseBody(S.pipelineBody, req.body) as Record<string, unknown> & { name: string };
    const start = req.query.start !== 'false';
    const d = definitionOf(body);
    await validatePipeline({ name: body.name, ...d }, await catalog());
    const now = Date.now();
    const row = await store.tx(async (t) => {
      if ((await t.listPipelines()).some((p) => p.name === body.name)) throw new HttpError(409, 'conflict', `a pipeline named '${body.name}' exists`);
      return t.putPipeline({ id: newId('pl'), name: body.name, kind: d.kind, definition: sealDefinition(box, d.definition), desired_state: start ? 'running' : 'stopped', finished: false, created_at: now, updated_at: now });
    });
    // A fresh pipeline must not inherit the checkpoints of a deleted one with the same name.
    learnSecrets(d.definition, undefined);
    if (start) await manager.launch(row);
    return reply.status(201).send(pipelineView(row));
  });
  app.get('/v1/pipelines', doc('pipelines', 'List pipelines with state and rates.'), async () => ({ data: (await store.listPipelines()).map(pipelineView), hasMore: false }));
  app.get<{ Params: { id: string } }>('/v1/pipelines/:id', doc('pipelines', 'One pipeline with per-output metrics, last errors and checkpoint positions.', { params: id }), async (req) => {
    const p = await getPipeline(req.params.id);
    const s = manager.status(p.id);
    const h = s?.handle;
    const scopes = ['source', 'sink', 'dlq'];
    if (h) for (const r of h.def.routes ?? []) scopes.push(`route:${r.name}`);
    const checkpoints: Record<string, Record<string, unknown>> = {};
    for (const sc of scopes) {
      const entries = await store.state.scope(p.name, sc).entries();
      if (entries.length) checkpoints[sc] = Object.fromEntries(entries);
    }
    return {
      ...pipelineView(p),
      versions: await store.pipelineVersions(p.id),
      source: h ? { connector: h.def.source.connector, format: h.def.source.format.name, metrics: h.metrics.source.snapshot() } : undefined,
      outputs: h
        ? Object.fromEntries(Object.entries(h.metrics.outputs).map(([n, m]) => [n, { connector: n === 'sink' ? h.def.sink?.connector : h.def.routes?.find((r) => r.name === n)?.sink.connector, metrics: m.snapshot() }]))
        : undefined,
      dlq: h?.def.dlq ? { connector: h.def.dlq.connector, metrics: h.metrics.dlq?.snapshot() ?? {} } : undefined,
      checkpoints,
      // Where a mounted webhook source of this pipeline answers (path only: the host is whatever clients use).
      ...(h && findMount(p.name) ? { webhookPath: `${WEBHOOK_PREFIX}${encodeURIComponent(p.name)}${String((h.def.source.options as { path?: unknown }).path ?? '/')}` } : {}),
    };
  });
  app.post<{ Params: { id: string } }>('/v1/pipelines/:id/stop', doc('pipelines', 'Stop (drain, commit); stays stopped across restarts.', { params: id }), async (req) => {
    const p = await getPipeline(req.params.id);
    await store.setPipelineState(p.id, { desired_state: 'stopped' });
    await manager.stop(p.id);
    return pipelineView((await store.getPipeline(p.id))!);
  });
  app.post<{ Params: { id: string } }>('/v1/pipelines/:id/start', doc('pipelines', 'Start (resumes from checkpoints).', { params: id }), async (req) => {
    const p = await getPipeline(req.params.id);
    await store.setPipelineState(p.id, { desired_state: 'running', finished: false });
    await manager.restart((await store.getPipeline(p.id))!);
    return pipelineView((await store.getPipeline(p.id))!);
  });
  app.delete<{ Params: { id: string } }>('/v1/pipelines/:id', doc('pipelines', 'Stop and delete a pipeline with its checkpoints.', { params: id }), async (req, reply) => {
    const p = await getPipeline(req.params.id);
    await manager.remove(p.id);
    await store.tx(async (t) => {
      await t.deletePipeline(p.id);
      await t.deleteState(p.name);
    });
    return reply.status(204).send();
  });
  app.get<{ Params: { id: string }; Querystring: { limit?: string; timeout?: string } }>('/v1/pipelines/:id/preview', doc('pipelines', 'Server-sent events with sample output records, tapped from the running pipeline.', { params: id }), async (req, reply) => {
    const p = await getPipeline(req.params.id);
    const limit = Math.min(1000, Math.max(1, Number(req.query.limit ?? 20) || 20));
    const timeoutMs = Math.min(300_000, Math.max(100, Number(req.query.timeout ?? 30_000) || 30_000));
    const s = manager.status(p.id);
    if (!s || !['running', 'starting', 'paused'].includes(s.state)) throw new HttpError(409, 'not_running', `pipeline '${p.name}' is ${s?.state ?? 'stopped'}; preview shows what a running pipeline writes`);
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive' });
    const enc = createFormat({ name: 'json', options: {} }).encoder();
    let sent = 0;
    let finish!: () => void;
    const finished = new Promise<void>((r) => (finish = r));
    const untap = manager.tap(p.id, (output, records) => {
      for (const r of records) {
        if (sent >= limit) return finish();
        sent++;
        const value = JSON.parse(Buffer.from(enc.encodeStream([r.value], false)).toString('utf8').trim()) as unknown;
        reply.raw.write(`event: record\ndata: ${scrubber.scrub(JSON.stringify({ output, value }))}\n\n`);
      }
      if (sent >= limit) finish();
    });
    const timer = setTimeout(finish, timeoutMs);
    reply.raw.on('close', finish);
    reply.raw.write(': preview of running pipeline\n\n');
    await finished;
    clearTimeout(timer);
    untap();
    if (!reply.raw.writableEnded) {
      reply.raw.write(`event: end\ndata: ${JSON.stringify({ records: sent })}\n\n`);
      reply.raw.end();
    }
  });

  // ---- export / import ----
  app.get<{ Querystring: { include_secrets?: string } }>('/v1/export', doc('batch', 'Profiles, tables and pipelines as one document (the YAML file shape).'), async (req) => {
    const withSecrets = req.query.include_secrets === 'true';
    if (withSecrets) {
      if (!tokenDigests.length) throw new HttpError(403, 'forbidden', 'include_secrets=true needs a server started with an API token');
      (req as FastifyRequest & { includeSecrets?: boolean }).includeSecrets = true;
    }
    const c = await catalog();
    const names = new Map(c.profiles.map((p) => [p.id, p.name]));
    const show = (cfg: unknown, spec: ConnectorSpec | undefined) => (withSecrets ? box.open(cfg, spec) : redactConfig(cfg, spec));
    return {
      version: 1,
      exported_at: new Date().toISOString(),
      connection_profiles: Object.fromEntries(c.profiles.map((p) => [p.name, { connector: p.connector, config: show(p.config, findConnector(p.connector)), ...(p.description ? { description: p.description } : {}) }])),
      tables: Object.fromEntries(c.tables.map((t) => [t.name, tableToYaml(t, (i) => names.get(i), show(t.config, findConnector(t.connector)) as Record<string, unknown>)])),
      pipelines: (await store.listPipelines()).map((p) => ({
        name: p.name,
        ...((withSecrets ? openDefinition(box, p.definition) : redactDefinition(p.definition)) as object),
        enabled: p.desired_state === 'running',
      })),
    };
  });

  app.post<{ Querystring: { dry_run?: string } }>('/v1/import', doc('batch', 'Import a document from GET /v1/export: all or nothing; ?dry_run=true reports what would change.', { body: S.js(S.importBody) }), async (req) => {
    const body = parseBody(S.importBody, req.body);
    const dryRun = req.query.dry_run === 'true';
    const issues: ConfigIssue[] = [];
    const cur = await catalog();
    const curPipelines = await store.listPipelines();
    const now = Date.now();
    type Change = 'created' | 'updated' | 'unchanged';
    const report = { connection_profiles: {} as Record<string, Change>, tables: {} as Record<string, Change>, pipelines: {} as Record<string, Change> };
    const profiles = [...cur.profiles];
    const profileWrites: ProfileRow[] = [];
    for (const [name, raw] of Object.entries(body.connection_profiles ?? {})) {
      const path = ['connection_profiles', name];
      const r = parseBody(S.profileBody.omit({ name: true }).extend({ name: S.profileBody.shape.name.optional() }), raw ?? {});
      const prev = profiles.find((p) => p.name === name);
      const spec = findConnector(r.connector);
      if (!spec) {
        issues.push({ path: [...path, 'connector'], message: `unknown connector '${r.connector}'` });
        continue;
      }
      const config = restoreRedacted(r.config, prev ? box.open(prev.config, spec) : undefined) as Record<string, unknown>;
      try {
        checkProfile({ connector: r.connector, config });
      } catch (e) {
        if (e instanceof HttpError && e.issues) issues.push(...e.issues.map((i) => ({ ...i, path: [...path, ...i.path] })));
        continue;
      }
      const same = prev && prev.connector === spec.name && JSON.stringify(box.open(prev.config, spec)) === JSON.stringify(config) && (prev.description ?? undefined) === r.description;
      report.connection_profiles[name] = prev ? (same ? 'unchanged' : 'updated') : 'created';
      if (same) continue;
      const row: ProfileRow = { id: prev?.id ?? newId('prof'), name, connector: spec.name, config: box.seal(config, spec) as Record<string, unknown>, description: r.description, created_at: prev?.created_at ?? now, updated_at: now };
      profileWrites.push(row);
      profiles.splice(prev ? profiles.indexOf(prev) : profiles.length, prev ? 1 : 0, row);
    }
    const tables = [...cur.tables];
    const tableWrites: TableRow[] = [];
    for (const [name, raw] of Object.entries(body.tables ?? {})) {
      const path = ['tables', name];
      if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
        issues.push({ path, message: 'expected a table: {connector, profile?, config, format?, schema?}' });
        continue;
      }
      const y = yamlToTable(raw as Record<string, unknown>);
      const prof = y.profile !== undefined ? profiles.find((p) => p.name === y.profile) : undefined;
      if (y.profile !== undefined && !prof) {
        issues.push({ path: [...path, 'profile'], message: `unknown connection profile '${y.profile}'` });
        continue;
      }
      const connector = y.connector ?? prof?.connector;
      const spec = connector ? findConnector(connector) : undefined;
      if (!spec) {
        issues.push({ path: [...path, 'connector'], message: connector ? `unknown connector '${connector}'` : "missing 'connector'" });
        continue;
      }
      const prev = tables.find((t) => t.name === name);
      const config = restoreRedacted(y.config, prev ? box.open(prev.config, spec) : undefined) as Record<string, unknown>;
      const left = redactedPaths(config, [...path, 'config']);
      if (left.length) {
        issues.push(...left.map((p) => ({ path: p, message: `secret given as '${REDACTED}'; send its value` })));
        continue;
      }
      const row: TableRow = { id: prev?.id ?? newId('tbl'), name, connector: spec.name, profile_id: prof?.id, config, schema: y.schema, created_at: prev?.created_at ?? now, updated_at: now };
      const chk = compileTable(row, { profiles, tables }, box, tableRole(row));
      if (chk.issues.length) {
        issues.push(...chk.issues.map((i) => ({ ...i, path: [...path, ...i.path] })));
        continue;
      }
      const same = prev && prev.connector === row.connector && prev.profile_id === row.profile_id && JSON.stringify(box.open(prev.config, spec)) === JSON.stringify(config) && JSON.stringify(prev.schema) === JSON.stringify(row.schema);
      report.tables[name] = prev ? (same ? 'unchanged' : 'updated') : 'created';
      if (same) continue;
      const sealed = { ...row, config: box.seal(config, spec) as Record<string, unknown> };
      tableWrites.push(sealed);
      tables.splice(prev ? tables.indexOf(prev) : tables.length, prev ? 1 : 0, sealed);
    }
    const pipelineWrites: Array<{ row: Omit<PipelineRow, 'version'>; restart: boolean }> = [];
    const seen = new Set<string>();
    for (const [i, raw] of (body.pipelines ?? []).entries()) {
      const path = ['pipelines', i];
      if (!raw || typeof raw !== 'object' || Array.isArray(raw) || typeof (raw as { name?: unknown }).name !== 'string') {
        issues.push({ path, message: 'expected a pipeline with a name' });
        continue;
      }
      const { enabled, ...rest } = raw as Record<string, unknown> & { name: string };
      const name = rest.name;
      if (seen.has(name)) issues.push({ path: [...path, 'name'], message: `pipeline name '${name}' is used twice` });
      seen.add(name);
      let d: Pick<PipelineRow, 'kind' | 'definition'>;
      try {
        d = definitionOf(parseBody(S.pipelineBody, rest) as Record<string, unknown>);
      } catch (e) {
        if (e instanceof HttpError && e.issues) issues.push(...e.issues.map((x) => ({ ...x, path: [...path, ...x.path] })));
        continue;
      }
      const prev = curPipelines.find((p) => p.name === name);
      d = { ...d, definition: restoreRedacted(d.definition, prev ? openDefinition(box, prev.definition) : undefined) };
      const left = redactedPaths(d.definition, path);
      if (left.length) {
        issues.push(...left.map((p) => ({ path: p, message: `secret given as '${REDACTED}'; send its value` })));
        continue;
      }
      try {
        await validatePipeline({ name, ...d }, { profiles, tables });
      } catch (e) {
        if (e instanceof HttpError && e.issues) issues.push(...e.issues.map((x) => ({ ...x, path: x.path[0] === 'tables' || x.path[0] === 'connection_profiles' ? x.path : [...path, ...x.path] })));
        else throw e;
        continue;
      }
      const desired = enabled === false || enabled === 'false' ? 'stopped' : 'running';
      const same = prev && prev.kind === d.kind && JSON.stringify(openDefinition(box, prev.definition)) === JSON.stringify(d.definition) && prev.desired_state === desired;
      report.pipelines[name] = prev ? (same ? 'unchanged' : 'updated') : 'created';
      if (same) continue;
      pipelineWrites.push({ row: { id: prev?.id ?? newId('pl'), name, kind: d.kind, definition: sealDefinition(box, d.definition), desired_state: desired, finished: false, created_at: prev?.created_at ?? now, updated_at: now }, restart: !!prev });
    }
    if (issues.length) throw bad(issues, 'import refused, nothing was changed');
    if (!dryRun) {
      const rows = await store.tx(async (t) => {
        for (const p of profileWrites) await t.putProfile(p);
        for (const x of tableWrites) await t.putTable(x);
        const out: PipelineRow[] = [];
        for (const w of pipelineWrites) out.push(await t.putPipeline(w.row));
        return out;
      });
      for (const p of profileWrites) learnSecrets(p.config, findConnector(p.connector));
      for (const x of tableWrites) learnSecrets(x.config, findConnector(x.connector));
      for (const [k, row] of rows.entries()) {
        learnSecrets(openDefinition(box, row.definition), undefined);
        if (pipelineWrites[k]!.restart) await manager.stop(row.id);
        if (row.desired_state === 'running') await manager.restart(row);
      }
    }
    return { dryRun, changes: report };
  });

  app.get('/v1/status', doc('health', 'Server status.'), async () => ({ store: store.description, sql: !!(await loadSqlCompiler()), secretsEncrypted: box.enabled, auth: tokenDigests.length > 0 }));

  return {
    app: app as unknown as FastifyInstance,
    manager,
    async ready() {
      await manager.resumeAll();
      isReady = true;
    },
  };
}

export type { FastifyReply };

/** Past this much unread body a refused request is answered and its connection closed instead of drained. */
const DRAIN_CAP = 16 * 1024 * 1024;

/**
 * Reads and discards the rest of a refused request's body, up to `cap` bytes. Clients that send the whole body before
 * reading the answer (fetch, curl without `Expect: 100-continue`) then get the 413 instead of a broken pipe. False
 * when the body went past `cap`.
 */
function drainRequest(req: IncomingMessage, cap: number): Promise<boolean> {
  if (req.readableEnded || req.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    let n = 0;
    const done = (ok: boolean) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onEnd);
      req.off('close', onEnd);
      resolve(ok);
    };
    const onData = (chunk: Buffer) => {
      n += chunk.length;
      if (n > cap) done(false);
    };
    const onEnd = () => done(true);
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onEnd);
    req.once('close', onEnd);
    req.resume();
  });
}
