// Every test file runs with every connector and format loaded, as a library user has them after
// `await loadConnectors(); await loadFormats()`: tests call findConnector, createFormat and the synchronous config
// loaders directly. The CLI and the server load only what a config names (src/core/loading.ts); their own tests, and
// test/startup.test.ts, check that path in processes of their own.

import { loadConnectors } from '../../src/connectors/index.js';
import { loadFormats } from '../../src/formats/index.js';

await Promise.all([loadConnectors(), loadFormats()]);
