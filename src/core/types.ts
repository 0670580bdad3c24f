// The contracts every connector, format and config surface is written against.
// Nothing in src/core knows a connector by name.

import type { Logger } from 'pino';

/** One event moving through a pipeline. */
export interface SluiceRecord {
  /** Decoded row (plain object), or the raw payload (string | Uint8Array) before decoding. */
  value: unknown;
  key?: string | Uint8Array | null;
  headers?: Record<string, string | Uint8Array>;
  /** Event time in milliseconds since the epoch. */
  timestamp?: number;
  /** Connector metadata, selectable as fields `_partition`, `_offset`, `_topic`, ... */
  meta?: Record<string, unknown>;
  /** The original payload; kept for the dead-letter queue and byte pass-through. */
  raw?: string | Uint8Array;
  /**
   * Set by the runtime where the schema changed nothing in the row but numeric strings into numbers: a bit per such
   * field (core/schema.ts FitTrace), so JSON output can write `raw` with them unquoted (formats/json.ts). 0: the schema
   * changed nothing.
   */
  kept?: number;
}

/** What a source hands to the runtime. */
export interface SourceBatch {
  /** With `decoded` unset, each value is a raw payload (string | Uint8Array) that the pipeline's format decodes. */
  records: SluiceRecord[];
  /** The values are rows already (generator, memory, SQL) or the source decoded them itself. */
  decoded?: boolean;
  /**
   * With `decoded`: each record's row is exactly what its `raw` decodes to with the pipeline's format (the source added
   * and changed nothing), so the runtime's JSON byte pass-through may write `raw` in the row's place.
   */
  rowsAreRaw?: boolean;
  /** Opaque position returned to `Source.commit` once this batch and every batch before it reached the sink. */
  ack?: unknown;
  /**
   * Sources that can resume from a position (`SourceContext.resume`): where this batch ends, as plain JSON data that
   * the source understands again after a restart (often the same object as `ack`). Exactly-once sinks store it.
   */
  position?: unknown;
  /** Per-partition order is kept; different partitions may be interleaved. */
  partition?: string;
}

/** A record the source itself could not decode (the runtime applies the `bad_data` policy). */
export interface BadRecord {
  raw: string | Uint8Array;
  error: Error;
  meta?: Record<string, unknown>;
}

export interface Counter {
  inc(n?: number): void;
}
export interface Gauge {
  set(v: number): void;
}

/** Per-connector metrics the runtime exposes (status line, logs, /metrics later). */
export interface ConnectorMetrics {
  counter(name: string, help?: string): Counter;
  gauge(name: string, help?: string): Gauge;
}

/** Positions and small state for one source or sink, persisted in the state store. */
export interface StateScope {
  get<T = unknown>(key: string): Promise<T | undefined>;
  set(key: string, value: unknown): Promise<void>;
  delete(key: string): Promise<void>;
  /** Every key under this scope. */
  entries(): Promise<Array<[string, unknown]>>;
}

export interface ConnectorContext {
  /** Pipeline name, unique within a process. */
  pipeline: string;
  /** `source`, `sink` or `dlq`. */
  role: 'source' | 'sink' | 'dlq';
  log: Logger;
  state: StateScope;
  metrics: ConnectorMetrics;
  /** Aborted when the pipeline stops. */
  signal: AbortSignal;
  /** Directory for connector files (durable buffers); created on demand. */
  dataDir: string;
}

export interface SourceContext extends ConnectorContext {
  /**
   * Hand a batch to the pipeline. Returns undefined when there is room for more, or a promise that resolves once
   * there is (backpressure): push sources pause their socket until it resolves, pull sources await it.
   */
  emit(batch: SourceBatch): Promise<void> | undefined;
  /** Report records the source could not decode itself. */
  bad(records: BadRecord[]): void;
  /** A fresh decoder for the pipeline's format (for sources that frame and decode, such as files with CSV headers). */
  decoder(): Decoder;
  /**
   * Set when the pipeline's sink is exactly-once and stored a position (see `Sink.exactlyOnce`): per partition, the
   * `position` of the last batch whose records are in the sink. A replayable source starts exactly after it for those partitions,
   * even where its own committed position differs (it may be behind: the sink commits first), and uses its own position
   * for partitions absent here. Sources that cannot seek ignore it.
   */
  resume?: SourcePosition;
}

/**
 * Where an exactly-once sink's output ends in the source: for each `SourceBatch.partition` ('' for batches without
 * one), the `position` of the last batch of that partition whose records were all written. It is plain JSON data,
 * stored by the sink in the same atomic step as the records. Empty for sources that give no positions.
 */
export type SourcePosition = Record<string, unknown>;

export interface Source {
  /** Read until exhausted (finite sources) or until ctx.signal aborts; resolve once no more batches will be emitted. */
  run(ctx: SourceContext): Promise<void>;
  /** Called in emit order with the ack tokens of batches whose records all reached the sink (or DLQ). */
  commit?(acks: unknown[]): Promise<void> | void;
  close?(): Promise<void>;
}

export interface SinkContext extends ConnectorContext {
  encoder: Encoder;
}

export interface Sink {
  /** Connect, create files, etc. Called once before the first write; keep `ctx` for the encoder, log and state. */
  open(ctx: SinkContext): Promise<void>;
  /**
   * Resolve only once the batch is durable or the remote system acknowledged it. Reject to trigger retry/failure.
   * An exactly-once sink also gets `position`: the source position that becomes committable once this batch is
   * written, to be stored atomically with it (all or nothing: a failed write must leave neither).
   *
   * How a rejection is handled:
   * - a `SluiceError` with `retriable: false` (or a `RecordError`) is permanent: not retried; the output's
   *   `retry.on_exhausted` policy (fail | dlq | pause) applies to the whole batch at once;
   * - any other error is retried with backoff up to `retry.max_attempts`, then `retry.on_exhausted` applies;
   * - a `RejectedRecordsError` (src/core/errors.ts) says "the records at these indexes of `records` are permanently
   *   bad, every other record was written": those follow the source's `bad_data` policy (dead-letter sink, drop or
   *   fail) and the rest are acknowledged. A sink that also saw a transient failure throws that instead.
   */
  write(records: SluiceRecord[], position?: SourcePosition): Promise<void>;
  /**
   * Exactly-once mode (read after `open`): the sink stores the source position together with each batch. The runtime
   * then writes a source batch never split over two writes, passes `position` to every write, and before the source
   * runs asks `position()` and hands the answer to the source as `SourceContext.resume`. Pipelines with routes or a
   * dead-letter sink cannot use it (the config compiler refuses them: other outputs commit separately).
   */
  readonly exactlyOnce?: boolean;
  /** Exactly-once sinks: the position stored with the last successful write; undefined before the first one. */
  position?(): Promise<SourcePosition | undefined>;
  /** Flush and release; called once after the last write. */
  close?(): Promise<void>;
}

// ---- formats -------------------------------------------------------------------------------------------------

export interface Decoder {
  /**
   * Decode one payload into zero or more rows appended to `out`. A payload may hold several rows (a JSON array,
   * newline-delimited JSON, a chunk of CSV lines). A row that cannot be decoded is reported through `onError` with its
   * own raw text and the rest go on; `decode` throws only when a `fail` decision is needed for the whole payload.
   */
  decode(payload: string | Uint8Array, out: unknown[], onError: (err: Error, raw: string | Uint8Array) => void): void;
  /** Formats that need the record key too (Debezium upserts turn a keyed tombstone into a delete) implement this. */
  decodeWithKey?(
    payload: string | Uint8Array,
    key: string | Uint8Array | null | undefined,
    out: unknown[],
    onError: (err: Error, raw: string | Uint8Array) => void,
  ): void;
}

export interface Encoder {
  /** One row as one message (Kafka value, MQTT payload, WebSocket frame). */
  encode(value: unknown): string | Uint8Array;
  /**
   * Rows as a piece of a byte stream (a file, an NDJSON body). `first` is true for the first piece of a new
   * file or stream, for formats with a header (CSV).
   */
  encodeStream(values: unknown[], first: boolean): string | Uint8Array;
  /**
   * `encodeStream` for whole records: set when the encoder can use more than the rows (the runtime's JSON byte
   * pass-through writes a record's original `raw` text instead of encoding its row again). Stream sinks call it
   * instead of `encodeStream` when it is there.
   */
  encodeRecords?(records: SluiceRecord[], first: boolean): string | Uint8Array;
  /**
   * `encode` for a whole record, set for the same reason: the JSON byte pass-through sends the record's original
   * `raw` message (text or bytes, the same JSON) instead of encoding its row again. Message sinks call it through
   * `encodeRecord()` (src/core/encode.ts).
   */
  encodeRecord?(record: SluiceRecord): string | Uint8Array;
  /** File extension without dot (jsonl, csv, txt, bin). */
  readonly extension: string;
  /** Fetch or register what encoding needs (a schema registry id); awaited once before the sink opens. */
  prepare?(): Promise<void>;
  /**
   * Set when the encoding depends on the destination topic (a registry subject `<topic>-value` that no fixed topic
   * names): the prepared encoder for one topic. Sinks with templated topics call it per resolved topic and cache it.
   */
  forTopic?(topic: string): Promise<Encoder>;
  /**
   * Each `encodeStream` result is a complete file (Parquet has a footer): file sinks never append to such a file, and
   * keep it under a temporary name until it is complete (one file per batch, unless the encoder has `fileWriter`).
   */
  readonly wholeFile?: boolean;
  /**
   * Whole-file formats that can write one file across many batches (Parquet row groups): a writer per file. The file
   * sink appends each piece to a temporary file and the footer on rotation, then renames it.
   */
  fileWriter?(): FileWriter;
  /** The footer that completes a file whose pieces the journal lines (`FileWriter.checkpoint`) describe (after a crash). */
  finishFile?(journal: string[]): Uint8Array;
}

/** One file of a whole-file format written across batches; see `Encoder.fileWriter`. */
export interface FileWriter {
  /** Whether these rows fit the columns the file already has; when they do not, the sink starts a new file. */
  accepts(values: unknown[]): boolean;
  /** The next piece of the file for these rows (the header first), to append. Throws before changing anything. */
  write(values: unknown[]): Uint8Array;
  /** One JSON line describing what the last `write` added, so a crashed file can still be finished. */
  checkpoint(): string;
  /** The bytes that complete the file (the footer). */
  finish(): Uint8Array;
}

export interface Format {
  readonly name: string;
  decoder(): Decoder;
  encoder(): Encoder;
  /**
   * Formats that need remote data to decode (writer schemas from a registry) fetch it here; the runtime awaits the
   * returned promise before decoding the batch, so `decode` itself stays synchronous.
   */
  prepare?(payloads: ReadonlyArray<string | Uint8Array>): Promise<void> | undefined;
}

// ---- schemas -------------------------------------------------------------------------------------------------

export type FieldType =
  | 'string'
  | 'int32'
  | 'int64'
  | 'float32'
  | 'float64'
  | 'decimal'
  | 'boolean'
  | 'timestamp'
  | 'date'
  | 'json'
  | 'bytes'
  | 'array'
  | 'object';

export interface FieldSpec {
  name: string;
  type: FieldType;
  nullable?: boolean;
  default?: unknown;
  /** timestamp: `iso` (default), `epoch`, or a pattern such as `YYYY-MM-DD HH:mm:ss`. */
  format?: string;
  /** timestamp given as an epoch number: its unit. */
  unit?: 's' | 'ms' | 'us' | 'ns';
  /** decimal */
  precision?: number;
  scale?: number;
  /** array element type */
  items?: Omit<FieldSpec, 'name'>;
  /** object fields */
  fields?: FieldSpec[];
  /** Read from a connector metadata field (`_offset`, `_key`, ...) instead of the payload. */
  metadata?: string;
}

export interface SchemaSpec {
  fields: FieldSpec[];
  primary_key?: string[];
  /** What to do with payload fields the schema does not list. */
  unknown_fields?: 'keep' | 'drop' | 'error';
}

/** What to do with a record that cannot be decoded or does not fit the schema. */
export type BadDataPolicy = 'fail' | 'drop' | 'dlq';
