// Event-time helpers shared by the templates.

/** ISO strings cost ~150ns each; consecutive events often share a millisecond, so remember the last one. */
export class IsoCache {
  private last = NaN;
  private text = '';
  iso(ts: number): string {
    if (ts !== this.last) {
      this.last = ts;
      this.text = new Date(ts).toISOString();
    }
    return this.text;
  }
}
