// Options of the generator source. The object is validated as written (aliases, unknown keys, per-field issues) and
// then resolved into a GeneratorConfig, so `create` gets milliseconds and defaults and never re-checks anything.

import { z, opt, duration, num, list, lazyOptions } from '../../core/spec.js';
import { NEXMARK_EVENT_TYPES, TEMPLATES, type NexmarkConfig, type Template } from './templates.js';
import type { GeneratorConfig } from './source.js';

const nexmarkOptions = lazyOptions('generator:nexmark', () =>
  z.strictObject({
    event_types: opt(list(z.enum(NEXMARK_EVENT_TYPES)).optional(), {
      description:
        'Which Nexmark events to emit: any of person, auction, bid. Default all, in the standard 1:3:46 proportions; a subset keeps the ids the full stream would have.',
      examples: [['bid'], 'person,auction'],
    }),
    first_event_id: num({ description: 'Event id of the first event (ids of people and auctions follow from it).', int: true, min: 0, default: 0 }),
    active_people: num({ description: 'Sellers and bidders are drawn from this many most recent people.', int: true, min: 1, default: 1000 }),
    active_auctions: num({ description: 'Bids go to one of this many most recent auctions.', int: true, min: 1, default: 100 }),
  }),
);

/** The option shape; built only when the generator's options are first used. */
function optionShape() {
  /** Event time given as ISO 8601 text, epoch milliseconds, or a YAML/JS date. */
  const timestamp = z.union([z.number(), z.string(), z.date()]).transform((v, ctx) => {
    const ms = v instanceof Date ? v.getTime() : typeof v === 'number' ? v : /^\s*\d+\s*$/.test(v) ? Number(v) : Date.parse(v);
    if (!Number.isFinite(ms)) {
      ctx.addIssue({ code: 'custom', message: `'${String(v)}' is not a timestamp (use ISO 8601 such as 2024-01-01T00:00:00Z, or epoch milliseconds)` });
      return z.NEVER;
    }
    return ms;
  });

  return {
    template: opt(z.enum(TEMPLATES).optional(), {
      description:
        'What to generate: iot, user_logins, devops (sample business data), impulse (a counter), nexmark (auction benchmark events), random (rows shaped like `pattern`), sequence (`{id}` only, the cheapest, for benchmarks). Default iot, or random when a pattern is given.',
      default: 'iot',
      examples: ['iot', 'sequence'],
    }),
    interval: duration({
      description: 'Time between events; 0 generates as fast as the pipeline takes them.',
      default: '200ms',
      examples: ['200ms', '1s', 0],
    }),
    event_rate: opt(num({}).optional(), {
      description: 'Events per second; sets interval to 1000/event_rate ms (overrides interval).',
      aliases: ['events_per_second', 'rate'],
      examples: [1000],
    }),
    count: opt(num({ int: true, min: 1 }).optional(), {
      description: 'Emit exactly this many records, then finish. Unset: run until the pipeline stops.',
      aliases: ['message_count', 'max_events'],
      examples: [1000],
    }),
    seed: opt(num({ int: true }).optional(), {
      description:
        'Seed for the random values: the same seed and options give identical rows on every run (set start_time too for identical timestamps). Unset: a random seed, logged at debug level.',
      examples: [42],
    }),
    start_time: opt(timestamp.optional(), {
      description: 'Event time of the first record (ISO 8601 or epoch ms). When set, event times advance by a fixed step instead of following the clock. Default: now.',
      examples: ['2024-01-01T00:00:00Z'],
      'x-kind': 'timestamp',
    }),
    event_time_interval: opt(duration({}).optional(), {
      description:
        'Event-time distance between consecutive records, independent of how fast they are generated. Default: interval, or 1ms at interval 0 once start_time is set.',
      examples: ['1s'],
      advanced: true,
    }),
    batch_size: num({
      description: 'Most records per emitted batch. With an interval, events go out as they fall due and never wait for a batch to fill.',
      int: true,
      min: 1,
      max: 1_000_000,
      default: 1000,
      advanced: true,
    }),
    pattern: opt(z.record(z.string(), z.unknown()).optional(), {
      description:
        'Template random: an example row. Numbers vary between 0 and twice the example, strings have their digits randomised (date-like strings become the event time), booleans are random, a list means one of its items, objects recurse.',
      examples: [{ device: 'sensor-01', temperature: 21.5, humidity: 50, on: true, unit: ['C', 'F'] }],
    }),
    nexmark: opt(nexmarkOptions().optional(), { description: 'Template nexmark: which events and how ids relate.' }),
  };
}

type Input = z.output<z.ZodObject<ReturnType<typeof optionShape>>>;

function check(o: Input, ctx: z.core.$RefinementCtx<Input>) {
  const template = o.template ?? (o.pattern ? 'random' : 'iot');
  if (template === 'random' && !o.pattern) {
    ctx.addIssue({
      code: 'custom',
      path: ['pattern'],
      message: "template 'random' needs a pattern: an example row such as { device: sensor-01, temperature: 21.5, on: true }",
    });
  }
  if (o.pattern && template !== 'random') {
    ctx.addIssue({ code: 'custom', path: ['pattern'], message: `pattern is only used by template 'random' (template is '${template}')` });
  }
  if (o.nexmark && template !== 'nexmark') {
    ctx.addIssue({ code: 'custom', path: ['nexmark'], message: `nexmark options are only used by template 'nexmark' (template is '${template}')` });
  }
  if (o.nexmark?.event_types && o.nexmark.event_types.length === 0) {
    ctx.addIssue({ code: 'custom', path: ['nexmark', 'event_types'], message: 'name at least one of person, auction, bid' });
  }
  if (o.event_rate !== undefined && !(o.event_rate > 0)) {
    ctx.addIssue({ code: 'custom', path: ['event_rate'], message: 'must be more than 0 events per second (for as fast as possible use interval: 0)' });
  }
}

function resolve(o: Input): GeneratorConfig {
  const template: Template = o.template ?? (o.pattern ? 'random' : 'iot');
  const nx = o.nexmark ?? nexmarkOptions().parse({});
  const nexmark: NexmarkConfig = {
    eventTypes: nx.event_types?.length ? nx.event_types : [...NEXMARK_EVENT_TYPES],
    firstEventId: nx.first_event_id,
    activePeople: nx.active_people,
    activeAuctions: nx.active_auctions,
  };
  return {
    template,
    interval: o.event_rate !== undefined ? 1000 / o.event_rate : o.interval,
    count: o.count,
    seed: o.seed,
    startTime: o.start_time,
    eventTimeInterval: o.event_time_interval,
    batchSize: o.batch_size,
    pattern: o.pattern,
    nexmark,
  };
}

export const generatorOptions = lazyOptions('generator:source', () => z.strictObject(optionShape()).superRefine(check).transform(resolve));

/** The options as written in YAML / SQL / JSON (before validation). */
export type GeneratorOptionsInput = z.input<ReturnType<typeof generatorOptions>>;
