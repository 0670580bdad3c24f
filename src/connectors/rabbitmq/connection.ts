// Turning options into a rabbitmq-client Connection, describing the broker without secrets, classifying AMQP errors.

import { readFileSync } from 'node:fs';
import { Connection, type ConnectionOptions } from 'rabbitmq-client';
import type { Channel } from 'rabbitmq-client';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { RabbitConnectionOptions } from './options.js';

export interface Endpoint {
  hostname: string;
  port: number;
  username: string;
  password: string;
  vhost: string;
  tls: boolean;
}

const DEFAULT_URL = 'amqp://guest:guest@127.0.0.1:5672';

/** Host, port, credentials and vhost from the URL, each overridden by its own option. */
export function endpointOf(o: RabbitConnectionOptions): Endpoint {
  const u = new URL(o.url ?? DEFAULT_URL);
  const tls = u.protocol === 'amqps:' || o.tls?.enabled === true;
  const path = u.pathname.replace(/^\//, '');
  return {
    hostname: o.host ?? (u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1'),
    port: o.port ?? (u.port ? Number(u.port) : tls ? 5671 : 5672),
    username: o.username ?? (u.username ? decodeURIComponent(u.username) : 'guest'),
    password: o.password ?? (u.password ? decodeURIComponent(u.password) : u.username ? '' : 'guest'),
    vhost: o.vhost ?? (path ? decodeURIComponent(path) : '/'),
    tls,
  };
}

/** `amqp://user@host:port/vhost`: what logs and errors show; the password never appears. */
export function describeEndpoint(e: Endpoint): string {
  const host = e.hostname.includes(':') ? `[${e.hostname}]` : e.hostname;
  return `${e.tls ? 'amqps' : 'amqp'}://${encodeURIComponent(e.username)}@${host}:${e.port}/${encodeURIComponent(e.vhost)}`;
}

/**
 * The frame size a consumer asks for. A publisher's larger frames cut the framing work for payloads above 8 KiB, but a
 * consumer connection negotiated at 128 KiB made the broker deliver small messages slower (2026-12-06, 100k ~150-byte
 * messages, alternating pairs on a settled queue: 30.3k and 29.5k msg/s at 4.0-4.2 CPU s with 128 KiB, 35.3k and
 * 34.5k at 3.4-3.5 s with the client's 8 KiB; the bare client loop likewise spent 2.25 broker CPU s against 1.85).
 */
export const CONSUMER_FRAME_MAX = 8192;

export function clientOptions(o: RabbitConnectionOptions, e: Endpoint = endpointOf(o), frameMax = 131072): ConnectionOptions {
  let tls: ConnectionOptions['tls'] = false;
  if (e.tls) {
    const t = o.tls;
    tls = {
      servername: e.hostname,
      rejectUnauthorized: !t?.skip_verify,
      ca: t?.ca_file ? readFileSync(t.ca_file) : undefined,
      cert: t?.cert_file ? readFileSync(t.cert_file) : undefined,
      key: t?.key_file ? readFileSync(t.key_file) : undefined,
    };
  }
  return {
    hostname: e.hostname,
    port: e.port,
    username: e.username,
    password: e.password,
    vhost: e.vhost,
    tls,
    heartbeat: Math.max(0, Math.round(o.heartbeat / 1000)),
    connectionTimeout: o.connection_timeout,
    retryLow: 500,
    retryHigh: o.reconnect_max_backoff,
    connectionName: o.connection_name ?? 'sluice',
    // Larger frames cut the per-message framing work for payloads above the 8 KiB default (publishers; see CONSUMER_FRAME_MAX).
    frameMax,
    noDelay: true,
  };
}

export function openConnection(o: RabbitConnectionOptions, frameMax?: number): { conn: Connection; endpoint: Endpoint; where: string } {
  const endpoint = endpointOf(o);
  const conn = new Connection(clientOptions(o, endpoint, frameMax));
  return { conn, endpoint, where: describeEndpoint(endpoint) };
}

/** AMQP reply codes that retrying with the same settings cannot fix. */
const PERMANENT = new Set(['ACCESS_REFUSED', 'NOT_ALLOWED', 'NOT_FOUND', 'PRECONDITION_FAILED', 'RESOURCE_LOCKED', 'COMMAND_INVALID', 'NOT_IMPLEMENTED', 'VERSION_MISMATCH']);

export function errorCode(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

export function isPermanent(e: unknown): boolean {
  const c = errorCode(e);
  return c !== undefined && PERMANENT.has(c);
}

/** A SluiceError saying what was being done, where, and why; with a hint for the usual causes. */
export function amqpError(what: string, where: string, e: unknown): SluiceError {
  const code = errorCode(e);
  let hint: string | undefined;
  if (code === 'ACCESS_REFUSED') hint = 'check username/password (or the URL\'s credentials) and the user\'s permissions on the vhost';
  else if (code === 'NOT_ALLOWED') hint = 'check that the vhost exists and the user may access it';
  else if (code === 'PRECONDITION_FAILED') hint = 'an existing queue or exchange was declared with other settings; match them, or use passive: true';
  else if (code === 'ECONNREFUSED' || code === 'CONNECTION_TIMEOUT' || code === 'TIMEOUT') hint = 'is RabbitMQ running and reachable at this address?';
  const msg = `${what} on ${where} failed: ${errorMessage(e)}${hint ? ` (${hint})` : ''}`;
  return new SluiceError(code === 'ACCESS_REFUSED' ? 'AUTH' : 'CONNECT', msg, { cause: e, hint, retriable: !isPermanent(e) });
}

/**
 * rabbitmq-client parses `application/json` bodies and turns `text/plain` ones into strings before a consumer sees
 * them. That loses the raw bytes the pipeline's format, bad_data and the dead-letter sink need, and JSON.parse loses
 * int64 precision. Hiding the content type from the channel's own decoding keeps the body a Buffer; the real content
 * type is kept under `sluiceContentType`. Guarded, so a client version without this hook falls back to its decoding.
 */
export function keepRawBodies(ch: Channel): void {
  const c = ch as unknown as { _onHeader?: (f: { fields?: Record<string, unknown> }) => void };
  const original = c._onHeader;
  if (typeof original !== 'function') return;
  c._onHeader = function (frame) {
    const f = frame.fields;
    if (f && f.contentType !== undefined && !f.contentEncoding) {
      f.sluiceContentType = f.contentType;
      f.contentType = undefined;
    }
    original.call(this, frame);
  };
}

/** The basic.deliver method's fields, as the client's codec decodes them (always these five, in this order). */
export interface DeliverFields {
  consumerTag: string;
  deliveryTag: number;
  redelivered: boolean;
  exchange: string;
  routingKey: string;
}

/** AMQP 0-9-1 basic.deliver: class 60, method 60 (a protocol constant, not the client's). */
const BASIC_DELIVER = (60 << 16) | 60;

/**
 * Hands every complete basic.deliver of a live consumer on `ch` to `deliver` as the client decoded its parts (method
 * fields, content-header properties, body bytes), synchronously as its last frame is read. Returns false, changing
 * nothing, when the client's internals are not the ones this relies on; the consumer's handler then gets them.
 *
 * Why: for each delivery the client spreads the method fields, the properties and the body into one new object of
 * ~20 properties (a dictionary-mode object of ~1.2 KB) and queues it in a setImmediate of its own. With a prefetch
 * window of 2000, a whole socket read's worth of those wait in the immediate queue, survive a scavenge and get promoted:
 * in rabbitmq->blackhole (100k ~150-byte messages) that object was 125-136 MB of the ~290 MB of sampled allocations that
 * outlived a scavenge, in Sluice and in the bare client alike. The parts themselves are small objects of stable shape.
 * Returning other frames, basic.return and basic.get-ok to the client keeps publisher and RPC behaviour unchanged.
 */
export function fastDeliveries(ch: Channel, deliver: (fields: DeliverFields, props: Record<string, unknown>, body: Buffer) => void): boolean {
  interface Incoming {
    methodFrame?: { methodId?: number; params?: DeliverFields };
    headerFrame?: { fields?: Record<string, unknown> };
    chunks?: Buffer[];
    received: number;
  }
  const c = ch as unknown as { _onBody?: (f?: { payload: Buffer }) => void; _state?: { incoming?: Incoming; consumers?: unknown } };
  const original = c._onBody;
  const state = c._state;
  if (typeof original !== 'function' || state === null || typeof state !== 'object' || !(state.consumers instanceof Map)) return false;
  const consumers = state.consumers as Map<string, unknown>;
  c._onBody = function (frame) {
    const inc = state.incoming;
    const method = inc?.methodFrame;
    const fields = inc?.headerFrame?.fields;
    const chunks = inc?.chunks;
    if (method?.methodId !== BASIC_DELIVER || method.params === undefined || fields === undefined || chunks === undefined) return original.call(this, frame);
    if (frame) chunks[inc!.received++] = frame.payload;
    if (inc!.received < chunks.length) return;
    state.incoming = undefined;
    // A copy (from Node's buffer pool) even for one frame, as the client makes: the frame is a slice of the socket's read
    // buffer, which it would keep alive for as long as the record lives.
    const body = Buffer.concat(chunks);
    // The client drops deliveries of a consumer it no longer knows (cancelled); so does this.
    if (consumers.has(method.params.consumerTag)) deliver(method.params, fields, body);
  };
  return true;
}

/** Resolves after `ms`, or at once when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
