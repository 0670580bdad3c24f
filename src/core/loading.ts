// Connector and format modules load on first use (issue 9: a `sluice run` must not load all of them to start). Their
// specs are needed synchronously (compiling a config, starting a pipeline), so an entry point loads what a config
// names before it compiles: with `whenLoaded`, which also catches what the compiler meets that no name in the text
// gave away (a connector's default format), loads it and compiles again.

import { SluiceError } from './errors.js';

/** A connector or format used before its module was loaded; `load()` loads it. An entry point forgot to preload. */
export class NotLoadedError extends SluiceError {
  constructor(
    readonly what: string,
    readonly load: () => Promise<unknown>,
  ) {
    super('INTERNAL', `${what} is used before its module was loaded: await loadConnectors()/loadFormats() (or compile inside whenLoaded) first`);
    this.name = 'NotLoadedError';
  }
}

/**
 * Runs a synchronous step (compiling a config) and, each time it stops at a connector or format that is not loaded
 * yet, loads that one and runs the step again. The step must not have side effects that a second run would repeat.
 */
export async function whenLoaded<T>(step: () => T): Promise<T> {
  const seen = new Set<string>();
  for (;;) {
    try {
      return step();
    } catch (e) {
      if (!(e instanceof NotLoadedError) || seen.has(e.what)) throw e;
      seen.add(e.what);
      await e.load();
    }
  }
}

/**
 * Each key's module loaded at most once: `load` starts it (or returns the load under way), `get` gives what has
 * loaded, `preset` records one that needs no loading. The connector registry and the format table keep theirs here.
 */
export function onDemand<K, V>(loadOne: (key: K) => Promise<V>): { load(key: K): Promise<V>; get(key: K): V | undefined; preset(key: K, value: V): void } {
  const loaded = new Map<K, V>();
  const loading = new Map<K, Promise<V>>();
  return {
    load(key) {
      let p = loading.get(key);
      if (!p) {
        p = loadOne(key).then((v) => {
          loaded.set(key, v);
          return v;
        });
        loading.set(key, p);
      }
      return p;
    },
    get: (key) => loaded.get(key),
    preset(key, value) {
      loaded.set(key, value);
      loading.set(key, Promise.resolve(value));
    },
  };
}
