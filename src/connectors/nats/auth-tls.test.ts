// NATS authentication and TLS against nats-servers this file starts itself on free loopback ports (the shared server on
// 4222 has neither): user/password, token, NKey and a credentials file (JWT, operator mode), and mutual TLS with a
// throwaway CA made by openssl. Core `nats` source -> sink round trips, `nats_jetstream` on the password server, and the
// failures a user meets: wrong credentials, a missing CA or client certificate.

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { createAccount, createOperator, createUser, type KeyPair } from '@nats-io/nkeys';
import { newRecordingSink, parsedOptions } from '../../testing/harness.js';
import { portOpen } from '../../testing/services.js';
import { freePort } from '../../testing/ports.js';
import { makeTestCerts } from '../../testing/tls.js';
import type { PipelineHandle } from '../../core/runtime.js';
import { sinkOptions, sourceOptions } from './index.js';
import { sinkOptions as jsSinkOptions, sourceOptions as jsSourceOptions } from '../nats_jetstream/index.js';
import { endpoint, env, pipeline, removeTempDirs, startPipeline, uniq, waitFor, waitRunning } from './testkit.js';

const PASSWORD = 'pw-Secret-4711';
const TOKEN = 'tok-Secret-0815';
const WRONG = 'wrong-Secret-999';

let dir: string;
const servers: ChildProcess[] = [];
const handles: PipelineHandle[] = [];
const clients: NatsConnection[] = [];
const ports: Record<'pw' | 'token' | 'nkey' | 'creds' | 'tls', number> = { pw: 0, token: 0, nkey: 0, creds: 0, tls: 0 };
let nkeyUser: KeyPair;
let credsFile: string;
const f = (name: string) => join(dir, name);

// ---- JWTs for the credentials-file case, signed with nkeys (what `nsc` would write) ----
const b64url = (s: string | Uint8Array) => Buffer.from(s).toString('base64url');
function jwt(signer: KeyPair, sub: string, name: string, nats: Record<string, unknown>): string {
  const claims: Record<string, unknown> = { iat: Math.floor(Date.now() / 1000), iss: signer.getPublicKey(), name, sub, nats: { ...nats, version: 2 } };
  claims.jti = createHash('sha256').update(JSON.stringify(claims)).digest('base64url').toUpperCase().slice(0, 52);
  const head = `${b64url(JSON.stringify({ typ: 'JWT', alg: 'ed25519-nkey' }))}.${b64url(JSON.stringify(claims))}`;
  return `${head}.${b64url(signer.sign(new TextEncoder().encode(head)))}`;
}

async function startServer(name: string, conf: string, extra: string[] = []): Promise<number> {
  const port = await freePort();
  writeFileSync(f(`${name}.conf`), `listen: "127.0.0.1:${port}"\n${conf}\n`);
  const p = spawn('/usr/sbin/nats-server', ['-c', f(`${name}.conf`), ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  servers.push(p);
  let err = '';
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let exited = false;
  p.once('exit', () => (exited = true));
  await waitFor(async () => exited || (await portOpen(port)), `nats-server '${name}' to listen on ${port}`);
  if (exited) throw new Error(`nats-server '${name}' exited: ${err}`);
  return port;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-nats-auth-'));
  makeTestCerts(dir);
  nkeyUser = createUser();
  const op = createOperator();
  const acct = createAccount();
  const user = createUser();
  const opJwt = jwt(op, op.getPublicKey(), 'sluice-op', { type: 'operator' });
  const acctJwt = jwt(op, acct.getPublicKey(), 'sluice-acct', { type: 'account', limits: { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 } });
  const userJwt = jwt(acct, user.getPublicKey(), 'sluice-user', { type: 'user', pub: {}, sub: {}, subs: -1, data: -1, payload: -1 });
  credsFile = f('user.creds');
  writeFileSync(
    credsFile,
    `-----BEGIN NATS USER JWT-----\n${userJwt}\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n${new TextDecoder().decode(user.getSeed())}\n------END USER NKEY SEED------\n`,
  );
  const [pw, token, nkey, creds, tls] = await Promise.all([
    startServer('pw', `authorization { user: alice, password: "${PASSWORD}" }\njetstream { store_dir: "${f('js')}" }`),
    startServer('token', `authorization { token: "${TOKEN}" }`),
    startServer('nkey', `authorization { users: [ { nkey: ${nkeyUser.getPublicKey()} } ] }`),
    startServer('creds', `operator: ${opJwt}\nresolver: MEMORY\nresolver_preload: { ${acct.getPublicKey()}: ${acctJwt} }`),
    startServer('tls', `tls { cert_file: "${f('server.pem')}", key_file: "${f('server.key')}", ca_file: "${f('ca.pem')}", verify: true, timeout: 2 }\njetstream { store_dir: "${f('js-tls')}" }`),
  ]);
  Object.assign(ports, { pw, token, nkey, creds, tls });
}, 60_000);

afterEach(async () => {
  for (const h of handles.splice(0)) await h.stop();
  for (const c of clients.splice(0)) await c.close();
});

afterAll(async () => {
  await Promise.all(
    servers.map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) return resolve();
          p.once('exit', () => resolve());
          p.kill('SIGTERM');
        }),
    ),
  );
  if (dir) rmSync(dir, { recursive: true, force: true });
  removeTempDirs();
});

const url = (port: number, scheme = 'nats') => `${scheme}://127.0.0.1:${port}`;
const enc = new TextEncoder();
const dec = new TextDecoder();

async function client(opts: NodeConnectionOptions): Promise<NatsConnection> {
  const nc = await connect(opts);
  clients.push(nc);
  return nc;
}

/**
 * A `nats` source -> `nats` sink pipeline, both with `auth`, on the server at `port`: a plain client publishes to
 * `<s>.in` until records come out on `<s>.out` (core NATS only delivers to live subscriptions), then 100 numbered ones.
 */
async function roundTrip(port: number, auth: Record<string, unknown>, clientOpts: NodeConnectionOptions, pipelineUrl = url(port)): Promise<void> {
  const s = uniq('auth');
  const nc = await client({ servers: url(port), ...clientOpts });
  const got: number[] = [];
  let warm = 0;
  const sub = nc.subscribe(`${s}.out`, { callback: (_e, m) => void (m.json<{ i: number }>().i < 0 ? warm++ : got.push(m.json<{ i: number }>().i)) });
  await nc.flush();
  const src = parsedOptions(sourceOptions(), { url: pipelineUrl, subject: `${s}.in`, ...auth });
  const snk = parsedOptions(sinkOptions(), { url: pipelineUrl, subject: `${s}.out`, ...auth });
  const h = startPipeline(pipeline(endpoint('nats', src), endpoint('nats', snk)), env({}));
  handles.push(h);
  await waitRunning(h);
  await waitFor(async () => {
    nc.publish(`${s}.in`, enc.encode('{"i":-1}'));
    await nc.flush();
    return warm > 0;
  }, 'the pipeline to pass a warm-up message');
  for (let i = 0; i < 100; i++) nc.publish(`${s}.in`, enc.encode(JSON.stringify({ i })));
  await nc.flush();
  await waitFor(() => got.length >= 100, '100 messages through the pipeline');
  expect(got).toEqual(Array.from({ length: 100 }, (_, i) => i));
  sub.unsubscribe();
}

/**
 * `nats` source -> `nats_jetstream` sink (which creates stream `name`), then `nats_jetstream` source -> recording sink,
 * every endpoint with `conn`: `n` numbered messages published by `nc` must come out of the stream in order.
 */
async function jetstreamRoundTrip(nc: NatsConnection, conn: Record<string, unknown>, name: string, s: string, n: number, storage?: 'memory'): Promise<void> {
  const h1 = startPipeline(
    pipeline(
      endpoint('nats', parsedOptions(sourceOptions(), { ...conn, subject: `${s}.in` })),
      endpoint('nats_jetstream', parsedOptions(jsSinkOptions(), { ...conn, subject: `${name}.x`, create_stream: { name, subjects: [`${name}.>`], ...(storage ? { storage } : {}) } })),
    ),
    env({}),
  );
  handles.push(h1);
  await waitRunning(h1);
  const jsm = await jetstreamManager(nc);
  await waitFor(async () => {
    nc.publish(`${s}.in`, enc.encode('{"i":-1}'));
    await nc.flush();
    return ((await jsm.streams.info(name).catch(() => undefined))?.state.messages ?? 0) > 0;
  }, 'the first message in the stream');
  for (let i = 0; i < n; i++) nc.publish(`${s}.in`, enc.encode(JSON.stringify({ i })));
  await nc.flush();
  const rec = newRecordingSink();
  const h2 = startPipeline(pipeline(endpoint('nats_jetstream', parsedOptions(jsSourceOptions(), { ...conn, stream: name, durable: 'd' })), endpoint('rec', { name: 'm' })), env({ m: rec }));
  handles.push(h2);
  await waitFor(() => rec.written.filter((r) => (r.value as { i: number }).i >= 0).length >= n, `${n} records from the stream`);
  expect(rec.written.map((r) => (r.value as { i: number }).i).filter((i) => i >= 0)).toEqual(Array.from({ length: n }, (_, i) => i));
  await jsm.streams.delete(name);
}

/** A pipeline whose source uses `opts`: it must fail at start; returns the error message. */
async function failure(opts: Record<string, unknown>): Promise<string> {
  const o = parsedOptions(sourceOptions(), { subject: 'x', connection_timeout: '3s', ...opts });
  const h = startPipeline(pipeline(endpoint('nats', o), endpoint('rec', { name: 'm' })), env({ m: newRecordingSink() }));
  handles.push(h);
  const res = await h.done;
  expect(res.status).toBe('failed');
  return res.error!.message;
}

describe('nats user/password', () => {
  it('round trip through a source and a sink with the right user and password', async () => {
    await roundTrip(ports.pw, { user: 'alice', password: PASSWORD }, { user: 'alice', pass: PASSWORD });
  });

  it('a wrong password fails the pipeline with an authorization error that does not contain the password', async () => {
    const msg = await failure({ url: url(ports.pw), user: 'alice', password: WRONG });
    expect(msg).toMatch(/refused the credentials/);
    expect(msg).toMatch(/authorization violation/i);
    expect(msg).toContain(url(ports.pw));
    expect(msg).not.toContain(WRONG);
  });

  it('credentials in the URL work, and wrong ones are not shown in the error', async () => {
    await roundTrip(ports.pw, {}, { user: 'alice', pass: PASSWORD }, `nats://alice:${PASSWORD}@127.0.0.1:${ports.pw}`);
    const msg = await failure({ url: `nats://alice:${WRONG}@127.0.0.1:${ports.pw}` });
    expect(msg).toMatch(/authorization violation/i);
    expect(msg).not.toContain(WRONG);
  });

  it('nats_jetstream sink and source round trip with user/password', async () => {
    const name = uniq('AUTH').toUpperCase();
    const auth = { url: url(ports.pw), username: 'alice', pass: PASSWORD };
    const nc = await client({ servers: url(ports.pw), user: 'alice', pass: PASSWORD });
    await jetstreamRoundTrip(nc, auth, name, uniq('js'), 50);
  });

  it('nats_jetstream with a wrong password fails naming the refusal, without the password', async () => {
    const o = parsedOptions(jsSourceOptions(), { url: url(ports.pw), user: 'alice', password: WRONG, stream: 'NOPE', connection_timeout: '3s' });
    const h = startPipeline(pipeline(endpoint('nats_jetstream', o), endpoint('rec', { name: 'm' })), env({ m: newRecordingSink() }));
    handles.push(h);
    const res = await h.done;
    expect(res.status).toBe('failed');
    expect(res.error!.message).toMatch(/authorization violation/i);
    expect(res.error!.message).not.toContain(WRONG);
  });
});

describe('nats token', () => {
  it('round trip with the right token', async () => {
    await roundTrip(ports.token, { token: TOKEN }, { token: TOKEN });
  });

  it('a wrong token, and no token, fail with an authorization error that does not contain the token', async () => {
    const wrong = await failure({ url: url(ports.token), auth_token: WRONG });
    expect(wrong).toMatch(/authorization violation/i);
    expect(wrong).not.toContain(WRONG);
    expect(await failure({ url: url(ports.token) })).toMatch(/authorization violation/i);
  });

  it('a lone user-info part in the URL is a token (as in the Go client)', async () => {
    await roundTrip(ports.token, {}, { token: TOKEN }, `nats://${TOKEN}@127.0.0.1:${ports.token}`);
  });
});

describe('nats nkey', () => {
  it('round trip with the seed inline and from a file', async () => {
    const seed = dec.decode(nkeyUser.getSeed());
    const { nkeyAuthenticator } = await import('@nats-io/transport-node');
    const clientOpts = { authenticator: nkeyAuthenticator(nkeyUser.getSeed()) };
    await roundTrip(ports.nkey, { nkey: seed }, clientOpts);
    writeFileSync(f('user.nk'), `${seed}\n`);
    await roundTrip(ports.nkey, { nkey_file: f('user.nk') }, clientOpts);
  });

  it('another user\'s seed is refused; the error does not contain the seed', async () => {
    const other = dec.decode(createUser().getSeed());
    const msg = await failure({ url: url(ports.nkey), nkey: other });
    expect(msg).toMatch(/authorization violation/i);
    expect(msg).not.toContain(other);
  });

  it('an unreadable seed file is a configuration error naming the file; a mangled inline seed is not echoed', async () => {
    const msg = await failure({ url: url(ports.nkey), nkey: f('missing.nk') });
    expect(msg).toContain(`cannot read the nkey seed file '${f('missing.nk')}'`);
    const mangled = dec.decode(nkeyUser.getSeed()).toLowerCase();
    const bad = await failure({ url: url(ports.nkey), nkey: mangled });
    expect(bad).toContain('the nkey seed is neither a valid inline value nor a readable file');
    expect(bad).not.toContain(mangled);
  });
});

describe('nats credentials file', () => {
  it('round trip with a .creds file (user JWT + seed) against an operator-mode server', async () => {
    const { credsAuthenticator } = await import('@nats-io/transport-node');
    await roundTrip(ports.creds, { creds: credsFile }, { authenticator: credsAuthenticator(readFileSync(credsFile)) });
  });

  it('no credentials against the operator-mode server fail with an authorization error', async () => {
    expect(await failure({ url: url(ports.creds) })).toMatch(/authorization violation/i);
  });
});

describe('nats tls', () => {
  const certs = () => ({ tls: { ca: f('ca.pem'), cert: f('client.pem'), key: f('client.key') } });

  it('round trip over mutual TLS with the CA, a client certificate and its key (files)', async () => {
    const tls = { ca: readFileSync(f('ca.pem'), 'utf8'), cert: readFileSync(f('client.pem'), 'utf8'), key: readFileSync(f('client.key'), 'utf8') };
    await roundTrip(ports.tls, certs(), { tls });
    // Dotted keys and the `tls://` scheme, PEM text instead of paths.
    await roundTrip(ports.tls, { 'tls.ca_file': tls.ca, 'tls.cert_file': tls.cert, 'tls.key_file': tls.key }, { tls }, url(ports.tls, 'tls'));
  });

  it('nats_jetstream sink and source round trip over mutual TLS', async () => {
    const name = uniq('TLS').toUpperCase();
    const conn = { url: url(ports.tls, 'tls'), ...certs() };
    const pem = { ca: readFileSync(f('ca.pem'), 'utf8'), cert: readFileSync(f('client.pem'), 'utf8'), key: readFileSync(f('client.key'), 'utf8') };
    const nc = await client({ servers: url(ports.tls), tls: pem });
    await jetstreamRoundTrip(nc, conn, name, uniq('jstls'), 20, 'memory');
  });

  it('without the CA the server certificate is rejected with a certificate error', async () => {
    const msg = await failure({ url: url(ports.tls), tls: { cert: f('client.pem'), key: f('client.key') } });
    expect(msg).toMatch(/TLS error/);
    expect(msg).toMatch(/certificate/i);
  });

  it('tls.skip_verify_server connects without the CA', async () => {
    const tls = { ca: readFileSync(f('ca.pem'), 'utf8'), cert: readFileSync(f('client.pem'), 'utf8'), key: readFileSync(f('client.key'), 'utf8') };
    await roundTrip(ports.tls, { tls: { skip_verify_server: true, cert: f('client.pem'), key: f('client.key') } }, { tls });
  });

  it('without a client certificate the server (verify: true) refuses the connection', async () => {
    const msg = await failure({ url: url(ports.tls), tls: { ca: f('ca.pem') }, connection_timeout: '1s' });
    expect(msg).toContain(url(ports.tls));
    expect(msg).toMatch(/TLS without a client certificate/);
  });

  it('tls.disable against a server that requires TLS fails, naming TLS', async () => {
    const msg = await failure({ url: url(ports.tls), tls: { disable: true } });
    expect(msg).toContain('the server requires TLS, and `tls.disable` is set');
  });

  it('a missing CA file is a configuration error naming the file', async () => {
    const msg = await failure({ url: url(ports.tls), tls: { ca: f('nope.pem'), cert: f('client.pem'), key: f('client.key') } });
    expect(msg).toContain(`cannot read the TLS CA file '${f('nope.pem')}'`);
  });
});
