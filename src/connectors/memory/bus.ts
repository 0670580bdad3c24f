// In-process topics that chain pipelines in one process (eKuiper's memory connector): `/`-separated topic names,
// `+` matches one level and `#` the rest, in subscriptions only.

import type { SluiceRecord } from '../../core/types.js';

export interface Subscriber {
  pattern: string;
  matches(topic: string): boolean;
  /** Resolves once the subscriber accepted the records (its pipeline's queue had room). */
  deliver(records: SluiceRecord[]): Promise<void> | undefined;
  /** Called when no publisher of a matching topic is open any more. */
  publishersGone(): void;
}

export function topicMatcher(pattern: string): (topic: string) => boolean {
  if (!pattern.includes('+') && !pattern.includes('#')) return (t) => t === pattern;
  const parts = pattern.split('/');
  return (topic) => {
    const t = topic.split('/');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (p === '#') return true;
      if (i >= t.length) return false;
      if (p !== '+' && p !== t[i]) return false;
    }
    return parts.length === t.length;
  };
}

class Bus {
  private subs = new Set<Subscriber>();
  private publishers = new Map<string, number>();

  subscribe(s: Subscriber): () => void {
    this.subs.add(s);
    return () => this.subs.delete(s);
  }

  openPublisher(topic: string) {
    this.publishers.set(topic, (this.publishers.get(topic) ?? 0) + 1);
  }

  closePublisher(topic: string) {
    const n = (this.publishers.get(topic) ?? 1) - 1;
    if (n > 0) {
      this.publishers.set(topic, n);
      return;
    }
    this.publishers.delete(topic);
    for (const s of this.subs) {
      if (!s.matches(topic)) continue;
      let open = false;
      for (const t of this.publishers.keys()) if (s.matches(t)) open = true;
      if (!open) s.publishersGone();
    }
  }

  /** Deliver to every matching subscriber; each gets its own record objects, so one pipeline cannot alter another's. */
  async publish(topic: string, records: SluiceRecord[]): Promise<number> {
    const waits: Promise<void>[] = [];
    let n = 0;
    for (const s of this.subs) {
      if (!s.matches(topic)) continue;
      n++;
      const copy = new Array<SluiceRecord>(records.length);
      for (let i = 0; i < records.length; i++) {
        const r = records[i]!;
        const v = r.value;
        copy[i] = {
          value: v && typeof v === 'object' && !ArrayBuffer.isView(v) && !Array.isArray(v) ? { ...(v as object) } : v,
          key: r.key,
          headers: r.headers,
          timestamp: r.timestamp,
          meta: { ...r.meta, _topic: topic },
        };
      }
      const p = s.deliver(copy);
      if (p) waits.push(p);
    }
    if (waits.length) await Promise.all(waits);
    return n;
  }
}

export const bus = new Bus();
