import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { lazySqliteStateStore } from './state.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'sluice-lazy-state-'));
  dirs.push(d);
  return d;
};

describe('lazySqliteStateStore', () => {
  it('opens nothing until a scope is read or written, then keeps state like the SQLite store', async () => {
    const path = join(tmp(), 'data', 'state.db');
    const store = lazySqliteStateStore(path);
    const s = store.scope('p', 'source');
    expect(existsSync(path)).toBe(false);
    expect(await s.get('offset')).toBeUndefined();
    expect(existsSync(path)).toBe(true);
    await s.set('offset', { n: 3 });
    await store.close();
    const again = lazySqliteStateStore(path);
    expect(await again.scope('p', 'source').get('offset')).toEqual({ n: 3 });
    expect(await again.scope('p', 'sink').entries()).toEqual([]);
    await again.close();
  });

  it('closing a store that was never opened does nothing', async () => {
    const path = join(tmp(), 'state.db');
    await lazySqliteStateStore(path).close();
    expect(existsSync(path)).toBe(false);
  });

  it('a store that cannot be opened fails the first read, naming its path', async () => {
    const blocker = join(tmp(), 'not-a-dir');
    writeFileSync(blocker, '');
    const store = lazySqliteStateStore(join(blocker, 'state.db'));
    await expect(store.scope('p', 'source').get('k')).rejects.toThrow(`cannot open the state store ${join(blocker, 'state.db')}`);
    await store.close();
  });
});
