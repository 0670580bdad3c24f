import { describe, expect, it } from 'vitest';
import { describeOptions, parseOptions, shapeOf } from '../../core/spec.js';
import type { SluiceRecord, SourceBatch, SourceContext } from '../../core/types.js';
import { collectSource, testContext } from '../../testing/harness.js';
import { GeneratorSource, spec, templateForAlias, TEMPLATES, type GeneratorConfig } from './index.js';

const factory = spec.source!;

function config(input: Record<string, unknown>): GeneratorConfig {
  const r = parseOptions(factory.options, input);
  if (!r.ok) throw new Error(r.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n'));
  return r.value as GeneratorConfig;
}

function source(input: Record<string, unknown>): GeneratorSource {
  return factory.create(config(input), { format: 'json' }) as GeneratorSource;
}

function issues(input: Record<string, unknown>) {
  const r = parseOptions(factory.options, input);
  return r.ok ? [] : r.issues;
}

const PATTERN = { device: 'sensor-01', temperature: 21.5, humidity: 50, on: true, unit: ['C', 'F'] };

/** A context whose emit is supplied by the test, for backpressure and abort tests. */
function manualContext(emit: (b: SourceBatch) => Promise<void> | undefined, signal = new AbortController().signal): SourceContext {
  return {
    ...testContext('source', { signal }),
    emit,
    bad() {},
    decoder() {
      throw new Error('no decoder');
    },
  };
}

const activeTimeouts = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe('generator spec', () => {
  it('is a source only, with the aliases and metadata', () => {
    expect(spec.name).toBe('generator');
    expect(spec.aliases).toEqual(['stream_generator', 'impulse', 'nexmark', 'random']);
    expect(spec.sink).toBeUndefined();
    expect(factory.defaultFormat).toBe('json');
    expect(factory.replayable).toBe(false);
    expect(Object.keys(factory.metadata ?? {})).toContain('_offset');
  });

  it('maps connector aliases to templates', () => {
    expect(templateForAlias('impulse')).toBe('impulse');
    expect(templateForAlias('nexmark')).toBe('nexmark');
    expect(templateForAlias('random')).toBe('random');
    expect(templateForAlias('stream_generator')).toBeUndefined();
    expect(templateForAlias('generator')).toBeUndefined();
    expect(templateForAlias('toString')).toBeUndefined();
  });

  it('describes every option, nested ones included', () => {
    expect(shapeOf(factory.options)).toBeDefined();
    const walk = (docs: ReturnType<typeof describeOptions>): void => {
      for (const d of docs) {
        expect(d.description, d.name).not.toBe('');
        if (d.children) walk(d.children);
      }
    };
    const docs = describeOptions(factory.options);
    walk(docs);
    expect(docs.map((d) => d.name)).toEqual(
      expect.arrayContaining(['template', 'interval', 'event_rate', 'count', 'seed', 'pattern', 'batch_size', 'nexmark', 'start_time']),
    );
    expect(docs.find((d) => d.name === 'count')!.aliases).toEqual(['message_count', 'max_events']);
  });
});

describe('options', () => {
  it('applies defaults', () => {
    const c = config({});
    expect(c.template).toBe('iot');
    expect(c.interval).toBe(200);
    expect(c.batchSize).toBe(1000);
    expect(c.count).toBeUndefined();
    expect(c.nexmark.eventTypes).toEqual(['person', 'auction', 'bid']);
  });

  it('accepts the seeds’ spellings', () => {
    expect(config({ message_count: 5 }).count).toBe(5);
    expect(config({ max_events: 6 }).count).toBe(6);
    expect(config({ event_rate: 100 }).interval).toBe(10);
    expect(config({ events_per_second: 4 }).interval).toBe(250);
    expect(config({ rate: '2' }).interval).toBe(500);
    expect(config({ interval: '1s' }).interval).toBe(1000);
    expect(config({ interval: 0 }).interval).toBe(0);
    expect(config({ 'nexmark.event_types': 'bid,person', template: 'nexmark' }).nexmark.eventTypes).toEqual(['bid', 'person']);
  });

  it('infers template random from a pattern', () => {
    expect(config({ pattern: PATTERN }).template).toBe('random');
  });

  it('parses start_time', () => {
    expect(config({ start_time: '2024-01-01T00:00:00Z' }).startTime).toBe(Date.UTC(2024, 0, 1));
    expect(config({ start_time: 1_700_000_000_000 }).startTime).toBe(1_700_000_000_000);
    const bad = issues({ start_time: 'yesterday-ish' });
    expect(bad[0]!.path).toEqual(['start_time']);
  });

  it('names the option in a bad duration', () => {
    const bad = issues({ interval: 'fast' });
    expect(bad).toHaveLength(1);
    expect(bad[0]!.path).toEqual(['interval']);
    expect(bad[0]!.message).toMatch(/'fast' is not a duration/);
  });

  it('suggests the option meant by an unknown key', () => {
    const bad = issues({ intervall: '1s' });
    expect(bad[0]!.path).toEqual(['intervall']);
    expect(bad[0]!.message).toMatch(/did you mean 'interval'/);
    expect(issues({ message_cnt: 3 })[0]!.message).toMatch(/did you mean 'message_count'/);
  });

  it('rejects inconsistent settings', () => {
    expect(issues({ template: 'random' })[0]!.message).toMatch(/needs a pattern/);
    expect(issues({ template: 'iot', pattern: PATTERN })[0]!.path).toEqual(['pattern']);
    expect(issues({ template: 'iot', nexmark: { first_event_id: 3 } })[0]!.path).toEqual(['nexmark']);
    expect(issues({ event_rate: 0 })[0]!.path).toEqual(['event_rate']);
    expect(issues({ count: 0 })[0]!.path).toEqual(['count']);
    expect(issues({ count: 1.5 })[0]!.path).toEqual(['count']);
    expect(issues({ template: 'weather' })[0]!.message).toMatch(/must be one of/);
    expect(issues({ template: 'nexmark', nexmark: { event_types: ['bids'] } })[0]!.path).toEqual(['nexmark', 'event_types', 0]);
  });
});

describe('finite generation', () => {
  const shapes: Record<string, string[]> = {
    iot: ['device', 'region', 'temperature', 'humidity', 'status', 'ts'],
    user_logins: ['user_id', 'username', 'ip', 'country', 'success', 'ts'],
    devops: ['host', 'service', 'cpu', 'memory', 'latency_ms', 'status_code', 'ts'],
    impulse: ['counter', 'subtask_index'],
    nexmark: ['event_type', 'person', 'auction', 'bid'],
    random: Object.keys(PATTERN),
    sequence: ['id'],
  };

  for (const template of TEMPLATES) {
    it(`emits exactly count records for ${template}`, async () => {
      const extra = template === 'random' ? { pattern: PATTERN } : {};
      const out = await collectSource(source({ template, count: 2345, interval: 0, batch_size: 1000, ...extra }));
      expect(out.records).toHaveLength(2345);
      expect(out.batches.map((b) => b.records.length)).toEqual([1000, 1000, 345]);
      expect(out.batches.every((b) => b.decoded === true)).toBe(true);
      expect(out.committed).toEqual([{ seq: 999 }, { seq: 1999 }, { seq: 2344 }]);
      for (const r of out.records.slice(0, 50)) {
        expect(Object.keys(r.value as object)).toEqual(shapes[template]);
        expect(typeof r.timestamp).toBe('number');
      }
      expect(out.records.map((r) => r.meta!._offset)).toEqual(Array.from({ length: 2345 }, (_, i) => i));
    });
  }

  it('writes ts as an ISO string matching the record timestamp', async () => {
    const out = await collectSource(source({ template: 'iot', count: 5, interval: 0, start_time: '2024-05-01T12:00:00Z' }));
    for (const r of out.records) expect((r.value as { ts: string }).ts).toBe(new Date(r.timestamp!).toISOString());
  });

  it('numbers sequence and impulse rows from 0', async () => {
    const seq = await collectSource(source({ template: 'sequence', count: 3, interval: 0 }));
    expect(seq.records.map((r) => r.value)).toEqual([{ id: 0 }, { id: 1 }, { id: 2 }]);
    const imp = await collectSource(source({ template: 'impulse', count: 2, interval: 0 }));
    expect(imp.records.map((r) => r.value)).toEqual([
      { counter: 0, subtask_index: 0 },
      { counter: 1, subtask_index: 0 },
    ]);
  });

  it('keeps the 1:3:46 Nexmark mix and consistent ids', async () => {
    const out = await collectSource(source({ template: 'nexmark', count: 5000, interval: 0, seed: 3 }));
    const rows = out.records.map((r) => r.value as any);
    const kinds = { person: 0, auction: 0, bid: 0 } as Record<string, number>;
    for (const r of rows) kinds[r.event_type]!++;
    expect(kinds).toEqual({ person: 100, auction: 300, bid: 4600 });
    let maxAuction = 0;
    let maxPerson = 0;
    for (const r of rows) {
      if (r.person) maxPerson = r.person.id;
      if (r.auction) {
        expect(r.auction.id).toBe(maxAuction ? maxAuction + 1 : 1000);
        maxAuction = r.auction.id;
        expect(r.auction.seller).toBeLessThanOrEqual(maxPerson);
        expect(r.auction.reserve).toBeGreaterThan(r.auction.initial_bid);
      }
      if (r.bid) {
        expect(r.bid.auction).toBeLessThanOrEqual(maxAuction);
        expect(r.bid.bidder).toBeLessThanOrEqual(maxPerson);
      }
    }
  });

  it('filters Nexmark event types without renumbering', async () => {
    const out = await collectSource(
      source({ template: 'nexmark', count: 60, interval: 0, nexmark: { event_types: ['person', 'auction'] } }),
    );
    const rows = out.records.map((r) => r.value as any);
    expect(rows).toHaveLength(60);
    expect(rows.every((r) => r.event_type !== 'bid')).toBe(true);
    expect(rows.filter((r) => r.person).map((r) => r.person.id).slice(0, 3)).toEqual([1000, 1001, 1002]);
    expect(rows.filter((r) => r.auction).map((r) => r.auction.id).slice(0, 4)).toEqual([1000, 1001, 1002, 1003]);
  });

  it('varies a pattern around its example values', async () => {
    const pattern = { id: 'dev-007', temp: 20.25, level: 50, neg: -10, zero: 0, on: true, unit: ['C', 'F'], label: 'celsius', at: '2024-01-01T00:00:00Z', loc: { lat: 45.5, name: 'x' } };
    const out = await collectSource(source({ pattern, count: 500, interval: 0, seed: 9, start_time: 0, event_time_interval: '1s' }));
    const rows = out.records.map((r) => r.value as any);
    for (const [i, r] of rows.entries()) {
      expect(r.id).toMatch(/^dev-\d{3}$/);
      expect(r.temp).toBeGreaterThanOrEqual(0);
      expect(r.temp).toBeLessThanOrEqual(40.5);
      expect(Number.isInteger(r.level) && r.level >= 0 && r.level <= 100).toBe(true);
      expect(r.neg >= -20 && r.neg <= 0).toBe(true);
      expect(r.zero).toBe(0);
      expect(typeof r.on).toBe('boolean');
      expect(['C', 'F']).toContain(r.unit);
      expect(r.label).toBe('celsius');
      expect(r.at).toBe(new Date(i * 1000).toISOString());
      expect(r.loc.name).toBe('x');
      expect(r.loc.lat >= 0 && r.loc.lat <= 91).toBe(true);
    }
    expect(new Set(rows.map((r) => r.on)).size).toBe(2);
    expect(new Set(rows.map((r) => r.level)).size).toBeGreaterThan(30);
    expect(new Set(rows.map((r) => r.id)).size).toBeGreaterThan(30);
  });
});

describe('reproducibility', () => {
  const values = (rs: SluiceRecord[]) => rs.map((r) => r.value);

  for (const template of ['iot', 'user_logins', 'devops', 'nexmark', 'random'] as const) {
    it(`same seed gives identical ${template} records, another seed different ones`, async () => {
      const base = { template, count: 300, interval: 0, start_time: '2024-01-01T00:00:00Z', ...(template === 'random' ? { pattern: PATTERN } : {}) };
      const a = await collectSource(source({ ...base, seed: 42 }));
      const b = await collectSource(source({ ...base, seed: 42, batch_size: 7 }));
      const c = await collectSource(source({ ...base, seed: 43 }));
      expect(b.records).toEqual(a.records);
      expect(values(c.records)).not.toEqual(values(a.records));
    });
  }

  it('without a seed, two runs differ', async () => {
    const a = await collectSource(source({ template: 'iot', count: 50, interval: 0 }));
    const b = await collectSource(source({ template: 'iot', count: 50, interval: 0 }));
    expect(values(a.records)).not.toEqual(values(b.records));
  });

  it('uses a logical clock when start_time or event_time_interval is set', async () => {
    const a = await collectSource(source({ template: 'sequence', count: 4, interval: 0, start_time: 1000, event_time_interval: '1s' }));
    expect(a.records.map((r) => r.timestamp)).toEqual([1000, 2000, 3000, 4000]);
    const b = await collectSource(source({ template: 'sequence', count: 3, interval: 0, start_time: 5 }));
    expect(b.records.map((r) => r.timestamp)).toEqual([5, 6, 7]);
  });

  it('stamps wall-clock time when nothing fixes the clock', async () => {
    const before = Date.now();
    const out = await collectSource(source({ template: 'sequence', count: 10, interval: 0 }));
    for (const r of out.records) expect(r.timestamp).toBeGreaterThanOrEqual(before);
    expect(out.records.at(-1)!.timestamp).toBeLessThanOrEqual(Date.now());
  });
});

describe('pacing', () => {
  it('spaces events by the interval', async () => {
    const t0 = performance.now();
    const out = await collectSource(source({ template: 'sequence', count: 20, interval: '10ms' }));
    const elapsed = performance.now() - t0;
    expect(out.records).toHaveLength(20);
    // The 20th event is due 190ms after the first.
    expect(elapsed).toBeGreaterThanOrEqual(180);
    const ts = out.records.map((r) => r.timestamp!);
    for (let i = 1; i < ts.length; i++) expect(ts[i]! - ts[i - 1]!).toBe(10);
  });

  it('paces by event_rate', async () => {
    const t0 = performance.now();
    const out = await collectSource(source({ template: 'impulse', message_count: 6, event_rate: 50 }));
    expect(out.records).toHaveLength(6);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(90);
  });

  it('catches up in one batch after a stall instead of drifting', async () => {
    const sizes: number[] = [];
    let calls = 0;
    const src = source({ template: 'sequence', count: 40, interval: '5ms' });
    const t0 = performance.now();
    await src.run(
      manualContext((b) => {
        sizes.push(b.records.length);
        // Stall the second batch for 100ms: about 20 events fall due meanwhile.
        return ++calls === 2 ? delay(100) : undefined;
      }),
    );
    const elapsed = performance.now() - t0;
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(40);
    expect(Math.max(...sizes)).toBeGreaterThanOrEqual(10);
    // Without drift the stall is absorbed: 40 events at 5ms still take about 195ms, not 195 + 100.
    expect(elapsed).toBeGreaterThanOrEqual(180);
    expect(sizes.length).toBeLessThan(40);
  });

  it('emits each event when due rather than filling a batch', async () => {
    const out = await collectSource(source({ template: 'sequence', count: 5, interval: '20ms', batch_size: 1000 }));
    expect(out.records).toHaveLength(5);
    expect(out.batches.length).toBeGreaterThanOrEqual(2);
  });
});

describe('stopping', () => {
  it('stops promptly on abort and leaves no timers behind', async () => {
    const ac = new AbortController();
    const seen: number[] = [];
    const src = source({ template: 'iot', interval: '1h' });
    const running = src.run(manualContext((b) => void seen.push(b.records.length), ac.signal));
    await delay(30);
    expect(seen).toEqual([1]); // the first event is due immediately, the next in an hour
    const during = activeTimeouts(); // includes the generator's hour-long wait
    const t0 = performance.now();
    ac.abort();
    await running;
    expect(performance.now() - t0).toBeLessThan(500);
    expect(activeTimeouts()).toBe(during - 1);
  });

  it('stops an endless fast generator', async () => {
    const out = await collectSource(source({ template: 'sequence', interval: 0 }), { limit: 5000, autoCommit: false });
    expect(out.records.length).toBeGreaterThanOrEqual(5000);
    expect(out.records.length).toBeLessThanOrEqual(5000 + 1000);
  });

  it('stops on timeout with the default interval', async () => {
    const t0 = performance.now();
    const out = await collectSource(source({ template: 'devops' }), { timeoutMs: 450 });
    expect(performance.now() - t0).toBeLessThan(2000);
    // Due at 0, 200 and 400ms.
    expect(out.records.length).toBeGreaterThanOrEqual(2);
  });

  it('does not start when already aborted', async () => {
    const ac = new AbortController();
    ac.abort();
    let calls = 0;
    await source({ template: 'sequence', interval: 0 }).run(manualContext(() => void calls++, ac.signal));
    expect(calls).toBe(0);
  });
});

describe('backpressure', () => {
  it('waits for a pending emit before generating more', async () => {
    let release!: () => void;
    let calls = 0;
    const src = source({ template: 'sequence', count: 3000, interval: 0, batch_size: 1000 });
    const running = src.run(
      manualContext(() => {
        calls++;
        if (calls === 1) return new Promise<void>((r) => (release = r));
        return undefined;
      }),
    );
    await delay(50);
    expect(calls).toBe(1);
    expect(src.emitted).toBe(1000);
    release();
    await running;
    expect(calls).toBe(3);
    expect(src.emitted).toBe(3000);
  });

  it('waits for a pending emit with an interval too', async () => {
    let release!: () => void;
    let calls = 0;
    const src = source({ template: 'sequence', count: 10, interval: '5ms' });
    const running = src.run(
      manualContext(() => {
        calls++;
        if (calls === 1) return new Promise<void>((r) => (release = r));
        return undefined;
      }),
    );
    await delay(60);
    expect(calls).toBe(1);
    release();
    await running;
    expect(src.emitted).toBe(10);
  });

  it('returns on abort while an emit is still pending', async () => {
    const ac = new AbortController();
    const src = source({ template: 'sequence', interval: 0 });
    const running = src.run(manualContext(() => new Promise<void>(() => undefined), ac.signal));
    await delay(10);
    ac.abort();
    await expect(running).resolves.toBeUndefined();
  });

  it('fails when the pipeline rejects an emit', async () => {
    const src = source({ template: 'sequence', interval: 0, count: 10 });
    await expect(src.run(manualContext(() => Promise.reject(new Error('queue closed'))))).rejects.toThrow('queue closed');
  });

  it('tracks commits without needing them', async () => {
    const src = source({ template: 'sequence', count: 2500, interval: 0 });
    expect(src.committedSeq).toBe(-1);
    await collectSource(src);
    expect(src.committedSeq).toBe(2499);
  });
});
