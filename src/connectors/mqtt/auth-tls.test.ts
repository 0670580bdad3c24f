// MQTT authentication and TLS against a Mosquitto this file starts itself on free loopback ports (the shared broker on
// 1883 has neither), with a throwaway CA made by openssl. Three listeners (`per_listener_settings true`):
//   plain:  tcp, password_file, no anonymous clients
//   tls:    server-side TLS + password_file
//   mtls:   TLS with require_certificate true (client certificate signed by the CA), anonymous
// Each case runs an `mqtt` source -> `mqtt` sink pipeline against the listener and checks what comes out with a plain
// mqtt.js client, or checks the error a user meets with wrong credentials or certificates.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { startPipeline, type PipelineHandle } from '../../core/runtime.js';
import { endpointDef, newRecordingSink, parsedOptions, pipelineDef, recordingEndpoint, recordingEnv, waitFor } from '../../testing/harness.js';
import { portOpen } from '../../testing/services.js';
import { freePort } from '../../testing/ports.js';
import { makeTestCerts } from '../../testing/tls.js';
import { sinkOptions, sourceOptions } from './options.js';

const PASSWORD = 'mq-Secret-4711';
const WRONG = 'mq-Wrong-0815';
const run = randomBytes(4).toString('hex');
let seq = 0;
const uniq = (name: string) => `sluice-auth/${run}/${name}-${++seq}`;

let dir: string;
let broker: ChildProcess | undefined;
let brokerLog = '';
const ports = { plain: 0, tls: 0, mtls: 0 };
const f = (name: string) => join(dir, name);
let cleanup: Array<() => Promise<unknown> | unknown> = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-mqtt-auth-'));
  makeTestCerts(dir);
  execFileSync('mosquitto_passwd', ['-c', '-b', f('passwd'), 'alice', PASSWORD], { stdio: 'pipe' });
  Object.assign(ports, { plain: await freePort(), tls: await freePort(), mtls: await freePort() });
  const tls = `cafile ${f('ca.pem')}\ncertfile ${f('server.pem')}\nkeyfile ${f('server.key')}\n`;
  writeFileSync(
    f('mosquitto.conf'),
    [
      // Running as root, Mosquitto would switch to the `mosquitto` user, which cannot read this private temp dir.
      'user root',
      'per_listener_settings true',
      'persistence false',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      `listener ${ports.plain} 127.0.0.1`,
      'allow_anonymous false',
      `password_file ${f('passwd')}`,
      `listener ${ports.tls} 127.0.0.1`,
      'allow_anonymous false',
      `password_file ${f('passwd')}`,
      tls,
      `listener ${ports.mtls} 127.0.0.1`,
      'allow_anonymous true',
      'require_certificate true',
      tls,
    ].join('\n'),
  );
  const p = spawn('/usr/sbin/mosquitto', ['-c', f('mosquitto.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  broker = p;
  p.stderr!.on('data', (d: Buffer) => (brokerLog += d.toString()));
  let exited = false;
  p.once('exit', () => (exited = true));
  for (const port of Object.values(ports)) await waitFor(async () => exited || (await portOpen(port)), `mosquitto to listen on ${port}`, 15_000);
  if (exited) throw new Error(`mosquitto exited: ${brokerLog}`);
}, 60_000);

afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

afterAll(async () => {
  const p = broker;
  if (p && p.exitCode === null && p.signalCode === null) {
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await exited;
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const env = () => recordingEnv({}, { dataDir: dir });

async function client(url: string, o: IClientOptions): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...o });
  cleanup.push(() => c.endAsync());
  return c;
}

function start(def: ReturnType<typeof pipelineDef>): PipelineHandle {
  const h = startPipeline(def, env(), { drainTimeoutMs: 2000 });
  cleanup.push(() => h.stop());
  return h;
}

const ca = () => readFileSync(f('ca.pem'));
const clientCert = () => ({ cert: readFileSync(f('client.pem')), key: readFileSync(f('client.key')) });

/**
 * `mqtt` source -> `mqtt` sink, both with the raw options `conn` against `server`; a client (`url`, `copts`) publishes
 * to `<t>/in` until probes come out on `<t>/out`, then 50 numbered messages, which must all come out.
 */
async function roundTrip(server: string, conn: Record<string, unknown>, url: string, copts: IClientOptions): Promise<void> {
  const t = uniq('rt');
  const c = await client(url, copts);
  const got: number[] = [];
  let probes = 0;
  c.on('message', (_topic, payload) => {
    const i = (JSON.parse(payload.toString()) as { i: number }).i;
    if (i < 0) probes++;
    else got.push(i);
  });
  await c.subscribeAsync(`${t}/out`, { qos: 1 });
  const src = parsedOptions(sourceOptions(), { server, topic: `${t}/in`, qos: 1, ...conn });
  const snk = parsedOptions(sinkOptions(), { server, topic: `${t}/out`, qos: 1, ...conn });
  start(
    pipelineDef(`auth-${seq}`, endpointDef('mqtt', src as Record<string, unknown>, { config: { ...conn } }), endpointDef('mqtt', snk as Record<string, unknown>, { config: { ...conn } }), {
      batch: { linger_ms: 2 },
    }),
  );
  await waitFor(async () => {
    await c.publishAsync(`${t}/in`, '{"i":-1}', { qos: 1 });
    return probes > 0;
  }, 'a probe through the pipeline (the source subscribed)', 15_000);
  for (let i = 0; i < 50; i++) await c.publishAsync(`${t}/in`, JSON.stringify({ i }), { qos: 1 });
  await waitFor(() => got.length >= 50, '50 messages through the pipeline', 15_000);
  expect(got).toEqual(Array.from({ length: 50 }, (_, i) => i));
}

/** A source with `conn` must fail the pipeline; returns the error message. */
async function failure(conn: Record<string, unknown>): Promise<string> {
  const src = parsedOptions(sourceOptions(), { topic: 'x', connect_timeout: '2s', ...conn });
  const h = start(pipelineDef(`fail-${++seq}`, endpointDef('mqtt', src as Record<string, unknown>), recordingEndpoint('m')));
  const res = await h.done;
  expect(res.status).toBe('failed');
  return res.error!.message;
}

describe('mqtt username/password', () => {
  it('round trip with the right user name and password (MQTT 5 and 3.1.1)', async () => {
    const url = `mqtt://127.0.0.1:${ports.plain}`;
    await roundTrip(`tcp://127.0.0.1:${ports.plain}`, { username: 'alice', password: PASSWORD }, url, { username: 'alice', password: PASSWORD });
    await roundTrip(`tcp://127.0.0.1:${ports.plain}`, { user: 'alice', pass: PASSWORD, protocol_version: '3.1.1' }, url, { username: 'alice', password: PASSWORD });
  });

  for (const version of ['5', '3.1.1']) {
    it(`a wrong password (MQTT ${version}) fails the pipeline naming the broker's refusal, without the password`, async () => {
      const msg = await failure({ server: `tcp://127.0.0.1:${ports.plain}`, username: 'alice', password: WRONG, protocol_version: version });
      expect(msg).toContain(`127.0.0.1:${ports.plain}`);
      expect(msg).toMatch(/refused client .*: (bad user name or password|not authorized)/i);
      expect(msg).not.toContain(WRONG);
      expect(msg).not.toContain(PASSWORD);
    });
  }

  it('a sink with a wrong password fails the pipeline naming the refusal, without the password', async () => {
    const conn = { server: `tcp://127.0.0.1:${ports.plain}`, username: 'alice', password: WRONG, connect_timeout: '2s' };
    const src = parsedOptions(sourceOptions(), { ...conn, password: PASSWORD, topic: uniq('in') });
    const snk = parsedOptions(sinkOptions(), { ...conn, topic: uniq('out') });
    const h = start(pipelineDef(`sinkfail-${seq}`, endpointDef('mqtt', src as Record<string, unknown>), endpointDef('mqtt', snk as Record<string, unknown>)));
    const res = await h.done;
    expect(res.status).toBe('failed');
    expect(res.error!.message).toMatch(/refused client .*: (bad user name or password|not authorized)/i);
    expect(res.error!.message).not.toContain(WRONG);
  });

  it('no credentials on a listener without anonymous access are refused', async () => {
    expect(await failure({ server: `tcp://127.0.0.1:${ports.plain}` })).toMatch(/refused client .*: (not authorized|bad user name or password)/i);
  });
});

describe('mqtt tls', () => {
  it('round trip over TLS with the CA and a password (eKuiper spellings)', async () => {
    await roundTrip(`ssl://127.0.0.1:${ports.tls}`, { username: 'alice', password: PASSWORD, root_ca_path: f('ca.pem') }, `mqtts://127.0.0.1:${ports.tls}`, {
      username: 'alice',
      password: PASSWORD,
      ca: ca(),
    });
  });

  it('round trip over mutual TLS with a client certificate (camelCase aliases)', async () => {
    await roundTrip(
      `tls://localhost:${ports.mtls}`,
      { rootCaPath: f('ca.pem'), certificationPath: f('client.pem'), privateKeyPath: f('client.key') },
      `mqtts://127.0.0.1:${ports.mtls}`,
      { ca: ca(), ...clientCert() },
    );
  });

  it('without the CA the server certificate is rejected: the error names the certificate problem', async () => {
    const msg = await failure({ server: `ssl://127.0.0.1:${ports.tls}`, username: 'alice', password: PASSWORD });
    expect(msg).toContain(`127.0.0.1:${ports.tls}`);
    expect(msg).toMatch(/certificate/i);
    expect(msg).not.toContain(PASSWORD);
  });

  it('insecure_skip_verify connects without the CA', async () => {
    await roundTrip(`mqtts://127.0.0.1:${ports.tls}`, { username: 'alice', password: PASSWORD, insecureSkipVerify: true }, `mqtts://127.0.0.1:${ports.tls}`, {
      username: 'alice',
      password: PASSWORD,
      ca: ca(),
    });
  });

  it('a wrong password over TLS is the broker\'s refusal, not a TLS error', async () => {
    const msg = await failure({ server: `ssl://127.0.0.1:${ports.tls}`, username: 'alice', password: WRONG, root_ca_path: f('ca.pem') });
    expect(msg).toMatch(/refused client .*: (bad user name or password|not authorized)/i);
    expect(msg).not.toContain(WRONG);
  });

  it('without a client certificate the mutual-TLS listener drops the connection; the error says so', async () => {
    const msg = await failure({ server: `ssl://127.0.0.1:${ports.mtls}`, root_ca_path: f('ca.pem') });
    expect(msg).toContain(`127.0.0.1:${ports.mtls}`);
    expect(msg).toMatch(/certificate/i);
  });

  it('an unreadable certificate file is a configuration error naming the option and the file', async () => {
    const msg = await failure({ server: `ssl://127.0.0.1:${ports.mtls}`, root_ca_path: f('ca.pem'), certification_path: f('nope.pem'), private_key_path: f('client.key') });
    expect(msg).toContain(`certification_path '${f('nope.pem')}' cannot be read`);
  });
});
