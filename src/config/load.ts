// YAML pipeline files, loaded synchronously with their transforms checked (the SQL compiler is imported here). The
// CLI uses yaml.ts directly and loads the SQL compiler only for files that have a transform, and only the connectors
// and formats a file names. This module is the synchronous entry for tests, the bench and embedders: importing it
// loads every connector and format, so that its functions never meet one that is not loaded.

import { checkTransform } from '../sql/runtime.js';
import { loadConnectors } from '../connectors/index.js';
import { loadFormats } from '../formats/index.js';
import type { CompiledDocument } from './compile.js';
import { parseConfigText, readConfigFile, type LoadOptions } from './yaml.js';

export type { LoadOptions } from './yaml.js';

await Promise.all([loadConnectors(), loadFormats()]);

/** Load and compile one YAML file; throws ConfigError listing every problem. */
export function loadConfigFile(file: string, o: LoadOptions = {}): CompiledDocument {
  return loadConfigText(readConfigFile(file), file, o);
}

export function loadConfigText(text: string, file: string, o: LoadOptions = {}): CompiledDocument {
  const parsed = parseConfigText(text, file, o);
  parsed.checkTransforms(checkTransform);
  return parsed.doc;
}
