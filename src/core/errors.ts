// Errors carry a stable code, where it happened (field path, record position, config location) and a hint.

export type ErrorCode =
  | 'CONFIG' // invalid configuration
  | 'DECODE' // a payload could not be decoded by its format
  | 'SCHEMA' // a decoded row does not fit the declared schema
  | 'CONNECT' // a remote system could not be reached
  | 'AUTH' // a remote system refused the credentials
  | 'SINK' // a sink rejected a write
  | 'INTERNAL';

export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;
  /** Retrying the same operation may succeed (a refused connection), as opposed to a permanent error (bad data). */
  readonly retriable: boolean;
  /** Whether the thrower said so; otherwise sink and connection errors count as retriable by default. */
  readonly retriableGiven: boolean;
  constructor(code: ErrorCode, message: string, opts: { hint?: string; retriable?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'SluiceError';
    this.code = code;
    this.hint = opts.hint;
    this.retriable = opts.retriable ?? false;
    this.retriableGiven = opts.retriable !== undefined;
  }
}

/** A record that failed decoding or schema validation; `field` is a dotted path such as `trade.price` or `[3]`. */
export class RecordError extends SluiceError {
  readonly field?: string;
  constructor(code: 'DECODE' | 'SCHEMA', message: string, field?: string) {
    super(code, field ? `field '${field}': ${message}` : message);
    this.name = 'RecordError';
    this.field = field;
  }
}

/** One record of a sink batch that the sink refused for good, by its index in the batch given to `Sink.write`. */
export interface RejectedRecord {
  index: number;
  error: Error;
}

/**
 * Thrown by `Sink.write` when some records of the batch were refused permanently (a 4xx for that record, a constraint
 * violation of one row) and EVERY other record of the batch was written. The runtime does not retry the batch: the
 * rejected records follow the source's `bad_data` policy (dead-letter sink, drop, or fail) and the rest count as
 * written. A sink that also had a transient failure throws that one instead, so the whole batch is retried.
 */
export class RejectedRecordsError extends SluiceError {
  readonly rejected: RejectedRecord[];
  constructor(rejected: RejectedRecord[], message?: string) {
    const first = rejected[0];
    super('SINK', message ?? `${rejected.length} record(s) rejected${first ? `; first at #${first.index}: ${errorMessage(first.error)}` : ''}`, { retriable: false });
    this.name = 'RejectedRecordsError';
    this.rejected = rejected;
  }
}

export interface SourceLocation {
  file: string;
  line: number;
  col: number;
}

export interface ConfigIssue {
  /** Path inside the document, e.g. ['pipelines', 0, 'source', 'config', 'url']. */
  path: (string | number)[];
  message: string;
  loc?: SourceLocation;
}

/** One or more configuration problems, each printable as `file:line:col: message`. */
export class ConfigError extends SluiceError {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    super('CONFIG', issues.map(formatIssue).join('\n'));
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export function formatIssue(i: ConfigIssue): string {
  const where = i.loc ? `${i.loc.file}:${i.loc.line}:${i.loc.col}: ` : '';
  const path = i.path.length ? `${formatPath(i.path)}: ` : '';
  return `${where}${path}${i.message}`;
}

export function formatPath(path: readonly (string | number | symbol)[]): string {
  let s = '';
  for (const p of path) {
    if (typeof p === 'number') s += `[${p}]`;
    else s += s ? `.${String(p)}` : String(p);
  }
  return s;
}

/** Short message of any thrown value, without stack. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}
