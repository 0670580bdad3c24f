// Integration tests talk to the real servers this machine runs (PostgreSQL, MariaDB, Redis, RabbitMQ, Mosquitto, NATS).
// `ensureService` finds a stopped one, starts it with the machine's documented command, and otherwise fails with a
// message saying how to start it: a test never skips silently because a server is down.

import { execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { readdirSync } from 'node:fs';

export type ServiceName = 'postgres' | 'mariadb' | 'redis' | 'rabbitmq' | 'mosquitto' | 'nats';

interface ServiceInfo {
  port: number;
  /** The start command as documented for this machine kind. */
  start(): string;
}

const SERVICES: Record<ServiceName, ServiceInfo> = {
  postgres: {
    port: 5432,
    start: () => {
      let version = '15';
      try {
        version = readdirSync('/etc/postgresql')[0] ?? version;
      } catch {
        /* keep the default */
      }
      return `pg_ctlcluster --skip-systemctl-redirect ${version} main start`;
    },
  },
  mariadb: { port: 3306, start: () => 'start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd' },
  redis: {
    port: 6379,
    start: () =>
      'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log',
  },
  rabbitmq: { port: 5672, start: () => 'rabbitmq-server -detached' },
  mosquitto: { port: 1883, start: () => 'mosquitto -d -c /etc/mosquitto/mosquitto.conf' },
  nats: {
    port: 4222,
    start: () =>
      'start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log',
  },
};

export function servicePort(name: ServiceName): number {
  return SERVICES[name].port;
}

export function serviceStartCommand(name: ServiceName): string {
  return SERVICES[name].start();
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function portOpen(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

async function waitForPort(port: number, open: boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if ((await portOpen(port, '127.0.0.1', 500)) === open) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

/** Make sure the service is up, starting it if needed; throws with the start command when that fails. */
export async function ensureService(name: ServiceName, timeoutMs = 60_000): Promise<void> {
  const { port } = SERVICES[name];
  if (await portOpen(port)) return;
  const cmd = serviceStartCommand(name);
  try {
    execFileSync('bash', ['-c', cmd], { stdio: 'pipe', timeout: timeoutMs });
  } catch (e) {
    throw new Error(`${name} is not running on 127.0.0.1:${port} and starting it failed (${(e as Error).message.split('\n')[0]}); start it with: ${cmd}`);
  }
  if (!(await waitForPort(port, true, timeoutMs))) {
    throw new Error(`${name} is not accepting connections on 127.0.0.1:${port} ${timeoutMs / 1000}s after '${cmd}'; check its log`);
  }
}

/** Stop a service abruptly (for broker-restart tests) and return a function that starts it again and waits. */
export async function stopService(name: ServiceName, stopCommand: string, timeoutMs = 60_000): Promise<() => Promise<void>> {
  const { port } = SERVICES[name];
  execFileSync('bash', ['-c', stopCommand], { stdio: 'pipe', timeout: timeoutMs });
  if (!(await waitForPort(port, false, timeoutMs))) throw new Error(`${name} still accepts connections after '${stopCommand}'`);
  return () => ensureService(name, timeoutMs);
}
