// websocket->file-jsonl with schema validation on (issue 3's stated target): the same feed and file sink, the Sluice
// pipeline declaring the schema of websocket->blackhole+schema. The bare program is websocket->file-jsonl's, which
// validates nothing, so this measures what validation and re-encoding the coerced rows cost against plain JSON.

import { fileScenario } from './websocket-file-jsonl.mjs';
import { SCHEMA } from './websocket-blackhole-schema.mjs';

export default fileScenario({ name: 'websocket->file-jsonl+schema', schema: SCHEMA });
