// Webhook ingest, records/s: 100 NDJSON records per request (see webhook-ingest.shared.mjs).
import { webhookScenario } from './webhook-ingest.shared.mjs';

export default webhookScenario({ name: 'webhook->blackhole (records)', perRequest: 100, concurrency: 8, records: 1_000_000 });
