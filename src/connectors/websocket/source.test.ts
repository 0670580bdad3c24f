import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { describeOptions, parseOptions } from '../../core/spec.js';
import { ConnState } from './source.js';
import { sourceOptions } from './options.js';
import { drive, options, startServer, texts, waitFor, type Driven, type TestServer } from './testkit.js';

const FAST = { initial: '20ms', max: '100ms' };

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});
async function server(opts = {}): Promise<TestServer> {
  const s = await startServer(opts);
  cleanup.push(() => s.close());
  return s;
}
function run(input: Record<string, unknown>, format?: string): Driven {
  const d = drive(input, format);
  cleanup.push(() => d.stop());
  return d;
}

describe('options', () => {
  it('accepts the seeds spellings', () => {
    const o = options({
      'websocket.url': 'wss://x.example/ws',
      'websocket.subscription.message': '{"op":"sub"}',
      'websocket.headers': 'X-A:1, X-B: two',
      'websocket.auth.token': 'tok',
      'websocket.reconnect.enabled': false,
      'websocket.reconnect.interval.ms': 5000,
      'websocket.connection.timeout.ms': 1234,
      'websocket.message.queue.size': 50,
      'tls.skip_verify_server': true,
      'tls.disable': true,
    });
    expect(o.url).toBe('wss://x.example/ws');
    expect(o.subscription_messages).toEqual(['{"op":"sub"}']);
    expect(o.headers).toEqual({ 'X-A': '1', 'X-B': 'two' });
    expect(o.auth?.bearer).toBe('tok');
    expect(o.reconnect).toMatchObject({ enabled: false, interval: 5000 });
    expect(o.connection_timeout).toBe(1234);
    expect(o.queue_size).toBe(50);
    expect(o.tls).toMatchObject({ skip_verify: true, disable: true });
    expect(options({ endpoint: 'ws://h/', open_message: 'hi', reconnect: false }).reconnect.enabled).toBe(false);
  });

  it('rejects bad templates with the column and other mistakes', () => {
    const r = parseOptions(sourceOptions(), { url: 'ws://h/', subscription_messages: ['{{ nowms }}'], handshake: [{ expect: { timeout: '1s' } }] });
    expect(r.ok).toBe(false);
    const msgs = !r.ok ? r.issues.map((i) => `${i.path.join('.')}: ${i.message}`) : [];
    expect(msgs.join('\n')).toContain("subscription_messages.0: template column 4: unknown function 'nowms'");
    expect(msgs.join('\n')).toMatch(/expect needs `json` or `regex`/);
    expect(parseOptions(sourceOptions(), { url: 'http://h/' }).ok).toBe(false);
    expect(parseOptions(sourceOptions(), { url: 'ws://h/', subscriptions: ['a'] }).ok).toBe(false);
  });

  it('documents every option', () => {
    const names = describeOptions(sourceOptions()).map((d) => d.name);
    expect(names).toEqual(expect.arrayContaining(['url', 'subscription_messages', 'handshake', 'headers', 'auth', 'reconnect', 'ping_interval', 'idle_timeout', 'queue_size', 'overflow', 'buffer', 'tls', 'proxy_url']));
  });
});

describe('websocket source', () => {
  it('receives text and binary frames as raw payloads with metadata, batched per turn', async () => {
    const s = await server();
    s.onConnection = (c) => {
      for (let i = 0; i < 50; i++) c.ws.send(JSON.stringify({ i }));
      c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    };
    const d = run({ url: s.url });
    await waitFor(() => d.records.length === 51, '51 records');
    expect(d.records[0]!.value).toBe('{"i":0}');
    expect(Buffer.isBuffer(d.records[50]!.value)).toBe(true);
    expect(d.records[0]!.meta).toMatchObject({ _connection_id: '0.1', _url: s.url, _message_type: 'text' });
    expect(d.records[50]!.meta!._message_type).toBe('binary');
    expect(typeof d.records[0]!.meta!._received_at).toBe('number');
    expect(d.batches.length).toBeLessThan(51);
    expect(d.metric('messages_received')).toBe(51);
    expect(d.metric('connection_state')).toBe(ConnState.Live);
  });

  it('re-sends subscription messages in order after every reconnect', async () => {
    const s = await server();
    const d = run({ url: s.url, subscription_messages: ['first', 'second {{ connection }}', 'third'], reconnect: FAST });
    await waitFor(() => s.received.length === 3, 'subscriptions');
    s.conns[0]!.ws.close(1001, 'bye');
    await waitFor(() => s.received.length === 6, 'subscriptions after reconnect');
    expect(s.received).toEqual(['first', 'second 0', 'third', 'first', 'second 0', 'third']);
    expect(d.metric('reconnects')).toBe(1);
    expect(d.metric('connects')).toBe(2);
  });

  it('runs a handshake with an HMAC-signed send, an expect and a sleep before subscribing', async () => {
    process.env.SLUICE_WS_TEST_SECRET = 'shh';
    cleanup.push(() => void delete process.env.SLUICE_WS_TEST_SECRET);
    const s = await server();
    s.onMessage = (c, t) => {
      if (t.startsWith('{"op":"auth"')) {
        const m = JSON.parse(t);
        const ok = m.sig === createHmac('sha256', 'shh').update(`GET/realtime${m.ts}`).digest('hex');
        c.ws.send('{"event":"noise"}');
        c.ws.send(JSON.stringify({ event: 'login', code: ok ? '0' : '1' }));
      }
      if (t === 'subscribe') c.ws.send('{"data":1}');
    };
    const d = run({
      url: s.url,
      handshake: [
        { send: '{"op":"auth","ts":{{ now_ms }},"sig":"{{ hmac_sha256 (env "SLUICE_WS_TEST_SECRET") (concat "GET/realtime" now_ms) }}"}' },
        { expect: { json: { event: 'login', code: 0 }, timeout: '2s' } },
        { sleep: '10ms' },
      ],
      subscription_messages: 'subscribe',
    });
    await waitFor(() => d.records.length === 1, 'data after handshake');
    expect(texts(d.records)).toEqual(['{"data":1}']);
    expect(s.received[1]).toBe('subscribe');
    expect(d.steps).toEqual(expect.arrayContaining(['handshake step 1: sent', 'handshake step 2: got the expected reply']));
  });

  it('fails a handshake whose expect never matches, visibly, and retries with backoff', async () => {
    const s = await server();
    s.onMessage = (c) => c.ws.send('{"event":"error"}');
    const d = run({ url: s.url, handshake: [{ send: 'auth' }, { expect: { regex: '"event":"login"', timeout: '50ms' } }], reconnect: FAST });
    await waitFor(() => d.metric('handshake_failures') >= 2, 'two failed handshakes');
    expect(d.steps.some((m) => /handshake failed: handshake step 2: no message matching \/"event":"login"\/ within 50 ms; reconnecting in \d+ ms/.test(m))).toBe(true);
    expect(d.records).toEqual([]);
    expect(d.metric('connection_state')).not.toBe(ConnState.Live);
  });

  it('sends headers, bearer and basic auth, subprotocols and origin on the upgrade', async () => {
    const s = await server({ handleProtocols: (p: Set<string>) => (p.has('v2') ? 'v2' : false) });
    const d1 = run({ url: s.url, headers: { 'X-Api-Key': 'k1' }, auth: { bearer: 'tok' }, subprotocols: 'v1,v2', origin: 'https://me.example' });
    await waitFor(() => s.conns.length === 1, 'first connection');
    const h = s.conns[0]!.req.headers;
    expect(h['x-api-key']).toBe('k1');
    expect(h.authorization).toBe('Bearer tok');
    expect(h.origin).toBe('https://me.example');
    expect(h['sec-websocket-protocol']).toBe('v1,v2');
    await waitFor(() => d1.steps.some((m) => m.includes('subprotocol v2')), 'subprotocol negotiated');
    run({ url: s.url, headers: 'X-A:1', auth: { username: 'u', password: 'p w' } });
    await waitFor(() => s.conns.length === 2, 'second connection');
    expect(s.conns[1]!.req.headers.authorization).toBe(`Basic ${Buffer.from('u:p w').toString('base64')}`);
    expect(s.conns[1]!.req.headers['x-a']).toBe('1');
  });

  it('reports an upgrade rejected with 401 as an auth failure naming the status, URL without secrets', async () => {
    const s = await server({ verifyClient: (_i: unknown, cb: (ok: boolean, code?: number, msg?: string) => void) => cb(false, 401, 'Unauthorized') });
    const d = run({ url: `${s.url}?apikey=SECRET`, reconnect: { enabled: false } });
    const err = await d.done.then(() => undefined, (e: Error) => e);
    expect(err?.message).toMatch(/rejected the credentials: HTTP 401 Unauthorized/);
    expect(err?.message).toContain('apikey=***');
    expect(err?.message).not.toContain('SECRET');
    expect(err?.message).toContain('reconnect is disabled');
  });

  it('reconnects after an abrupt TCP reset and after each close code', async () => {
    const s = await server();
    let n = 0;
    s.onConnection = (c) => c.ws.send(`hello ${n++}`);
    const d = run({ url: s.url, reconnect: FAST });
    await waitFor(() => d.records.length === 1, 'first message');
    s.conns[0]!.ws.terminate(); // socket.destroy(): no close frame
    await waitFor(() => d.records.length === 2, 'message after reset');
    expect(d.steps.some((m) => m.includes('the connection dropped (code 1006'))).toBe(true);
    for (const code of [1000, 1001, 1011, 1012, 1013, 4000]) {
      const before = d.records.length;
      s.live()[0]!.ws.close(code, `c${code}`);
      await waitFor(() => d.records.length === before + 1, `reconnect after ${code}`);
      expect(d.steps.some((m) => m.includes(`code ${code}`) && m.includes(`reason 'c${code}'`))).toBe(true);
    }
    expect(d.metric('reconnects')).toBe(7);
  });

  it('fails with the close code and reason when reconnect is disabled', async () => {
    const s = await server();
    s.onConnection = (c) => c.ws.close(1008, 'policy');
    const d = run({ url: s.url, reconnect: { enabled: false } });
    await expect(d.done).rejects.toThrow(/the server closed the connection: code 1008 \(policy violation\), reason 'policy' \(reconnect is disabled\)/);
  });

  it('gives up after max_retries consecutive failures', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const d = run({ url: `ws://127.0.0.1:${port}/`, reconnect: { ...FAST, max_retries: 2 } });
    await expect(d.done).rejects.toThrow(/giving up after 2 failed reconnect attempts; last error: cannot connect to ws:\/\/127\.0\.0\.1:\d+\/: connection refused/);
  });

  it('reconnects when the server ignores pings (pong_timeout)', async () => {
    const s = await server({ autoPong: false });
    const d = run({ url: s.url, ping_interval: '30ms', pong_timeout: '60ms', reconnect: FAST });
    await waitFor(() => d.metric('reconnects') >= 1, 'reconnect after missing pong');
    expect(d.steps.some((m) => m.includes('no pong or message within 60 ms'))).toBe(true);
  });

  it('keeps a connection whose server answers pings', async () => {
    const s = await server();
    let pings = 0;
    s.onConnection = (c) => c.ws.on('ping', () => pings++);
    const d = run({ url: s.url, ping_interval: '20ms', pong_timeout: '40ms', reconnect: FAST });
    await waitFor(() => pings >= 5, 'five pings answered');
    expect(d.metric('reconnects')).toBe(0);
  });

  it('reconnects and re-subscribes a silent server (idle_timeout) even though pongs come', async () => {
    const s = await server();
    const d = run({ url: s.url, subscription_messages: ['sub'], idle_timeout: '80ms', ping_interval: '20ms', reconnect: FAST });
    await waitFor(() => s.received.filter((m) => m === 'sub').length >= 2, 'resubscribe after idle');
    expect(d.steps.some((m) => m.includes('no data message for 80 ms (idle_timeout)'))).toBe(true);
  });

  it('sends app-level pings and consumes the matching pongs', async () => {
    const s = await server();
    s.onMessage = (c, t) => {
      if (t.startsWith('ping')) {
        c.ws.send('pong');
        c.ws.send('{"x":1}');
      }
    };
    const d = run({ url: s.url, ping_message: 'ping {{ now_s }}', pong_match: '/^pong$/', ping_interval: '20ms', pong_timeout: '200ms' });
    await waitFor(() => d.records.length >= 3, 'data between pongs');
    expect(s.received.every((m) => /^ping \d+$/.test(m))).toBe(true);
    expect(texts(d.records).every((t) => t === '{"x":1}')).toBe(true);
  });

  it('drops a 100 MB frame above max_message_size with a clear error, reconnects and goes on', async () => {
    const s = await server();
    let n = 0;
    s.onConnection = (c) => {
      if (n++ === 0) c.ws.send(Buffer.alloc(100 * 1024 * 1024, 97));
      else c.ws.send('small');
    };
    const d = run({ url: s.url, max_message_size: '1MiB', reconnect: FAST });
    await waitFor(() => d.records.length === 1, 'message after reconnect', 15_000);
    expect(texts(d.records)).toEqual(['small']);
    expect(d.steps.some((m) => m.includes('a message larger than max_message_size (1048576 bytes) arrived'))).toBe(true);
  });

  it('passes invalid UTF-8 text frames to bad-data handling as bytes', async () => {
    const s = await server();
    s.onConnection = (c) => {
      // ws would refuse to send invalid text; write the frame by hand: FIN+text, length 2, bytes ff fe.
      (c.ws as unknown as { _socket: Socket })._socket.write(Buffer.from([0x81, 0x02, 0xff, 0xfe]));
      c.ws.send('ok');
    };
    const d = run({ url: s.url });
    await waitFor(() => d.records.length === 1 && d.bad.length === 1, 'one good, one bad');
    expect(d.bad[0]!.error.message).toBe('text frame is not valid UTF-8');
    expect(Buffer.from(d.bad[0]!.raw as Uint8Array)).toEqual(Buffer.from([0xff, 0xfe]));
    expect(d.metric('reconnects')).toBe(0);
  });

  it('spreads subscriptions over several connections presented as one source', async () => {
    const s = await server();
    s.onMessage = (c, t) => {
      for (const ch of JSON.parse(t).params as string[]) c.ws.send(JSON.stringify({ ch }));
    };
    const channels = ['a', 'b', 'c', 'd', 'e'];
    const d = run({ url: s.url, subscriptions: channels, subscription_template: '{"method":"SUBSCRIBE","params":{{ channels }}}', max_subscriptions_per_connection: 2 });
    await waitFor(() => d.records.length === 5, 'one message per channel');
    expect(s.conns.length).toBe(3);
    expect(s.received.map((m) => JSON.parse(m).params).sort()).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
    expect(new Set(d.records.map((r) => r.meta!._connection_id))).toEqual(new Set(['0.1', '1.1', '2.1']));
    expect(d.metric('connection_state')).toBe(ConnState.Live);
  });

  it('sends one message per channel when the template uses {{ channel }}', async () => {
    const s = await server();
    run({ url: s.url, subscriptions: 'x,y', subscription_template: '{"sub":{{ json channel }}}' });
    await waitFor(() => s.received.length === 2, 'two subscriptions');
    expect(s.received).toEqual(['{"sub":"x"}', '{"sub":"y"}']);
  });

  it('counts sequence gaps and can reconnect on one', async () => {
    const s = await server();
    let conn = 0;
    s.onConnection = (c) => {
      const seqs = conn++ === 0 ? [1, 2, 3, 7, 8, 10] : [100];
      for (const seq of seqs) c.ws.send(JSON.stringify({ seq: { n: seq } }));
    };
    const d = run({ url: s.url, sequence_field: 'seq.n', reconnect_on_gap: true, reconnect: FAST });
    await waitFor(() => d.records.some((r) => (r.value as { seq: { n: number } }).seq.n === 100), 'reconnected after the gap');
    expect(d.batches.every((b) => b.decoded)).toBe(true);
    expect(d.metric('gaps')).toBeGreaterThanOrEqual(1);
    expect(d.steps.some((m) => m.includes('sequence gap (expected 4, got 7)'))).toBe(true);
  });

  it('counts every gap without reconnecting by default', async () => {
    const s = await server();
    s.onConnection = (c) => {
      for (const seq of [1, 2, 5, 6, 9, 9, 10]) c.ws.send(JSON.stringify({ seq }));
    };
    const d = run({ url: s.url, sequence_field: 'seq' });
    await waitFor(() => d.records.length === 7, 'all records');
    expect(d.metric('gaps')).toBe(2);
    expect(d.metric('reconnects')).toBe(0);
  });

  it('pauses the socket when the pipeline is full: TCP pushes back and memory stays bounded', async () => {
    const s = await server();
    let serverConn: TestServer['conns'][number] | undefined;
    let sent = 0;
    const payload = JSON.stringify({ pad: 'x'.repeat(200) });
    let stopWriting = false;
    s.onConnection = (c) => {
      serverConn = c;
      // Write until the kernel buffers are full, then keep the socket stuffed.
      const pump = () => {
        while (!stopWriting && c.ws.bufferedAmount < 8 * 1024 * 1024 && sent < 200_000) {
          c.ws.send(payload);
          sent++;
        }
        if (!stopWriting && sent < 200_000) setTimeout(pump, 5);
      };
      pump();
    };
    cleanup.push(() => void (stopWriting = true));
    let release!: () => void;
    const d = drive({ url: s.url, queue_size: 100 });
    cleanup.push(() => d.stop());
    d.block = new Promise<void>((r) => (release = r));
    await waitFor(() => d.source.paused, 'the source pauses its socket');
    const received = d.records.length;
    const metered = () => d.metric('messages_received');
    const atPause = metered();
    // The server keeps writing; with the client not reading, its send buffer fills up.
    await waitFor(() => (serverConn?.ws.bufferedAmount ?? 0) > 4 * 1024 * 1024, 'server-side bufferedAmount grows', 10_000);
    expect(d.source.paused).toBe(true);
    expect(d.records.length).toBe(received);
    // Only frames ws had already read when the pause came may still trickle in: far less than the server wrote.
    expect(metered() - atPause).toBeLessThan(2000);
    // What the client holds is a bounded fraction of what the server wrote.
    expect(d.source.queueDepth).toBeLessThanOrEqual(100 + 1024);
    expect(received).toBeLessThan(sent);
    d.block = undefined;
    release();
    await waitFor(() => !d.source.paused && d.records.length > received + 1000, 'reading resumes');
    expect(d.metric('dropped')).toBe(0);
    expect(d.metric('reconnects')).toBe(0);
  });

  it('drops the oldest or newest messages instead when told to, counted', async () => {
    for (const overflow of ['drop_newest', 'drop_oldest'] as const) {
      const s = await server();
      s.onConnection = (c) => {
        for (let i = 0; i < 500; i++) c.ws.send(String(i));
      };
      let release!: () => void;
      const d = drive({ url: s.url, queue_size: 10, overflow });
      cleanup.push(() => d.stop());
      d.block = new Promise<void>((r) => (release = r));
      await waitFor(() => d.metric('messages_received') === 500, `${overflow}: all received`);
      expect(d.source.paused).toBe(false);
      // 490 drops while the pipeline waited must not leave 490 empty slots behind.
      expect(d.source.queueSlots).toBeLessThanOrEqual(2 * 10);
      d.block = undefined;
      release();
      // Every received message is either delivered or counted as dropped; nothing vanishes.
      await waitFor(() => d.records.length + d.metric('dropped') === 500 && d.source.queueDepth === 0, `${overflow}: queue flushed`, 15_000);
      const tail = texts(d.records.slice(-10));
      expect(d.metric('dropped')).toBe(500 - d.records.length);
      if (overflow === 'drop_newest') expect(tail).not.toContain('499');
      else expect(tail).toContain('499');
    }
  });

  it('stops promptly on abort, closing with 1000 and leaving no timers', async () => {
    const s = await server();
    let closeCode = 0;
    s.onConnection = (c) => c.ws.on('close', (code) => (closeCode = code));
    const d = drive({ url: s.url, ping_interval: '10ms', idle_timeout: '1s' });
    await waitFor(() => d.metric('connection_state') === ConnState.Live, 'live');
    const t0 = Date.now();
    await d.stop();
    expect(Date.now() - t0).toBeLessThan(1000);
    await waitFor(() => closeCode === 1000, 'close 1000 at the server');
  });
});

describe('transport', () => {
  it('negotiates permessage-deflate when compression is on', async () => {
    const s = await server({ perMessageDeflate: { threshold: 0 } });
    s.onConnection = (c) => c.ws.send(JSON.stringify({ text: 'y'.repeat(5000) }));
    const d = run({ url: s.url, compression: true });
    await waitFor(() => d.records.length === 1, 'a compressed message');
    expect(s.conns[0]!.ws.extensions).toContain('permessage-deflate');
    expect((d.records[0]!.value as string).length).toBe(5000 + 11);
  });

  it('gives up an attempt that gets no upgrade answer within connection_timeout', async () => {
    const { createServer: createTcp } = await import('node:net');
    const held: Socket[] = [];
    const tcp = createTcp((sock) => void held.push(sock)); // accepts, never answers
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', () => r()));
    cleanup.push(() => new Promise<void>((r) => (held.forEach((x) => x.destroy()), tcp.close(() => r()))));
    const d = run({ url: `ws://127.0.0.1:${(tcp.address() as AddressInfo).port}/`, connection_timeout: '100ms', reconnect: false });
    const err = await d.done.then(() => undefined, (e: Error) => e);
    expect(err?.message).toMatch(/no answer within 100 ms \(connection_timeout\)/);
  });

  it('tunnels through an HTTP CONNECT proxy', async () => {
    const s = await server();
    s.onConnection = (c) => c.ws.send('via proxy');
    const tunnels: string[] = [];
    const proxy: Server = createServer();
    proxy.on('connect', (req, client: Socket, head) => {
      tunnels.push(req.url ?? '');
      const [host, port] = (req.url ?? '').split(':');
      const upstream = netConnect(Number(port), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
      cleanup.push(() => void (upstream.destroy(), client.destroy()));
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    cleanup.push(() => new Promise<void>((r) => proxy.close(() => r())));
    const d = run({ url: s.url, proxy_url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` });
    await waitFor(() => d.records.length === 1, 'message through the proxy');
    expect(tunnels).toEqual([`127.0.0.1:${s.port}`]);
  });

  it('reports a proxy that refuses the tunnel', async () => {
    const proxy = createServer();
    proxy.on('connect', (_req, client: Socket) => client.end('HTTP/1.1 407 Proxy Authentication Required\r\n\r\n'));
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    cleanup.push(() => new Promise<void>((r) => proxy.close(() => r())));
    const d = run({ url: 'ws://127.0.0.1:9/x', proxy_url: `http://u:pw@127.0.0.1:${(proxy.address() as AddressInfo).port}`, reconnect: false });
    const err = await d.done.then(() => undefined, (e: Error) => e);
    expect(err?.message).toMatch(/refused the tunnel to 127\.0\.0\.1:9: HTTP 407/);
    expect(err?.message).not.toContain('pw');
  });
});

describe('test()', () => {
  it('connects, runs the handshake and subscriptions, samples messages and proposes a schema', async () => {
    const s = await server();
    s.onMessage = (c, t) => {
      if (t === 'auth') c.ws.send('{"ok":true}');
      if (t === 'sub') for (let i = 0; i < 25; i++) c.ws.send(JSON.stringify({ id: i, price: 1.5 + i, sym: 'BTC' }));
    };
    const { spec } = await import('./index.js');
    const steps: Array<{ message: string; error?: boolean }> = [];
    await spec.test!({ url: s.url, handshake: [{ send: 'auth' }, { expect: { json: { ok: true } } }], subscription_messages: ['sub'] }, 'source', (st) => steps.push(st), new AbortController().signal);
    const text = steps.map((x) => x.message).join('\n');
    expect(text).toContain(`connected to ${s.url}`);
    expect(text).toContain('handshake step 2: got the expected reply');
    expect(text).toMatch(/received \d+ message/);
    expect(text).toContain('proposed schema');
    expect(text).toContain('id int64 NOT NULL, price float64 NOT NULL, sym string NOT NULL');
    expect(steps.some((x) => x.error)).toBe(false);
  });

  it('reports a failed connection as an error step', async () => {
    const s = await server({ verifyClient: (_i: unknown, cb: (ok: boolean, code?: number) => void) => cb(false, 403) });
    const { spec } = await import('./index.js');
    const steps: Array<{ message: string; error?: boolean }> = [];
    await expect(spec.test!({ url: s.url }, 'source', (st) => steps.push(st), new AbortController().signal)).rejects.toThrow(/HTTP 403/);
    expect(steps.at(-1)).toMatchObject({ error: true });
    expect(steps.at(-1)!.message).toMatch(/rejected the credentials: HTTP 403/);
  });
});
