// Loads the connector and format modules a config document names before it is compiled (compiling is synchronous and
// needs their option schemas; they load on first use, see src/core/loading.ts).

import { loadConnectors } from '../connectors/index.js';
import { loadFormats } from '../formats/index.js';
import { whenLoaded } from '../core/loading.js';

// The keys under which a document names a connector or a format, aliases included (src/config/compile.ts). A string
// found elsewhere is not looked at; what this misses (a connector's default format) `whenLoaded` loads on demand.
const CONNECTOR_KEYS = new Set(['connector', 'driver', 'type']);
const FORMAT_KEYS = new Set(['format', 'data_type', 'encoding']);

/** The strings a parsed document has in its connector and format places, at any depth (unknown names included). */
export function namesIn(doc: unknown): { connectors: Set<string>; formats: Set<string> } {
  const connectors = new Set<string>();
  const formats = new Set<string>();
  const walk = (v: unknown, depth: number): void => {
    if (depth > 64 || v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) {
      for (const x of v) walk(x, depth + 1);
      return;
    }
    for (const [k, x] of Object.entries(v)) {
      if (CONNECTOR_KEYS.has(k) && typeof x === 'string') connectors.add(x);
      if (FORMAT_KEYS.has(k)) {
        // `format: csv`, `format: {name: csv, ...}` or `format: {csv: {...}}`
        if (typeof x === 'string') formats.add(x);
        else if (x && typeof x === 'object' && !Array.isArray(x)) {
          for (const [fk, fv] of Object.entries(x)) formats.add(fk === 'name' && typeof fv === 'string' ? fv : fk);
        }
      }
      walk(x, depth + 1);
    }
  };
  walk(doc, 0);
  return { connectors, formats };
}

/** Loads what `doc` names, then runs the synchronous `compile` (again, for whatever it meets that was not loaded). */
export async function compileWhenLoaded<T>(doc: unknown, compile: () => T): Promise<T> {
  const { connectors, formats } = namesIn(doc);
  return loadThenCompile(connectors, formats, compile);
}

/**
 * Loads the connectors and formats with these names (other strings are ignored), then runs the synchronous `compile`
 * (again, for whatever it meets that was not loaded).
 */
export async function loadThenCompile<T>(connectors: Iterable<string>, formats: Iterable<string>, compile: () => T): Promise<T> {
  await Promise.all([loadConnectors(connectors), loadFormats(formats)]);
  return whenLoaded(compile);
}
