// Row makers, one per template. Each is built once per source with everything that can be precomputed (device and
// user tables, URL lists) drawn from the seeded PRNG, so that per row only a handful of PRNG calls and one object
// literal remain.

import type { Prng } from './prng.js';
import { compilePattern } from './pattern.js';
import { IsoCache } from './clock.js';

export const TEMPLATES = ['iot', 'user_logins', 'devops', 'impulse', 'nexmark', 'random', 'sequence'] as const;
export type Template = (typeof TEMPLATES)[number];

export const NEXMARK_EVENT_TYPES = ['person', 'auction', 'bid'] as const;
export type NexmarkEventType = (typeof NEXMARK_EVENT_TYPES)[number];

export interface NexmarkConfig {
  eventTypes: NexmarkEventType[];
  firstEventId: number;
  activePeople: number;
  activeAuctions: number;
}

export interface RowMaker {
  /** The row of event number `n` (0-based, consecutive across calls) whose event time is `ts` (ms). */
  row(n: number, ts: number): unknown;
}

const round1 = (x: number) => Math.round(x * 10) / 10;
const clamp = (x: number, lo: number, hi: number) => (x < lo ? lo : x > hi ? hi : x);
const pad = (n: number, width: number) => String(n).padStart(width, '0');

// ---- iot -----------------------------------------------------------------------------------------------------

const REGIONS = ['us-east-1', 'us-west-2', 'eu-west-1', 'eu-central-1', 'ap-southeast-1', 'ap-northeast-1', 'sa-east-1'];

class IotMaker implements RowMaker {
  private readonly devices: string[] = [];
  private readonly regions: string[] = [];
  private readonly baseTemp: number[] = [];
  private readonly baseHumidity: number[] = [];
  private readonly clock = new IsoCache();

  constructor(private readonly rng: Prng) {
    // Each device keeps its own climate so a device's readings look like one sensor over time, not noise.
    for (let i = 0; i < 500; i++) {
      this.devices.push(`sensor-${pad(i, 4)}`);
      this.regions.push(rng.pick(REGIONS));
      this.baseTemp.push(15 + rng.next() * 15);
      this.baseHumidity.push(35 + rng.next() * 40);
    }
  }

  row(_n: number, ts: number) {
    const r = this.rng;
    const d = r.int(this.devices.length);
    const deviation = r.normal() * 1.5;
    const temperature = round1(this.baseTemp[d]! + deviation);
    const humidity = round1(clamp(this.baseHumidity[d]! + r.normal() * 3, 0, 100));
    const status = r.chance(0.005) ? 'error' : deviation > 3 ? 'warning' : 'ok';
    return { device: this.devices[d]!, region: this.regions[d]!, temperature, humidity, status, ts: this.clock.iso(ts) };
  }
}

// ---- user_logins ---------------------------------------------------------------------------------------------

const FIRST = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy', 'mallory', 'nina', 'oscar', 'peggy', 'quinn', 'rupert', 'sybil', 'trent', 'uma', 'victor', 'wendy', 'xavier', 'yara', 'zoe'];
const LAST = ['smith', 'garcia', 'mueller', 'rossi', 'tanaka', 'kim', 'nguyen', 'silva', 'dubois', 'novak', 'khan', 'olsen', 'costa', 'sato', 'ivanova', 'brown'];
// Skewed on purpose: real user bases are.
const COUNTRIES = ['US', 'US', 'US', 'US', 'DE', 'DE', 'GB', 'GB', 'FR', 'IN', 'IN', 'BR', 'JP', 'CA', 'AU', 'NL', 'ES', 'SG'];

class UserLoginsMaker implements RowMaker {
  private readonly ids: number[] = [];
  private readonly names: string[] = [];
  private readonly homeIp: string[] = [];
  private readonly homeCountry: string[] = [];
  private readonly clock = new IsoCache();

  constructor(private readonly rng: Prng) {
    for (let i = 0; i < 1000; i++) {
      this.ids.push(10001 + i);
      this.names.push(`${rng.pick(FIRST)}.${rng.pick(LAST)}${i < 100 ? '' : i}`);
      this.homeIp.push(this.ip());
      this.homeCountry.push(rng.pick(COUNTRIES));
    }
  }

  private ip(): string {
    const r = this.rng;
    return `${r.between(1, 223)}.${r.int(256)}.${r.int(256)}.${r.between(1, 254)}`;
  }

  row(_n: number, ts: number) {
    const r = this.rng;
    const u = r.int(this.ids.length);
    // Logins from somewhere other than home fail more often: gives anomaly-detection demos something to find.
    const away = r.chance(0.08);
    return {
      user_id: this.ids[u]!,
      username: this.names[u]!,
      ip: away ? this.ip() : this.homeIp[u]!,
      country: away ? r.pick(COUNTRIES) : this.homeCountry[u]!,
      success: r.chance(away ? 0.7 : 0.96),
      ts: this.clock.iso(ts),
    };
  }
}

// ---- devops --------------------------------------------------------------------------------------------------

const SERVICES = ['api', 'auth', 'checkout', 'search', 'payments', 'inventory'];

class DevopsMaker implements RowMaker {
  private readonly hosts: string[] = [];
  private readonly services: string[] = [];
  private readonly baseCpu: number[] = [];
  private readonly baseMemory: number[] = [];
  private readonly baseLatency: number[] = [];
  private readonly clock = new IsoCache();

  constructor(private readonly rng: Prng) {
    for (let i = 0; i < 48; i++) {
      const service = SERVICES[i % SERVICES.length]!;
      this.services.push(service);
      this.hosts.push(`${service}-${pad(Math.floor(i / SERVICES.length) + 1, 2)}`);
      this.baseCpu.push(10 + rng.next() * 60);
      this.baseMemory.push(30 + rng.next() * 50);
      this.baseLatency.push(5 + rng.next() * 55);
    }
  }

  row(_n: number, ts: number) {
    const r = this.rng;
    const h = r.int(this.hosts.length);
    const p = r.next();
    const status_code =
      p < 0.9 ? 200 : p < 0.93 ? 201 : p < 0.95 ? 204 : p < 0.97 ? 404 : p < 0.98 ? 400 : p < 0.99 ? 401 : p < 0.996 ? 500 : 503;
    // Server errors are slow (timeouts), which is what a latency/error-rate dashboard expects to see together.
    const latency_ms = Math.round(this.baseLatency[h]! * (0.5 + r.exponential()) * (status_code >= 500 ? 6 : 1));
    return {
      host: this.hosts[h]!,
      service: this.services[h]!,
      cpu: round1(clamp(this.baseCpu[h]! + r.normal() * 8, 0, 100)),
      memory: round1(clamp(this.baseMemory[h]! + r.normal() * 3, 0, 100)),
      latency_ms,
      status_code,
      ts: this.clock.iso(ts),
    };
  }
}

// ---- impulse -------------------------------------------------------------------------------------------------

class ImpulseMaker implements RowMaker {
  // One generator instance is one subtask; the field keeps Laminar's row shape for queries written against it.
  row(n: number) {
    return { counter: n, subtask_index: 0 };
  }
}

// ---- nexmark -------------------------------------------------------------------------------------------------

// The usual Nexmark layout: in every 50 events, 1 person, 3 auctions and 46 bids, at fixed positions so that ids are
// a function of the event id alone.
const CYCLE = 50;
const PERSON_SLOTS = 1;
const AUCTION_SLOTS = 3;
const FIRST_PERSON_ID = 1000;
const FIRST_AUCTION_ID = 1000;
const FIRST_CATEGORY_ID = 10;

const CITIES = ['Phoenix', 'Los Angeles', 'San Francisco', 'Boise', 'Portland', 'Bend', 'Redmond', 'Seattle', 'Kent', 'Cheyenne'];
const STATES = ['AZ', 'CA', 'ID', 'OR', 'WA', 'WY'];
const ITEMS = ['vintage camera', 'road bike', 'oak desk', 'vinyl record', 'gaming laptop', 'espresso machine', 'watch', 'guitar', 'sofa', 'telescope'];
const CHANNELS = ['Google', 'Facebook', 'Baidu', 'Apple'];

class NexmarkMaker implements RowMaker {
  private eventId: number;
  private readonly want: boolean[];
  private readonly urls: string[][];
  private readonly clock = new IsoCache();

  constructor(private readonly rng: Prng, private readonly cfg: NexmarkConfig) {
    this.eventId = cfg.firstEventId;
    const types = new Set(cfg.eventTypes);
    this.want = NEXMARK_EVENT_TYPES.map((t) => types.has(t));
    this.urls = CHANNELS.map((c) =>
      Array.from({ length: 4 }, () => `https://www.nexmark.com/${c.toLowerCase()}/item.htm?query=1&channel_id=${rng.int(1 << 20)}`),
    );
  }

  private static kind(e: number): 0 | 1 | 2 {
    const slot = e % CYCLE;
    return slot < PERSON_SLOTS ? 0 : slot < PERSON_SLOTS + AUCTION_SLOTS ? 1 : 2;
  }

  /** Id of the newest person whose event is at or before `e`. */
  private static lastPerson(e: number): number {
    return FIRST_PERSON_ID + Math.floor(e / CYCLE);
  }

  private static lastAuction(e: number): number {
    const slot = e % CYCLE;
    const inCycle = slot < PERSON_SLOTS ? 0 : Math.min(slot - PERSON_SLOTS + 1, AUCTION_SLOTS);
    return FIRST_AUCTION_ID + Math.floor(e / CYCLE) * AUCTION_SLOTS + inCycle - 1;
  }

  row(_n: number, ts: number) {
    // Filtering by type skips ids instead of renumbering, so a bid-only stream has the same ids as the full one.
    let e = this.eventId;
    while (!this.want[NexmarkMaker.kind(e)]) e++;
    this.eventId = e + 1;
    const kind = NexmarkMaker.kind(e);
    const iso = this.clock.iso(ts);
    if (kind === 0) return { event_type: 'person', person: this.person(e, iso), auction: null, bid: null };
    if (kind === 1) return { event_type: 'auction', person: null, auction: this.auction(e, ts, iso), bid: null };
    return { event_type: 'bid', person: null, auction: null, bid: this.bid(e, iso) };
  }

  private person(e: number, iso: string) {
    const r = this.rng;
    const first = r.pick(FIRST);
    const last = r.pick(LAST);
    return {
      id: NexmarkMaker.lastPerson(e),
      name: `${first[0]!.toUpperCase()}${first.slice(1)} ${last[0]!.toUpperCase()}${last.slice(1)}`,
      email_address: `${first}.${last}@example.com`,
      credit_card: `${r.between(1000, 9999)} ${r.between(1000, 9999)} ${r.between(1000, 9999)} ${r.between(1000, 9999)}`,
      city: r.pick(CITIES),
      state: r.pick(STATES),
      date_time: iso,
      extra: '',
    };
  }

  private auction(e: number, ts: number, iso: string) {
    const r = this.rng;
    const initial_bid = r.between(1, 100) * 100;
    return {
      id: NexmarkMaker.lastAuction(e),
      item_name: r.pick(ITEMS),
      description: `lot ${r.int(100000)}`,
      initial_bid,
      reserve: initial_bid + r.between(1, 50) * 100,
      date_time: iso,
      expires: new Date(ts + r.between(10, 600) * 1000).toISOString(),
      seller: this.recent(NexmarkMaker.lastPerson(e), FIRST_PERSON_ID, this.cfg.activePeople),
      category: FIRST_CATEGORY_ID + r.int(5),
      extra: '',
    };
  }

  private bid(e: number, iso: string) {
    const r = this.rng;
    const c = r.int(CHANNELS.length);
    return {
      auction: this.recent(NexmarkMaker.lastAuction(e), FIRST_AUCTION_ID, this.cfg.activeAuctions),
      bidder: this.recent(NexmarkMaker.lastPerson(e), FIRST_PERSON_ID, this.cfg.activePeople),
      // Long-tailed prices, like real auctions: most bids small, a few large.
      price: Math.round(100 + r.exponential() * 900),
      channel: CHANNELS[c]!,
      url: r.pick(this.urls[c]!),
      date_time: iso,
      extra: '',
    };
  }

  /** One of the `window` newest ids up to `newest`, never below `first`. */
  private recent(newest: number, first: number, window: number): number {
    const span = Math.min(window, newest - first + 1);
    return span <= 1 ? Math.max(newest, first) : newest - this.rng.int(span);
  }
}

// ---- random (pattern) ----------------------------------------------------------------------------------------

class PatternMaker implements RowMaker {
  private readonly make: (ts: number) => unknown;
  constructor(rng: Prng, pattern: Record<string, unknown>) {
    this.make = compilePattern(pattern, rng);
  }
  row(_n: number, ts: number) {
    return this.make(ts);
  }
}

// ---- sequence ------------------------------------------------------------------------------------------------

class SequenceMaker implements RowMaker {
  row(n: number) {
    return { id: n };
  }
}

export interface MakerOptions {
  template: Template;
  pattern?: Record<string, unknown>;
  nexmark: NexmarkConfig;
}

export function createMaker(o: MakerOptions, rng: Prng): RowMaker {
  switch (o.template) {
    case 'iot':
      return new IotMaker(rng);
    case 'user_logins':
      return new UserLoginsMaker(rng);
    case 'devops':
      return new DevopsMaker(rng);
    case 'impulse':
      return new ImpulseMaker();
    case 'nexmark':
      return new NexmarkMaker(rng, o.nexmark);
    case 'random':
      return new PatternMaker(rng, o.pattern ?? {});
    case 'sequence':
      return new SequenceMaker();
  }
}
