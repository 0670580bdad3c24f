// The live status line on a terminal: rates, totals, errors, dropped.

import type { PipelineHandle } from '../core/runtime.js';

function human(n: number): string {
  if (n < 1000) return String(Math.round(n));
  if (n < 1e6) return `${(n / 1e3).toFixed(n < 1e4 ? 1 : 0)}k`;
  if (n < 1e9) return `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)}M`;
  return `${(n / 1e9).toFixed(2)}G`;
}

export class StatusLine {
  private text = '';
  private timer?: NodeJS.Timeout;
  private last = { t: 0, in: 0, out: 0 };

  constructor(private readonly out: NodeJS.WriteStream) {}

  start(handles: PipelineHandle[]) {
    this.last = { t: Date.now(), in: 0, out: 0 };
    this.timer = setInterval(() => this.update(handles), 500);
    this.timer.unref();
  }

  private update(handles: PipelineHandle[]) {
    const now = Date.now();
    let rin = 0, rout = 0, err = 0, drop = 0, dlq = 0, queued = 0;
    for (const h of handles) {
      rin += h.stats.records_in;
      rout += h.stats.records_out;
      err += h.stats.errors;
      drop += h.stats.dropped;
      dlq += h.stats.dlq;
      queued += h.stats.queued;
    }
    const dt = (now - this.last.t) / 1000 || 1;
    const label = handles.length === 1 ? handles[0]!.name : `${handles.length} pipelines`;
    const states = [...new Set(handles.map((h) => h.status()))].join('/');
    // A paused pipeline says why first: the line is cut at the terminal's width.
    const paused = handles.map((h) => h.pausedReason()).filter((r) => r !== undefined);
    const why = paused.length ? ` paused: ${paused.join('; ')} |` : '';
    this.text = `${label} [${states}]${why} in ${human((rin - this.last.in) / dt)}/s out ${human((rout - this.last.out) / dt)}/s | total in ${human(rin)} out ${human(rout)} | queued ${human(queued)} errors ${err} dropped ${drop} dlq ${dlq}`;
    this.last = { t: now, in: rin, out: rout };
    this.redraw();
  }

  clear() {
    if (this.text) this.out.write('\r\x1b[2K');
  }

  redraw() {
    if (this.text) this.out.write(`\r\x1b[2K${this.text.slice(0, (this.out.columns || 120) - 1)}`);
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
    this.clear();
    this.text = '';
  }
}
