// Test code only: a Kafka to test against. With KAFKA_BROKERS set, that cluster (topics created and deleted through
// the admin API); otherwise the Kafka-protocol emulator from npm (go-mokapi), started from its platform binary with
// the topics declared in an AsyncAPI file, and stopped by PID.
//
// Emulator limits the tests live with: no transactions, LeaveGroup or DescribeGroups; no auto-created topics; about
// 3 s per group join; messages kept in memory only (a restarted emulator has empty topics). The binary takes only a
// port for its Kafka listener (from the AsyncAPI server host) and its HTTP ports, and binds them on every interface;
// clients here only ever connect to 127.0.0.1.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import kafkajs from 'kafkajs';
import type { Admin, Message, Producer } from 'kafkajs';
import { portOpen } from '../../testing/services.js';

const { Kafka, logLevel } = kafkajs;

export const REAL_BROKERS = process.env.KAFKA_BROKERS;
export const MOKAPI_BIN = resolve(import.meta.dirname, '../../../node_modules/@go-mokapi/linux-x64/bin/mokapi');

export interface TestBroker {
  /** `host:port` list for the connector's `brokers` option. */
  brokers: string;
  /** A real cluster (KAFKA_BROKERS) rather than the emulator. */
  real: boolean;
  /** Declare (emulator) or create (real cluster) a topic, and wait until clients see it. */
  createTopic(name: string, partitions?: number): Promise<void>;
  /** Write messages with a plain producer (one sendBatch per call). */
  produce(topic: string, messages: Message[]): Promise<void>;
  /** Every message of a topic, read with a throwaway consumer until `count` arrived or `timeoutMs` passed. */
  readTopic(topic: string, count: number, timeoutMs?: number): Promise<Array<{ partition: number; offset: string; key: string | null; value: string; headers: Record<string, string>; timestamp: string }>>;
  /** Committed offsets of a group for a topic (partition -> offset, -1 when none). */
  committed(group: string, topic: string): Promise<Record<number, string>>;
  /** Emulator only: kill it (the port goes dark). */
  kill(): Promise<void>;
  /** Emulator only: start it again on the same port and folder. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** A unique name per test run, so parallel runs never share topics or groups. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

async function until(cond: () => Promise<boolean>, what: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

function asyncapi(port: number, topics: Map<string, number>): string {
  const lines = [
    'asyncapi: 3.0.0',
    "info: { title: sluice-test, version: '1' }",
    'servers:',
    `  local: { host: '127.0.0.1:${port}', protocol: kafka }`,
    'channels:',
  ];
  if (!topics.size) lines[lines.length - 1] = 'channels: {}';
  for (const [name, partitions] of topics) {
    lines.push(
      `  ${JSON.stringify(name)}:`,
      `    address: ${JSON.stringify(name)}`,
      `    bindings: { kafka: { partitions: ${partitions} } }`,
      '    messages:',
      '      m: { contentType: application/octet-stream, payload: {} }',
    );
  }
  return lines.join('\n') + '\n';
}

export async function startTestBroker(): Promise<TestBroker> {
  const real = !!REAL_BROKERS;
  let port = 0;
  let dir = '';
  let child: ChildProcess | undefined;
  const topics = new Map<string, number>();
  const created: string[] = [];

  const startEmulator = async () => {
    child = spawn(MOKAPI_BIN, [
      '--providers-file-directory', dir,
      '--api-port', String(await freePort()),
      '--health-port', String(await freePort()),
      '--mcp-server-enabled=false',
      '--api-search-enabled=false',
      '--api-dashboard=false',
      '--log-level', 'warn',
    ], { stdio: 'ignore' });
    const c = child;
    await until(async () => {
      if (c.exitCode !== null) throw new Error(`the Kafka emulator exited with code ${c.exitCode}`);
      return portOpen(port);
    }, `the Kafka emulator on 127.0.0.1:${port}`, 15_000);
  };

  if (!real) {
    port = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'sluice-kafka-emu-'));
    writeFileSync(join(dir, 'kafka.yaml'), asyncapi(port, topics));
    await startEmulator();
  }
  const brokers = real ? REAL_BROKERS! : `127.0.0.1:${port}`;
  const kafka = new Kafka({ clientId: 'sluice-test', brokers: brokers.split(','), logLevel: logLevel.NOTHING, retry: { retries: 3 } });
  let admin: Admin | undefined;
  let producer: Producer | undefined;
  const getAdmin = async () => {
    if (!admin) {
      admin = kafka.admin();
      await admin.connect();
    }
    return admin;
  };
  const getProducer = async () => {
    if (!producer) {
      producer = kafka.producer({ allowAutoTopicCreation: false });
      await producer.connect();
    }
    return producer;
  };
  const resetClients = async () => {
    await admin?.disconnect().catch(() => undefined);
    await producer?.disconnect().catch(() => undefined);
    admin = undefined;
    producer = undefined;
  };

  const b: TestBroker = {
    brokers,
    real,
    async createTopic(name, partitions = 1) {
      if (real) {
        await (await getAdmin()).createTopics({ topics: [{ topic: name, numPartitions: partitions }], waitForLeaders: true });
        created.push(name);
      } else {
        topics.set(name, partitions);
        writeFileSync(join(dir, 'kafka.yaml'), asyncapi(port, topics));
      }
      await until(async () => {
        const a = await getAdmin();
        if (!(await a.listTopics()).includes(name)) return false;
        const m = await a.fetchTopicMetadata({ topics: [name] });
        return m.topics[0]?.partitions.length === partitions;
      }, `topic '${name}' to appear`, 15_000);
    },
    async produce(topic, messages) {
      await (await getProducer()).sendBatch({ topicMessages: [{ topic, messages }] });
    },
    async readTopic(topic, count, timeoutMs = 20_000) {
      const consumer = kafka.consumer({ groupId: uniqueName('reader'), maxWaitTimeInMs: 100 });
      const out: Awaited<ReturnType<TestBroker['readTopic']>> = [];
      let finish!: () => void;
      const done = new Promise<void>((r) => (finish = r));
      const timer = setTimeout(finish, timeoutMs);
      try {
        await consumer.connect();
        await consumer.subscribe({ topics: [topic], fromBeginning: true });
        await consumer.run({
          eachBatch: async ({ batch }) => {
            for (const m of batch.messages) {
              const headers: Record<string, string> = {};
              for (const [k, v] of Object.entries(m.headers ?? {})) if (v !== undefined) headers[k] = String(Array.isArray(v) ? v[0] : v);
              out.push({ partition: batch.partition, offset: m.offset, key: m.key ? m.key.toString() : null, value: m.value ? m.value.toString() : '', headers, timestamp: m.timestamp });
            }
            if (out.length >= count) finish();
          },
        });
        if (count === 0) finish();
        await done;
      } finally {
        clearTimeout(timer);
        await consumer.disconnect().catch(() => undefined);
      }
      return out;
    },
    async committed(group, topic) {
      const res = await (await getAdmin()).fetchOffsets({ groupId: group, topics: [topic] });
      const out: Record<number, string> = {};
      for (const p of res[0]?.partitions ?? []) out[p.partition] = p.offset;
      return out;
    },
    async kill() {
      if (real) throw new Error('cannot kill a real cluster');
      await resetClients();
      await killChild(child);
      child = undefined;
      await until(async () => !(await portOpen(port)), `port ${port} to close`, 10_000);
    },
    async start() {
      if (real || child) return;
      await startEmulator();
    },
    async stop() {
      try {
        if (real && created.length) await (await getAdmin()).deleteTopics({ topics: created }).catch(() => undefined);
        await resetClients();
      } finally {
        await killChild(child);
        child = undefined;
        if (dir) rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  return b;
}

/** SIGTERM, then SIGKILL after a bound. */
async function killChild(c: ChildProcess | undefined): Promise<void> {
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(t);
}
