// The pipeline definition every config surface (YAML, SQL, REST, console) compiles to.

import type { BadDataPolicy, SchemaSpec } from './types.js';

export interface FormatSpec {
  name: string;
  options: Record<string, unknown>;
}

export interface EndpointDef {
  /** Canonical connector name. */
  connector: string;
  /** The connector options as validated by its spec (durations in ms, sizes in bytes, defaults applied). */
  options: Record<string, unknown>;
  /** The options as written (canonical keys, after profile merge), for display, export and redaction. */
  config: Record<string, unknown>;
  format: FormatSpec;
  schema?: SchemaSpec;
  /** Source only. */
  bad_data: BadDataPolicy;
  /** Source only: unwrap the row found at this dotted path of each decoded payload. */
  payload_path?: string;
  /** Connector metadata selected as row fields: field name -> metadata name (`offset` <- `_offset`). */
  metadata_fields: Record<string, string>;
  /** Connection profile this endpoint used, by name. */
  profile?: string;
  /** Table this endpoint came from, by name. */
  table?: string;
}

export interface BatchPolicy {
  /** Most records per sink write. */
  max_records: number;
  /** Most payload bytes per sink write (approximate: raw payload sizes). */
  max_bytes: number;
  /** How long a partial batch may wait for more records. */
  linger_ms: number;
}

/**
 * What an output does once a write failed `max_attempts` times, or failed with a permanent error (not retried):
 * `fail` stops the pipeline (nothing of the batch is committed), `dlq` writes the batch to the dead-letter sink and
 * goes on, `pause` stops taking records (backpressure) and keeps retrying every `max_backoff` until the sink recovers.
 */
export type ExhaustedPolicy = 'fail' | 'dlq' | 'pause';

export interface RetryPolicy {
  max_attempts: number;
  initial_backoff_ms: number;
  max_backoff_ms: number;
  /** Absent: `dlq` when the pipeline has a dead-letter sink, `fail` otherwise (see `exhaustedPolicy`). */
  on_exhausted?: ExhaustedPolicy;
}

/** The effective `on_exhausted` of a retry policy in a pipeline. */
export function exhaustedPolicy(retry: RetryPolicy, hasDlq: boolean): ExhaustedPolicy {
  return retry.on_exhausted ?? (hasDlq ? 'dlq' : 'fail');
}

/** A condition on a decoded row: the value at `field` (a dotted path) equals, is one of, or matches a regex. */
export interface RouteCondition {
  field: string;
  equals?: unknown;
  in?: unknown[];
  matches?: string;
}

/** One named output of a pipeline: the records whose row satisfies `when` (first matching route wins). */
export interface RouteDef {
  name: string;
  when?: RouteCondition;
  /** Dotted path of the field holding this route's row (`data` for `{"stream": ..., "data": {...}}`). */
  payload_path?: string;
  schema?: SchemaSpec;
  sink: EndpointDef;
  /** This output's own retry policy; absent: the pipeline's. */
  retry?: RetryPolicy;
}

export interface PipelineDef {
  name: string;
  description?: string;
  source: EndpointDef;
  /** Where records go that no route took (every record, without routes). Absent: unrouted records are dropped and counted. */
  sink?: EndpointDef;
  /** Split the stream by field values into named outputs, each with its own schema and sink. */
  routes?: RouteDef[];
  /** Where records go under `bad_data: dlq`. */
  dlq?: EndpointDef;
  /** Stateless SQL-like transform (`SELECT ... WHERE ...`), compiled by the SQL layer. */
  transform?: string;
  batch: BatchPolicy;
  /** Bound of the queue between source and sink, in records and bytes. */
  buffer: { max_records: number; max_bytes: number };
  retry: RetryPolicy;
}

export const DEFAULT_BATCH: BatchPolicy = { max_records: 1000, max_bytes: 4 * 1024 * 1024, linger_ms: 5 };
// A few batches of read-ahead keep source and sink busy at once; more only keeps records alive into the old generation
// of the heap (measured: 20k records cost 15% throughput in GC against 4k; see docs/benchmarks.md).
export const DEFAULT_BUFFER = { max_records: 4_000, max_bytes: 16 * 1024 * 1024 };
export const DEFAULT_RETRY: RetryPolicy = { max_attempts: 10, initial_backoff_ms: 100, max_backoff_ms: 10_000 };
