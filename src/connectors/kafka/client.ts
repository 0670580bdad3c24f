// The one place that touches the Kafka client library. The connector is written against the KafkaJS API surface
// (Kafka -> producer / consumer / admin); `@confluentinc/kafka-javascript` implements the same surface, so a second
// backend only needs another `KafkaBackend` here.

import kafkajs from 'kafkajs';
import type { Admin, Consumer, ConsumerConfig, KafkaConfig, LogEntry, Producer, ProducerConfig, SASLOptions } from 'kafkajs';
import type { Logger } from 'pino';
import { SluiceError, errorMessage } from '../../core/errors.js';
import { resolveSecurity, type ConnectionOptions } from './options.js';

export type { Admin, Consumer, Producer, EachBatchPayload, KafkaMessage, Message, IHeaders, Transaction } from 'kafkajs';

const { Kafka, logLevel, CompressionTypes, Partitioners } = kafkajs;
export { CompressionTypes, Partitioners };

export interface KafkaClient {
  producer(config?: ProducerConfig): Producer;
  consumer(config: ConsumerConfig): Consumer;
  admin(): Admin;
}

export interface KafkaBackend {
  readonly name: string;
  client(options: ConnectionOptions, log: Logger): KafkaClient;
}

/** KafkaJS's own log lines, at debug in our logger; it never writes to the console. */
function logCreator(log: Logger): KafkaConfig['logCreator'] {
  return () =>
    ({ namespace, label, log: entry }: LogEntry) => {
      if (!log.isLevelEnabled('debug')) return;
      const { message, timestamp: _t, logger: _l, stack: _s, ...rest } = entry as LogEntry['log'] & { stack?: string; logger?: string };
      // Only scalar fields: request payloads could carry record contents or SASL exchanges.
      const fields: Record<string, unknown> = { kafkajs: namespace, kafkajs_level: label };
      for (const [k, v] of Object.entries(rest)) if (v === null || ['string', 'number', 'boolean'].includes(typeof v)) fields[k] = v;
      log.debug(fields, message);
    };
}

/** The KafkaJS client configuration for our connection options (security resolved, PEM files read). */
export function kafkaConfig(o: ConnectionOptions, log: Logger): KafkaConfig {
  const sec = resolveSecurity(o);
  const cfg: KafkaConfig = {
    clientId: o.client_id,
    brokers: o.brokers,
    connectionTimeout: o.connection_timeout,
    requestTimeout: o.request_timeout,
    retry: { retries: o.retries, initialRetryTime: 300, maxRetryTime: 10_000 },
    logLevel: logLevel.DEBUG,
    logCreator: logCreator(log),
  };
  if (sec.tls) cfg.ssl = sec.tls;
  if (sec.sasl) cfg.sasl = { mechanism: sec.sasl.mechanism, username: sec.sasl.username, password: sec.sasl.password } as SASLOptions;
  return cfg;
}

export const kafkajsBackend: KafkaBackend = {
  name: 'kafkajs',
  client(options, log) {
    const k = new Kafka(kafkaConfig(options, log));
    return {
      producer: (c) => k.producer(c),
      consumer: (c) => k.consumer(c),
      admin: () => k.admin(),
    };
  },
};

/** The backend connectors use; tests may swap it. */
export let backend: KafkaBackend = kafkajsBackend;
export function setBackend(b: KafkaBackend): void {
  backend = b;
}

/** Whether a client error may go away by itself (a broker restarting, a leader moving, a rebalance). */
export function isRetriable(e: unknown): boolean {
  const err = e as { retriable?: boolean; name?: string } | undefined;
  if (!err) return false;
  if (err.name === 'KafkaJSSASLAuthenticationError') return false;
  // KafkaJS marks "retries exhausted" as not retriable (it retried already); for a pipeline, a broker that stayed
  // away for the client's retries may well come back, so the pipeline's own backoff should try again.
  if (/Connection|Timeout|NoBrokerAvailable|NumberOfRetriesExceeded|Network/.test(err.name ?? '')) return true;
  // KafkaJS wraps a refused connection in a non-retriable error once its own retries are spent.
  if (/ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|Connection error|Connection timeout/i.test(rootCause(e))) return true;
  return err.retriable ?? false;
}

/** A client error as ours, naming the brokers and the cause; authentication failures are permanent. */
export function connectError(e: unknown, o: ConnectionOptions, what: string): SluiceError {
  const name = (e as { name?: string })?.name ?? '';
  const cause = rootCause(e);
  if (name === 'KafkaJSSASLAuthenticationError' || /SASL|authentication/i.test(cause)) {
    return new SluiceError('AUTH', `${what}: brokers ${o.brokers.join(',')} refused the SASL credentials of user '${o.username ?? o.authentication?.username ?? ''}': ${cause}`, { cause: e });
  }
  if (/certificate|self.signed|SSL|TLS|EPROTO/i.test(cause)) {
    return new SluiceError('CONNECT', `${what}: TLS with brokers ${o.brokers.join(',')} failed: ${cause}`, {
      cause: e,
      hint: 'check tls.ca, or whether the brokers speak TLS at all (tls.disable)',
    });
  }
  return new SluiceError('CONNECT', `${what}: cannot reach Kafka brokers ${o.brokers.join(',')} (after ${o.retries} retries): ${cause}`, {
    cause: e,
    retriable: true,
    hint: 'check that the brokers are running and reachable at these addresses',
  });
}

/** KafkaJS wraps the interesting error (ECONNREFUSED, a broker's error code) in retry errors. */
export function rootCause(e: unknown): string {
  let cur = e as { originalError?: unknown; cause?: unknown; message?: string } | undefined;
  for (let i = 0; i < 5 && cur && (cur.originalError || cur.cause); i++) cur = (cur.originalError ?? cur.cause) as typeof cur;
  return errorMessage(cur ?? e);
}
