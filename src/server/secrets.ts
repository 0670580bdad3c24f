// Secret handling for the control plane: which config keys hold secrets, encryption at rest (AES-256-GCM) and
// redaction. Values are kept as written; `${ENV}` references are not secrets themselves and stay readable.

import { createCipheriv, createDecipheriv, randomBytes, scryptSync } from 'node:crypto';
import type { ConnectorSpec } from '../core/spec.js';
import { metaOf, shapeOf } from '../core/spec.js';
import { scrubUrlCredentials } from '../cli/logging.js';

export const REDACTED = '********';

// Key names that are secret whatever the connector says, because users put credentials under such names in free-form
// maps (headers, properties) that no spec describes.
const SECRET_NAME = /(pass(word|wd|phrase)?$|secret|token|api_?key|apikey|private_?key|credential|bearer|authorization|^nkey$|^seed$|^key$|sasl_?password)/i;

const specSecretNames = new WeakMap<ConnectorSpec, Set<string>>();

/** Canonical names and aliases of every option the connector's specs mark `secret`, lower-cased. */
function specSecrets(spec: ConnectorSpec | undefined): Set<string> {
  if (!spec) return new Set();
  let s = specSecretNames.get(spec);
  if (s) return s;
  s = new Set<string>();
  const walk = (schema: unknown) => {
    const shape = shapeOf(schema as never);
    if (!shape) return;
    for (const [k, v] of Object.entries(shape)) {
      const m = metaOf(v);
      if (m.secret) {
        s!.add(k.toLowerCase());
        for (const a of m.aliases ?? []) s!.add(a.toLowerCase());
      }
      walk(v);
    }
  };
  for (const f of [spec.source, spec.sink, spec.lookup]) if (f) walk(f.options);
  specSecretNames.set(spec, s);
  return s;
}

export function isSecretKey(key: string, spec?: ConnectorSpec): boolean {
  const k = key.toLowerCase();
  if (SECRET_NAME.test(k)) return true;
  const names = specSecrets(spec);
  // Dotted keys (`sasl.password`) are secret when their last segment or the whole spelling is.
  return names.has(k) || names.has(k.split('.').pop()!);
}

const isRef = (v: string) => /^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$/.test(v);

type Visit = (value: unknown, secret: boolean) => unknown;

/** Rebuild a config tree, letting `fn` replace each leaf; `secret` tells whether the leaf sits under a secret key. */
function mapLeaves(v: unknown, spec: ConnectorSpec | undefined, fn: Visit, secret = false): unknown {
  if (Array.isArray(v)) return v.map((x) => mapLeaves(x, spec, fn, secret));
  if (v && typeof v === 'object') {
    if (isEncrypted(v)) return fn(v, true);
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = mapLeaves(x, spec, fn, secret || isSecretKey(k, spec));
    return out;
  }
  return fn(v, secret);
}

export interface EncryptedValue {
  $enc: string;
}

function isEncrypted(v: unknown): v is EncryptedValue {
  return !!v && typeof v === 'object' && typeof (v as EncryptedValue).$enc === 'string' && Object.keys(v).length === 1;
}

export class SecretBox {
  private readonly key?: Buffer;
  constructor(secretKey: string | undefined) {
    // A fixed salt is fine: the salt only stops precomputed tables across installations, not a targeted attack on a
    // weak key, and a per-value salt would need storing next to every value.
    if (secretKey) this.key = scryptSync(secretKey, 'sluice-control-plane-v1', 32);
  }

  get enabled(): boolean {
    return !!this.key;
  }

  encrypt(plain: string): EncryptedValue {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key!, iv);
    const ct = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
    return { $enc: `v1:${Buffer.concat([iv, c.getAuthTag(), ct]).toString('base64')}` };
  }

  decrypt(v: EncryptedValue): string {
    if (!this.key) throw new Error('a stored secret is encrypted but SLUICE_SECRET_KEY is not set');
    const raw = Buffer.from(v.$enc.slice(3), 'base64');
    const d = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, 12));
    d.setAuthTag(raw.subarray(12, 28));
    try {
      return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8');
    } catch {
      throw new Error('a stored secret cannot be decrypted: SLUICE_SECRET_KEY differs from the key it was stored with');
    }
  }

  /** What goes into the store: secret leaves encrypted (unless they are `${ENV}` references). */
  seal(config: unknown, spec: ConnectorSpec | undefined): unknown {
    if (!this.key) return config;
    return mapLeaves(config, spec, (v, secret) => (secret && typeof v === 'string' && !isRef(v) ? this.encrypt(v) : v));
  }

  /** The config as written, secrets in clear: for compiling and for `include_secrets` exports. */
  open(config: unknown, spec: ConnectorSpec | undefined): unknown {
    return mapLeaves(config, spec, (v) => (isEncrypted(v) ? this.decrypt(v) : v));
  }
}

/** The config for display: secret values replaced, references kept, passwords in URLs masked. */
export function redactConfig(config: unknown, spec: ConnectorSpec | undefined): unknown {
  return mapLeaves(config, spec, (v, secret) => {
    if (isEncrypted(v)) return REDACTED;
    if (secret && v !== null && v !== undefined && !(typeof v === 'string' && isRef(v))) return REDACTED;
    return typeof v === 'string' ? scrubUrlCredentials(v) : v;
  });
}

/** Secret values (in clear) found in a config, for scrubbing them out of free text such as error messages. */
export function secretValues(config: unknown, spec: ConnectorSpec | undefined): string[] {
  const out: string[] = [];
  mapLeaves(config, spec, (v, secret) => {
    if (secret && typeof v === 'string' && !isRef(v) && v.length >= 4) out.push(v);
    if (typeof v === 'string') {
      const m = /:\/\/[^\s/:@]*:([^\s/@]+)@/.exec(v);
      if (m && m[1]!.length >= 4) out.push(m[1]!);
    }
    return v;
  });
  return out;
}

/** Put back secrets a client sent as the redaction marker (an export re-imported, a read-modify-write update). */
export function restoreRedacted(next: unknown, prev: unknown): unknown {
  // Without a stored value the marker stays, so validation can name the secret that is missing.
  if (next === REDACTED) return prev ?? REDACTED;
  if (Array.isArray(next)) return next.map((x, i) => restoreRedacted(x, Array.isArray(prev) ? prev[i] : undefined));
  if (next && typeof next === 'object' && !isEncrypted(next)) {
    const p = (prev && typeof prev === 'object' ? prev : {}) as Record<string, unknown>;
    return Object.fromEntries(Object.entries(next).map(([k, v]) => [k, restoreRedacted(v, p[k])]));
  }
  return next;
}

/** Whether a config still holds the redaction marker anywhere (a secret the client never supplied). */
export function redactedPaths(v: unknown, path: (string | number)[] = []): (string | number)[][] {
  if (v === REDACTED) return [path];
  if (Array.isArray(v)) return v.flatMap((x, i) => redactedPaths(x, [...path, i]));
  if (v && typeof v === 'object') return Object.entries(v).flatMap(([k, x]) => redactedPaths(x, [...path, k]));
  return [];
}

/** Replaces known secret values in free text; the set grows as profiles and tables are created. */
export class Scrubber {
  private values = new Set<string>();
  private re?: RegExp;
  add(vals: Iterable<string>) {
    let changed = false;
    for (const v of vals) if (v.length >= 4 && !this.values.has(v)) (this.values.add(v), (changed = true));
    if (changed) {
      const esc = [...this.values].sort((a, b) => b.length - a.length).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
      // JSON-escaped spellings too, so a value with quotes or backslashes is caught inside a serialized body.
      const json = [...this.values].map((s) => JSON.stringify(s).slice(1, -1)).filter((s) => !this.values.has(s)).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
      this.re = new RegExp([...esc, ...json].join('|'), 'g');
    }
  }
  scrub(s: string): string {
    const out = scrubUrlCredentials(s);
    return this.re ? out.replace(this.re, '[redacted]') : out;
  }
}
