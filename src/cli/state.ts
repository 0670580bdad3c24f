// The state store of `sluice run` and `preview`, opened on first use. Many pipelines keep no state at all (a
// generator, stdout, a plain WebSocket source), and opening SQLite (better-sqlite3's native module, the file, WAL
// mode) is about 20 ms of start-up before the first record (issue 9); pipelines that do keep state open it when their
// connector first reads or writes, before the first position is committed.

import { SluiceError, errorMessage } from '../core/errors.js';
import type { StateStore } from '../core/state.js';
import type { StateScope } from '../core/types.js';

export function lazySqliteStateStore(path: string): StateStore {
  let opened: Promise<StateStore> | undefined;
  const open = () =>
    (opened ??= import('../core/state.js').then(
      (m) => {
        try {
          return m.sqliteStateStore(path);
        } catch (e) {
          throw new SluiceError('INTERNAL', `cannot open the state store ${path}: ${errorMessage(e)}`, { cause: e });
        }
      },
    ));
  return {
    scope(pipeline, name): StateScope {
      let scope: Promise<StateScope> | undefined;
      const s = () => (scope ??= open().then((store) => store.scope(pipeline, name)));
      return {
        get: async (k) => (await s()).get(k),
        set: async (k, v) => (await s()).set(k, v),
        delete: async (k) => (await s()).delete(k),
        entries: async () => (await s()).entries(),
      };
    },
    async close() {
      // Never opened, or failed to open (the pipeline that needed it has reported that): nothing to close.
      const store = await opened?.catch(() => undefined);
      await store?.close();
    },
  };
}
