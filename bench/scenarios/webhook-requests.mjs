// Webhook ingest, requests/s: one record per request (see webhook-ingest.shared.mjs).
import { webhookScenario } from './webhook-ingest.shared.mjs';

export default webhookScenario({ name: 'webhook->blackhole (requests)', perRequest: 1, concurrency: 32, records: 50_000 });
