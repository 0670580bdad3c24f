// A test double of the Confluent Schema Registry: the REST endpoints Sluice's client uses, on 127.0.0.1, in memory.
// Not a registry: compatibility is only what tests need (a subject can be told to reject any new version).

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import avro from 'avsc';

export interface FakeRegistryOptions {
  /** Require basic auth with this user name and password (or API key and secret). */
  username?: string;
  password?: string;
}

interface Stored {
  id: number;
  schema: string;
  schemaType: string;
}

export class FakeSchemaRegistry {
  private server?: Server;
  private nextId = 1;
  private readonly schemas = new Map<number, Stored>();
  private readonly subjects = new Map<string, number[]>();
  /** Subjects that answer 409 to any new version, with the registry's message. */
  readonly incompatible = new Map<string, string>();
  /** Every request as `METHOD path`, in order. */
  readonly log: string[] = [];
  url = '';

  constructor(private readonly o: FakeRegistryOptions = {}) {}

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Register directly (test setup); returns the id. */
  add(subject: string, schema: string | object, schemaType = 'AVRO'): number {
    return this.put(subject, typeof schema === 'string' ? schema : JSON.stringify(schema), schemaType);
  }

  /** How many requests matched `METHOD path`, e.g. `GET /schemas/ids/1`. */
  count(prefix: string): number {
    return this.log.filter((l) => l.startsWith(prefix)).length;
  }

  /** Like the real registry, equal Avro schemas are recognised however they are spelt (namespace, spacing). */
  private same(a: Stored, schema: string, schemaType: string): boolean {
    return a.schemaType === schemaType && canonical(a.schema, schemaType) === canonical(schema, schemaType);
  }

  private put(subject: string, schema: string, schemaType: string): number {
    let found = [...this.schemas.values()].find((s) => this.same(s, schema, schemaType));
    if (!found) {
      found = { id: this.nextId++, schema, schemaType };
      this.schemas.set(found.id, found);
    }
    const versions = this.subjects.get(subject) ?? [];
    if (!versions.includes(found.id)) versions.push(found.id);
    this.subjects.set(subject, versions);
    return found.id;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = decodeURIComponent(url.pathname);
    this.log.push(`${req.method} ${path}`);
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/vnd.schemaregistry.v1+json' });
      res.end(JSON.stringify(body));
    };
    if (this.o.username !== undefined) {
      const want = 'Basic ' + Buffer.from(`${this.o.username}:${this.o.password ?? ''}`).toString('base64');
      if (req.headers.authorization !== want) return send(401, { error_code: 40101, message: 'Unauthorized' });
    }
    let body: { schema?: string; schemaType?: string } = {};
    if (req.method === 'POST') {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        return send(400, { error_code: 400, message: 'request body is not JSON' });
      }
      if (typeof body.schema !== 'string') return send(422, { error_code: 42201, message: 'Empty schema' });
    }
    let m: RegExpExecArray | null;
    if (req.method === 'GET' && (m = /^\/schemas\/ids\/(\d+)$/.exec(path))) {
      const s = this.schemas.get(Number(m[1]));
      if (!s) return send(404, { error_code: 40403, message: 'Schema not found' });
      return send(200, s.schemaType === 'AVRO' ? { schema: s.schema } : { schema: s.schema, schemaType: s.schemaType });
    }
    if (req.method === 'GET' && (m = /^\/subjects\/(.+)\/versions\/latest$/.exec(path))) {
      const v = this.subjects.get(m[1]!);
      if (!v?.length) return send(404, { error_code: 40401, message: `Subject '${m[1]}' not found.` });
      const s = this.schemas.get(v[v.length - 1]!)!;
      return send(200, { subject: m[1], version: v.length, id: s.id, schema: s.schema, schemaType: s.schemaType });
    }
    if (req.method === 'POST' && (m = /^\/subjects\/(.+)\/versions$/.exec(path))) {
      const subject = m[1]!;
      const schemaType = body.schemaType ?? 'AVRO';
      const existing = (this.subjects.get(subject) ?? []).map((id) => this.schemas.get(id)!).find((s) => this.same(s, body.schema!, schemaType));
      if (existing) return send(200, { id: existing.id });
      const why = this.incompatible.get(subject);
      if (why !== undefined) return send(409, { error_code: 409, message: why });
      if (schemaType === 'AVRO') {
        try {
          JSON.parse(body.schema!);
        } catch {
          return send(422, { error_code: 42201, message: 'Invalid schema' });
        }
      }
      return send(200, { id: this.put(subject, body.schema!, schemaType) });
    }
    if (req.method === 'POST' && (m = /^\/subjects\/([^/]+)$/.exec(path))) {
      const subject = m[1]!;
      const versions = this.subjects.get(subject);
      if (!versions) return send(404, { error_code: 40401, message: `Subject '${subject}' not found.` });
      const schemaType = body.schemaType ?? 'AVRO';
      const i = versions.findIndex((id) => this.same(this.schemas.get(id)!, body.schema!, schemaType));
      if (i < 0) return send(404, { error_code: 40403, message: 'Schema not found' });
      return send(200, { subject, version: i + 1, id: versions[i], schema: body.schema });
    }
    send(404, { error_code: 404, message: `no route ${req.method} ${path}` });
  }
}

function canonical(schema: string, schemaType: string): string {
  if (schemaType !== 'AVRO') return schema.trim();
  try {
    return JSON.stringify(avro.Type.forSchema(JSON.parse(schema), { wrapUnions: true }).schema({ exportAttrs: true }));
  } catch {
    return schema;
  }
}
