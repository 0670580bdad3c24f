// Acknowledged JetStream publishes for a whole batch at once.
//
// `js.publish` is a request per message: nats.js builds a request object, a timer, a Promise.race and up to three
// Error objects with captured stack traces (async-trace context, timeout, and the "cancelled" error it constructs even
// after a success). Profiles of the nats->jetstream benchmark put about a third of the CPU there. A PubAck is just a
// reply message, so this publisher does what the request does without the per-message objects: one wildcard
// subscription on a private inbox, each message published with the reply subject `<inbox>.<batch>.<index>`, and one
// timer per batch. The stream sees exactly the same PUB (subject, headers, payload, reply subject) as with js.publish.

import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/transport-node';

/** What the stream answered for one message: stored (possibly as a duplicate), or why not. */
export type AckResult = { ok: true; duplicate: boolean } | { ok: false; error: string };

export interface OutMessage {
  subject: string;
  payload: string | Uint8Array;
  headers?: MsgHdrs;
}

interface Pending {
  results: Array<AckResult | undefined>;
  remaining: number;
  resolve: (r: Array<AckResult | undefined>) => void;
  timer: NodeJS.Timeout;
}

const DUPLICATE = /"duplicate"\s*:\s*true/;

/** One PubAck parsed from its JSON text; the common success shapes are recognised without JSON.parse. */
export function parsePubAck(text: string): AckResult {
  if (!text.includes('"error"')) {
    if (!text.includes('"stream"')) return { ok: false, error: `invalid acknowledgement from JetStream: ${text.slice(0, 200)}` };
    // The server writes `{"stream":"s", "seq":3,"duplicate": true}` (spacing is not part of the contract).
    return { ok: true, duplicate: DUPLICATE.test(text) };
  }
  try {
    const v = JSON.parse(text) as { error?: { code?: number; err_code?: number; description?: string } };
    const e = v.error ?? {};
    return { ok: false, error: `${e.description ?? 'error'}${e.code !== undefined ? ` (${e.code}${e.err_code !== undefined ? `/${e.err_code}` : ''})` : ''}` };
  } catch {
    return { ok: false, error: `invalid acknowledgement from JetStream: ${text.slice(0, 200)}` };
  }
}

export class AckPublisher {
  private readonly inbox: string;
  private readonly sub: Subscription;
  private readonly pending = new Map<number, Pending>();
  private nextBatch = 0;

  constructor(private readonly nc: NatsConnection) {
    const prefix = (nc as unknown as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
    this.inbox = createInbox(prefix);
    // The SUB goes out before any PUB on the same socket, so the server knows the inbox before the first reply.
    this.sub = nc.subscribe(`${this.inbox}.*.*`, { callback: (err, m) => (err ? undefined : this.onReply(m)) });
  }

  /**
   * Publishes every message and resolves once each was answered, or after `timeoutMs` with `undefined` for those that
   * were not. Never rejects: a publish the client refuses synchronously becomes a failed result.
   */
  publish(msgs: OutMessage[], timeoutMs: number): Promise<Array<AckResult | undefined>> {
    const id = this.nextBatch++ % Number.MAX_SAFE_INTEGER;
    const results = new Array<AckResult | undefined>(msgs.length);
    let refused = 0;
    const base = `${this.inbox}.${id}.`;
    return new Promise((resolve) => {
      const p: Pending = { results, remaining: msgs.length, resolve, timer: undefined as unknown as NodeJS.Timeout };
      this.pending.set(id, p);
      for (let i = 0; i < msgs.length; i++) {
        const m = msgs[i]!;
        try {
          this.nc.publish(m.subject, m.payload, m.headers ? { reply: base + i, headers: m.headers } : { reply: base + i });
        } catch (e) {
          results[i] = { ok: false, error: e instanceof Error ? e.message : String(e) };
          refused++;
        }
      }
      p.remaining -= refused;
      if (p.remaining === 0) return this.finish(id, p);
      p.timer = setTimeout(() => this.finish(id, p), timeoutMs);
    });
  }

  /** Ends every batch still waiting (connection closed for good): their unanswered messages stay `undefined`. */
  failAll(): void {
    for (const [id, p] of this.pending) this.finish(id, p);
  }

  close(): void {
    this.failAll();
    try {
      this.sub.unsubscribe();
    } catch {
      // the connection is closed already
    }
  }

  private finish(id: number, p: Pending): void {
    clearTimeout(p.timer);
    this.pending.delete(id);
    p.resolve(p.results);
  }

  private onReply(m: Msg): void {
    const s = m.subject;
    const dot = s.lastIndexOf('.');
    const id = Number(s.slice(this.inbox.length + 1, dot));
    const p = this.pending.get(id);
    if (!p) return; // a late answer for a batch that timed out
    const i = Number(s.slice(dot + 1));
    if (!(i >= 0 && i < p.results.length) || p.results[i] !== undefined) return;
    // No stream listens on the subject: the server answers with an empty 503 status message.
    if (m.data.length === 0 && m.headers?.code === 503) p.results[i] = { ok: false, error: 'no responders (503)' };
    else p.results[i] = parsePubAck(m.string());
    if (--p.remaining === 0) this.finish(id, p);
  }
}
