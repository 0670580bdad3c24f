// One MQTT client connection, shared by every source and sink that names the same connection profile (eKuiper's
// connectionSelector), with three things mqtt.js does not do by itself:
//
// - Acknowledgement after the sink. mqtt.js sends PUBACK (QoS 1) / PUBREC (QoS 2) as soon as a message was handled,
//   and its `customHandleAcks` hook holds the client's whole packet pump until the ack is given (one message in
//   flight) and is ignored below MQTT 5. Instead, messages are taken from `packetreceive` and the client's outgoing
//   PUBACK/PUBREC for them is held back until every source that received the message committed it. Acks that belong
//   to an earlier network connection are never sent: the broker resends those messages on the new one (persistent
//   session) with packet ids that may since have been reused.
// - Backpressure. `handleMessage` (mqtt.js's documented backpressure hook) holds the packet pump while any subscriber
//   waits for the pipeline; the socket is then no longer read and TCP makes the broker wait. Pings are still sent so
//   that neither side declares the connection dead while it is paused on purpose.
// - Dispatch. Several sources on one client each get the messages that match their topic filters.

import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient, type Packet } from 'mqtt';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { ConnectionOptions } from './options.js';

/** One received QoS 1/2 message whose PUBACK/PUBREC waits for the sink. */
export interface AckEntry {
  epoch: number;
  id: number;
  cmd: 'puback' | 'pubrec';
  /** Subscribers that have not committed it yet. */
  remaining: number;
  /** mqtt.js tried to send the ack (and was held back); until then it must not be sent by us either. */
  intercepted: boolean;
}

export interface Subscriber {
  /** Matches a topic against this subscriber's filters. */
  matches(topic: string): boolean;
  deliver(packet: IPublishPacket, ack: AckEntry | undefined): void;
  /** The connection failed for good (refused credentials, a broker that rejects the client). */
  fail(err: Error): void;
}

/** Topic filter matching per MQTT: `+` one level, `#` the rest, wildcards at the start never match `$` topics. */
export function compileFilter(filter: string): (topic: string) => boolean {
  const f = filter.startsWith('$share/') ? filter.split('/').slice(2).join('/') : filter;
  if (!f.includes('+') && !f.includes('#')) return (t) => t === f;
  const levels = f.split('/');
  const wildFirst = levels[0] === '+' || levels[0] === '#';
  return (topic) => {
    if (wildFirst && topic.charCodeAt(0) === 36 /* $ */) return false;
    let start = 0;
    for (let i = 0; i < levels.length; i++) {
      const l = levels[i]!;
      if (l === '#') return true;
      if (start > topic.length) return false;
      let end = topic.indexOf('/', start);
      if (end < 0) end = topic.length;
      if (l !== '+' && (end - start !== l.length || !topic.startsWith(l, start))) return false;
      start = end + 1;
    }
    return start === topic.length + 1;
  };
}

function schemeOf(url: string): IClientOptions['protocol'] {
  const s = url.slice(0, url.indexOf(':')).toLowerCase();
  if (s === 'tcp' || s === 'mqtt') return 'mqtt';
  if (s === 'ssl' || s === 'tls' || s === 'mqtts') return 'mqtts';
  return s as IClientOptions['protocol'];
}

/** `tcp://user:pass@host:1883/x` -> `tcp://host:1883`, for logs. */
export function displayServer(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname && u.pathname !== '/' ? u.pathname : ''}`;
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//');
  }
}

function readPem(path: string, option: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new SluiceError('CONFIG', `${option} '${path}' cannot be read: ${errorMessage(e)}`);
  }
}

const V3_REFUSALS: Record<number, string> = {
  1: 'unacceptable protocol version (try protocol_version: 3.1.1)',
  2: 'client identifier rejected',
  3: 'server unavailable',
  4: 'bad user name or password',
  5: 'not authorized',
};

/** mqtt.js client options for the connection options; `extra` tunes a source's receive window. */
export function clientOptions(o: ConnectionOptions, extra: { receiveMaximum?: number; reconnect?: boolean } = {}): { url: string; options: IClientOptions } {
  const [first, ...rest] = o.server;
  const url = first!.replace(/^[a-z]+(?=:)/i, (s) => schemeOf(`${s}:`)!);
  const v = o.protocol_version;
  const options: IClientOptions = {
    protocolVersion: v === '5' ? 5 : v === '3.1.1' ? 4 : 3,
    protocolId: v === '3.1' ? 'MQIsdp' : 'MQTT',
    clientId: o.client_id ?? `sluice_${Math.random().toString(16).slice(2, 10)}`,
    clean: o.clean_session,
    keepalive: Math.max(1, Math.round(o.keepalive / 1000)),
    connectTimeout: o.connect_timeout,
    reconnectPeriod: extra.reconnect === false ? 0 : Math.max(1, o.reconnect_interval),
    username: o.username,
    password: o.password,
    rejectUnauthorized: !o.insecure_skip_verify,
    resubscribe: true,
    queueQoSZero: true,
    // Otherwise mqtt-packet builds a cache of 65,536 two-byte Buffers (one per packet id) on the first write: about
    // 6 MB of live heap for the process's lifetime, which V8's heap growth turns into 15-20 MB more peak RSS. Without
    // it, a packet id costs one 2-byte allocation per PUBLISH/PUBACK.
    writeCache: false,
  };
  if (o.root_ca_path) options.ca = readPem(o.root_ca_path, 'root_ca_path');
  if (o.certification_path) options.cert = readPem(o.certification_path, 'certification_path');
  if (o.private_key_path) options.key = readPem(o.private_key_path, 'private_key_path');
  if (v === '5') {
    options.properties = {};
    if (!o.clean_session) options.properties.sessionExpiryInterval = Math.min(0xffffffff, Math.round(o.session_expiry / 1000));
    if (extra.receiveMaximum) options.properties.receiveMaximum = extra.receiveMaximum;
  }
  if (rest.length) {
    options.servers = o.server.map((s) => {
      const u = new URL(s);
      return { host: u.hostname, port: Number(u.port) || undefined, protocol: schemeOf(s) } as NonNullable<IClientOptions['servers']>[number];
    });
  }
  return { url, options };
}

/** Whether a CONNACK refusal will not go away by retrying. */
function refusal(err: Error & { code?: unknown }): string | undefined {
  const code = typeof err.code === 'number' ? err.code : undefined;
  if (code === undefined || !/Connection refused/i.test(err.message)) return undefined;
  return V3_REFUSALS[code] ?? err.message.replace(/^Connection refused:\s*/i, '').toLowerCase();
}

interface InternalClient {
  _sendPacket(packet: Packet, cb?: (err?: Error) => void, cbStorePut?: () => void, noStore?: boolean): void;
  handleMessage(packet: Packet, cb: (err?: Error) => void): void;
}

let opened = 0;
/** Client connections opened by this module so far (tests assert on sharing with it). */
export function clientsOpened(): number {
  return opened;
}

export class MqttConnection {
  readonly client: MqttClient;
  readonly shown: string;
  readonly clientId: string;
  private epoch = 0;
  private readonly held = new Map<number, AckEntry>();
  private readonly subscribers = new Set<Subscriber>();
  private readonly filterRefs = new Map<string, number>();
  private readonly waiting = new Set<object>();
  private pumpCb?: (err?: Error) => void;
  private pingTimer?: NodeJS.Timeout;
  private readonly send: InternalClient['_sendPacket'];
  private lastErrorLog = 0;
  private connectedOnce = false;
  fatal?: Error;
  refs = 0;
  /** Reconnections after the first connection (metrics, tests). */
  reconnects = 0;
  /** No reconnects (test()): the first failure is final. */
  private readonly once: boolean;

  constructor(
    readonly key: string,
    private readonly o: ConnectionOptions,
    private readonly log: Logger,
    extra: { receiveMaximum?: number; reconnect?: boolean } = {},
  ) {
    const { url, options } = clientOptions(o, extra);
    this.once = extra.reconnect === false;
    this.clientId = options.clientId!;
    this.shown = o.server.map(displayServer).join(', ');
    this.client = mqtt.connect(url, options);
    opened++;
    const internal = this.client as unknown as InternalClient;
    const orig = internal._sendPacket.bind(this.client);
    this.send = orig;
    internal._sendPacket = (packet, cb, cbStorePut, noStore) => {
      if (packet.cmd === 'puback' || packet.cmd === 'pubrec') {
        const e = this.held.get(packet.messageId!);
        if (e && e.cmd === packet.cmd && !e.intercepted && !(packet as { reasonCode?: number }).reasonCode) {
          e.intercepted = true;
          if (e.remaining > 0) {
            // Let the pump go on to the next packet; the ack itself goes out from ack().
            cb?.();
            return;
          }
          this.held.delete(e.id);
        }
      }
      orig(packet, cb, cbStorePut, noStore);
    };
    internal.handleMessage = (_packet, cb) => {
      if (this.waiting.size === 0) cb();
      else this.pumpCb = cb;
    };
    this.client.on('packetreceive', this.onPacket);
    this.client.on('connect', (connack) => {
      // Packet ids restart with the network connection; acks still held for the old one must never be sent.
      this.epoch++;
      this.held.clear();
      const resumed = !!connack.sessionPresent;
      if (this.connectedOnce) this.reconnects++;
      if (this.connectedOnce) this.log.info({ server: this.shown, client_id: this.clientId, session_present: resumed }, 'mqtt: reconnected');
      else this.log.info({ server: this.shown, client_id: this.clientId, session_present: resumed }, 'mqtt: connected');
      this.connectedOnce = true;
    });
    this.client.on('close', () => {
      if (this.connectedOnce && !this.client.disconnecting) this.log.warn({ server: this.shown, client_id: this.clientId }, 'mqtt: connection lost; reconnecting');
    });
    this.client.on('error', (err: Error & { code?: unknown }) => {
      const why = refusal(err);
      if (why) {
        const authy = /user name|password|authori/i.test(why);
        const f = new SluiceError(authy ? 'AUTH' : 'CONNECT', `mqtt broker ${this.shown} refused client '${this.clientId}': ${why}`);
        this.failAll(f);
        return;
      }
      const now = Date.now();
      if (now - this.lastErrorLog > 5000) {
        this.lastErrorLog = now;
        this.log.warn({ server: this.shown, client_id: this.clientId, err: errorMessage(err) }, `mqtt: ${errorMessage(err)}; retrying every ${this.o.reconnect_interval} ms`);
      }
    });
  }

  private failAll(err: Error) {
    if (this.fatal) return;
    this.fatal = err;
    this.log.error({ server: this.shown, err: err.message }, 'mqtt: connection failed for good');
    for (const s of this.subscribers) s.fail(err);
    this.client.end(true);
  }

  /** Resolves once connected; rejects on a refusal, or after `timeoutMs` naming the last error. */
  whenConnected(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.client.connected) return Promise.resolve();
    if (this.fatal) return Promise.reject(this.fatal);
    return new Promise((resolve, reject) => {
      let last: Error | undefined;
      const done = (e?: Error) => {
        clearTimeout(timer);
        this.client.off('connect', onConnect);
        this.client.off('error', onError);
        this.client.off('close', onClose);
        signal?.removeEventListener('abort', onAbort);
        if (e) reject(e);
        else resolve();
      };
      const onConnect = () => done();
      const onError = (e: Error) => {
        last = e;
        if (this.fatal) done(this.fatal);
      };
      const onClose = () => {
        if (this.fatal) done(this.fatal);
        else if (this.once) done(new SluiceError('CONNECT', `mqtt broker ${this.shown} not reachable: ${last ? errorMessage(last) : 'the connection closed'}`, { retriable: true }));
      };
      const onAbort = () => done(new SluiceError('CONNECT', 'stopped before the connection was up'));
      const timer = setTimeout(
        () => done(new SluiceError('CONNECT', `mqtt broker ${this.shown} not reachable within ${timeoutMs} ms${last ? `: ${errorMessage(last)}` : ''}`, { retriable: true })),
        timeoutMs,
      );
      this.client.on('connect', onConnect);
      this.client.on('error', onError);
      this.client.on('close', onClose);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** How many QoS 1/2 publishes the broker accepts unacknowledged (MQTT 5 Receive Maximum; Mosquitto says 20). */
  get brokerReceiveMaximum(): number {
    const p = (this.client as unknown as { connackPacket?: { properties?: { receiveMaximum?: number } } }).connackPacket;
    return p?.properties?.receiveMaximum ?? 65535;
  }

  // ---- receiving ----

  private readonly onPacket = (packet: Packet) => {
    if (packet.cmd !== 'publish') return;
    const p = packet as IPublishPacket;
    const topic = p.topic;
    let n = 0;
    for (const s of this.subscribers) if (s.matches(topic)) n++;
    let entry: AckEntry | undefined;
    if (p.qos > 0 && p.messageId !== undefined) {
      if (n === 0 && this.o.clean_session) return; // nobody here wants it and there is no session to keep it for
      entry = { epoch: this.epoch, id: p.messageId, cmd: p.qos === 1 ? 'puback' : 'pubrec', remaining: n || 1, intercepted: false };
      // A message for a stopped source in a persistent session stays unacknowledged: the broker resends it.
      this.held.set(p.messageId, entry);
    }
    if (n === 0) return;
    for (const s of this.subscribers) if (s.matches(topic)) s.deliver(p, entry);
  };

  /** A subscriber committed these messages; the acks that are complete go out now. */
  ack(entries: readonly AckEntry[]): void {
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (--e.remaining > 0 || e.epoch !== this.epoch) continue;
      if (!e.intercepted) continue; // mqtt.js has not reached it yet; its own send goes through then
      if (this.held.get(e.id) !== e) continue;
      this.held.delete(e.id);
      if (this.client.connected) this.send({ cmd: e.cmd, messageId: e.id } as Packet);
    }
  }

  /** Pause (or resume) reading from the broker on behalf of `who`. */
  setWaiting(who: object, waiting: boolean): void {
    if (waiting) {
      this.waiting.add(who);
      if (!this.pingTimer) {
        // While the pump is held, PINGRESPs are not read: keep the broker's keep-alive fed and ours from firing.
        const every = Math.max(500, Math.round(this.o.keepalive / 2));
        this.pingTimer = setInterval(() => {
          if (!this.client.connected) return;
          this.client.sendPing();
          this.client.reschedulePing(true);
        }, every);
        this.pingTimer.unref();
      }
      return;
    }
    this.waiting.delete(who);
    if (this.waiting.size) return;
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = undefined;
    this.client.reschedulePing(true);
    const cb = this.pumpCb;
    this.pumpCb = undefined;
    cb?.();
  }

  // ---- subscriptions ----

  /** Registers the subscriber and subscribes its filters; resolves on SUBACK, rejects naming a refused filter. */
  async subscribe(sub: Subscriber, filters: string[], qos: 0 | 1 | 2, signal: AbortSignal): Promise<void> {
    this.subscribers.add(sub);
    if (this.fatal) throw this.fatal;
    const fresh = filters.filter((f) => !this.filterRefs.has(f));
    for (const f of filters) this.filterRefs.set(f, (this.filterRefs.get(f) ?? 0) + 1);
    if (!fresh.length) return;
    const granted = await new Promise<Array<{ topic: string; qos: number }>>((resolve, reject) => {
      const onAbort = () => resolve([]);
      signal.addEventListener('abort', onAbort, { once: true });
      this.client.subscribe(fresh, { qos }, (err, g) => {
        signal.removeEventListener('abort', onAbort);
        if (err && this.fatal) reject(this.fatal);
        else if (err) reject(new SluiceError('CONNECT', `mqtt broker ${this.shown}: subscribing to ${fresh.map((f) => `'${f}'`).join(', ')} failed: ${errorMessage(err)}`, { cause: err }));
        else resolve(g ?? []);
      });
    });
    const refused = granted.filter((g) => g.qos >= 128);
    if (refused.length) {
      throw new SluiceError('CONNECT', `mqtt broker ${this.shown} refused the subscription to ${refused.map((g) => `'${g.topic}'`).join(', ')} (reason code ${refused[0]!.qos}; not authorized, or shared subscriptions unsupported)`);
    }
    const lower = granted.filter((g) => g.qos < qos);
    if (lower.length) this.log.warn({ topics: lower.map((g) => g.topic), granted: lower[0]!.qos, requested: qos }, 'mqtt: the broker granted a lower QoS than requested');
  }

  /** Removes the subscriber. Filters nobody else uses are unsubscribed only for a clean session: a persistent
   *  session keeps them so the broker queues messages until the pipeline is back. */
  async unsubscribe(sub: Subscriber, filters: string[]): Promise<void> {
    this.subscribers.delete(sub);
    this.setWaiting(sub, false);
    const gone: string[] = [];
    for (const f of filters) {
      const n = (this.filterRefs.get(f) ?? 1) - 1;
      if (n <= 0) {
        this.filterRefs.delete(f);
        gone.push(f);
      } else this.filterRefs.set(f, n);
    }
    if (!gone.length || !this.o.clean_session || !this.client.connected || this.refs <= 1) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 2000);
      this.client.unsubscribe(gone, () => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  async end(): Promise<void> {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = undefined;
    const cb = this.pumpCb;
    this.pumpCb = undefined;
    cb?.();
    await new Promise<void>((resolve) => {
      // A graceful DISCONNECT (the session, if persistent, stays); a broker that does not answer must not hold a stop.
      const t = setTimeout(() => this.client.end(true, {}, () => resolve()), 2000);
      this.client.end(false, {}, () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}

// ---- sharing ----

const shared = new Map<string, MqttConnection>();

/** The connection options that make two endpoints' clients interchangeable. */
function identity(o: ConnectionOptions): string {
  const { server, client_id, clean_session, session_expiry, protocol_version, username, password, certification_path, private_key_path, root_ca_path, insecure_skip_verify, keepalive } = o;
  return JSON.stringify([server, client_id, clean_session, session_expiry, protocol_version, username, password, certification_path, private_key_path, root_ca_path, insecure_skip_verify, keepalive]);
}

/**
 * A client for an endpoint. Endpoints naming the same profile (with the same connection options) share one; others
 * get their own. Release it with `releaseConnection`.
 */
export function acquireConnection(o: ConnectionOptions, profile: string | undefined, log: Logger, extra: { receiveMaximum?: number } = {}): MqttConnection {
  if (profile === undefined) {
    const c = new MqttConnection('', o, log, extra);
    c.refs = 1;
    return c;
  }
  const key = `${profile}\u0000${identity(o)}`;
  let c = shared.get(key);
  if (!c || c.fatal) {
    c = new MqttConnection(key, o, log, extra);
    shared.set(key, c);
  }
  c.refs++;
  return c;
}

export async function releaseConnection(c: MqttConnection): Promise<void> {
  if (--c.refs > 0) return;
  if (c.key && shared.get(c.key) === c) shared.delete(c.key);
  await c.end();
}
