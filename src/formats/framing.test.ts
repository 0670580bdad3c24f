import { describe, expect, it } from 'vitest';
import { encodeLengthDelimited, LengthDelimitedSplitter, LineSplitter, type LineFrame, type LengthFrame } from './framing.js';

/** Deterministic PRNG so a failing random chunking can be replayed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function chunked(buf: Buffer, sizes: () => number): Buffer[] {
  const out: Buffer[] = [];
  for (let p = 0; p < buf.length; ) {
    const n = Math.max(1, Math.min(buf.length - p, sizes()));
    out.push(buf.subarray(p, p + n));
    p += n;
  }
  return out;
}

function splitAll(s: LineSplitter, chunks: Buffer[], reuse = false): LineFrame[] {
  const out: LineFrame[] = [];
  // With `reuse`, every chunk is copied into one scratch buffer, as a file reader reusing its read buffer does.
  const scratch = Buffer.alloc(Math.max(1, ...chunks.map((c) => c.length)));
  for (const c of chunks) {
    if (reuse) {
      c.copy(scratch);
      out.push(...s.push(scratch.subarray(0, c.length)));
      scratch.fill(0x78);
    } else out.push(...s.push(c));
  }
  out.push(...s.flush());
  return out;
}

/** Obviously-correct reference: byte-by-byte over the whole input. */
function reference(input: Buffer, quoteAware: boolean): Array<Pick<LineFrame, 'text' | 'start' | 'end' | 'line' | 'lines'>> {
  const out: Array<Pick<LineFrame, 'text' | 'start' | 'end' | 'line' | 'lines'>> = [];
  let start = 0;
  let line = 1;
  let lines = 1;
  let inQ = false;
  let fieldStart = true;
  const push = (endOfText: number, end: number) => {
    let te = endOfText;
    if (te > start && input[te - 1] === 13) te--;
    out.push({ text: input.toString('utf8', start, te), start, end, line, lines });
    line += lines;
    lines = 1;
    start = end;
    fieldStart = true;
  };
  for (let i = 0; i < input.length; i++) {
    const b = input[i]!;
    if (quoteAware && inQ) {
      if (b === 34) {
        if (input[i + 1] === 34) i++;
        else inQ = false;
      } else if (b === 10) lines++;
      continue;
    }
    if (b === 10) {
      push(i, i + 1);
      continue;
    }
    if (quoteAware && b === 34 && fieldStart) inQ = true;
    fieldStart = b === 44;
  }
  if (start < input.length) push(input.length, input.length);
  return out;
}

const strip = (fs: LineFrame[]) => fs.map(({ text, start, end, line, lines }) => ({ text, start, end, line, lines }));

describe('LineSplitter', () => {
  it('returns lines with the offset past each newline and strips \\r', () => {
    const s = new LineSplitter();
    const f = s.push(Buffer.from('ab\r\ncd\n\nef'));
    expect(strip(f)).toEqual([
      { text: 'ab', start: 0, end: 4, line: 1, lines: 1 },
      { text: 'cd', start: 4, end: 7, line: 2, lines: 1 },
      { text: '', start: 7, end: 8, line: 3, lines: 1 },
    ]);
    expect(s.pending).toBe(true);
    expect(s.position).toBe(8);
    expect(strip(s.flush())).toEqual([{ text: 'ef', start: 8, end: 10, line: 4, lines: 1 }]);
    expect(s.flush()).toEqual([]);
  });

  it('continues from startOffset and startLine', () => {
    const s = new LineSplitter({ startOffset: 100, startLine: 7 });
    expect(strip(s.push(Buffer.from('x\ny\n')))).toEqual([
      { text: 'x', start: 100, end: 102, line: 7, lines: 1 },
      { text: 'y', start: 102, end: 104, line: 8, lines: 1 },
    ]);
    expect(s.position).toBe(104);
    expect(s.nextLine).toBe(9);
  });

  it('skips a UTF-8 BOM at the start of the stream but counts its bytes', () => {
    const s = new LineSplitter();
    const f = s.push(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('a,b\n')]));
    expect(strip(f)).toEqual([{ text: 'a,b', start: 3, end: 7, line: 1, lines: 1 }]);
  });

  it('keeps multi-byte characters split across chunks intact', () => {
    const text = 'héllo wörld ✓ 😀\nzweite Zeile ü\n';
    const buf = Buffer.from(text);
    for (let cut = 1; cut < buf.length; cut++) {
      const f = splitAll(new LineSplitter(), [buf.subarray(0, cut), buf.subarray(cut)]);
      expect(f.map((x) => x.text)).toEqual(['héllo wörld ✓ 😀', 'zweite Zeile ü']);
    }
  });

  for (const quoteAware of [false, true]) {
    it(`matches a byte-by-byte reference under random chunking (quoteAware=${quoteAware})`, () => {
      const r = rng(quoteAware ? 7 : 3);
      const alphabet = ['a', 'b', ',', '"', '""', '\n', '\r\n', 'é', ' ', '"x,\ny"'];
      for (let round = 0; round < 200; round++) {
        let s = '';
        const n = Math.floor(r() * 60);
        for (let i = 0; i < n; i++) s += alphabet[Math.floor(r() * alphabet.length)];
        const input = Buffer.from(s);
        const want = reference(input, quoteAware);
        const maxChunk = 1 + Math.floor(r() * 8);
        const got = splitAll(new LineSplitter({ quoteAware, stripBom: false }), chunked(input, () => 1 + Math.floor(r() * maxChunk)), round % 2 === 0);
        expect(strip(got), JSON.stringify(s)).toEqual(want);
      }
    });
  }

  it('reports an over-long line once, skips it and goes on (single chunk and across chunks)', () => {
    const long = 'x'.repeat(50);
    const input = Buffer.from(`ok\n${long}\nnext\n${long}`);
    for (const size of [1, 7, 16, 1000]) {
      const s = new LineSplitter({ maxLineBytes: 20 });
      const f = splitAll(s, chunked(input, () => size));
      expect(f.map((x) => [x.text.slice(0, 5), x.start, x.end, x.line, !!x.error])).toEqual([
        ['ok', 0, 3, 1, false],
        ['xxxxx', 3, 54, 2, true],
        ['next', 54, 59, 3, false],
        ['xxxxx', 59, 109, 4, true],
      ]);
      expect(f[1]!.error!.message).toMatch(/line of 50 bytes exceeds max_line_bytes \(20\)/);
    }
  });

  it('never buffers more than maxLineBytes of a line that does not end', () => {
    const s = new LineSplitter({ maxLineBytes: 1024 });
    const chunk = Buffer.alloc(4096, 0x61);
    for (let i = 0; i < 1000; i++) expect(s.push(chunk)).toEqual([]);
    // Internal buffer was dropped once the limit was hit; only a short preview remains.
    expect((s as unknown as { parts: Buffer[] }).parts).toEqual([]);
    const [f] = s.push(Buffer.from('\nok\n'));
    expect(f!.error).toBeDefined();
    expect(f!.text.length).toBeLessThanOrEqual(256);
    expect(f!.end).toBe(4096 * 1000 + 1);
    expect(s.push(Buffer.from('x\n'))[0]!.text).toBe('x');
  });

  it('CSV mode: newlines and "" inside quoted fields do not end the record; line numbers count physical lines', () => {
    const input = 'id,note\n1,"multi\nline ""quoted"""\n2,plain\n"3",x"y\n4,z\n';
    const f = splitAll(new LineSplitter({ quoteAware: true }), [Buffer.from(input)]);
    expect(strip(f).map((x) => [x.text, x.line, x.lines])).toEqual([
      ['id,note', 1, 1],
      ['1,"multi\nline ""quoted"""', 2, 2],
      ['2,plain', 4, 1],
      ['"3",x"y', 5, 1],
      ['4,z', 6, 1],
    ]);
  });

  it('CSV mode: a stray quote inside an unquoted field does not swallow the next lines', () => {
    const f = splitAll(new LineSplitter({ quoteAware: true }), [Buffer.from('a,b"c,d\ne,f\n')]);
    expect(f.map((x) => x.text)).toEqual(['a,b"c,d', 'e,f']);
  });

  it('CSV mode: a quote at a chunk boundary is resolved by the next chunk', () => {
    const input = Buffer.from('"a""\nb",c\nd\n');
    for (let cut = 1; cut < input.length; cut++) {
      const f = splitAll(new LineSplitter({ quoteAware: true }), [input.subarray(0, cut), input.subarray(cut)]);
      expect(f.map((x) => x.text), `cut ${cut}`).toEqual(['"a""\nb",c', 'd']);
    }
  });

  it('CSV mode: an over-long quoted record is skipped whole and line numbers stay right', () => {
    const input = Buffer.from('a\n"xxxxxxxx\nyyyyyyyyy"\nb\n');
    for (const size of [1, 3, 5, 100]) {
      const f = splitAll(new LineSplitter({ quoteAware: true, maxLineBytes: 10 }), chunked(input, () => size));
      expect(f.map((x) => [x.error ? 'ERR' : x.text, x.line, x.lines, x.start, x.end]), `chunk ${size}`).toEqual([
        ['a', 1, 1, 0, 2],
        ['ERR', 2, 2, 2, 23],
        ['b', 4, 1, 23, 25],
      ]);
    }
  });

  it('CSV mode honours other delimiters', () => {
    const f = splitAll(new LineSplitter({ quoteAware: { delimiters: ';' } }), [Buffer.from('a;"x\ny"\nb,"q\n')]);
    expect(f.map((x) => x.text)).toEqual(['a;"x\ny"', 'b,"q']);
  });
});

describe('LengthDelimitedSplitter', () => {
  const payloads = ['hello', '', 'wörld', 'x'.repeat(300), '', 'end'];
  const wire = encodeLengthDelimited(payloads);

  it('round-trips under any chunking, with offsets', () => {
    const r = rng(11);
    for (let round = 0; round < 100; round++) {
      const s = new LengthDelimitedSplitter();
      const out: LengthFrame[] = [];
      const scratch = Buffer.alloc(wire.length);
      for (const c of chunked(wire, () => 1 + Math.floor(r() * 40))) {
        c.copy(scratch);
        out.push(...s.push(scratch.subarray(0, c.length)));
        scratch.fill(0);
      }
      expect(s.flush()).toEqual([]);
      expect(out.map((f) => f.payload.toString())).toEqual(payloads);
      expect(out.map((f) => f.index)).toEqual([1, 2, 3, 4, 5, 6]);
      let off = 0;
      for (const [i, f] of out.entries()) {
        expect(f.start).toBe(off);
        off += 4 + Buffer.byteLength(payloads[i]!);
        expect(f.end).toBe(off);
      }
    }
  });

  it('skips an oversized frame by its length and reports it', () => {
    const s = new LengthDelimitedSplitter({ maxFrameBytes: 100 });
    const out = [...chunked(wire, () => 13)].flatMap((c) => s.push(c));
    expect(out.map((f) => (f.error ? 'ERR' : f.payload.toString()))).toEqual(['hello', '', 'wörld', 'ERR', '', 'end']);
    expect(out[3]!.error!.message).toMatch(/300 bytes exceeds the limit of 100/);
  });

  it('flush reports a truncated trailing frame', () => {
    const s = new LengthDelimitedSplitter();
    expect(s.push(wire.subarray(0, 12)).map((f) => f.payload.toString())).toEqual(['hello']);
    expect(s.position).toBe(9);
    const [f] = s.flush();
    expect(f!.error!.message).toMatch(/truncated frame: 3 of 4 bytes/);
    expect([f!.start, f!.end]).toEqual([9, 12]);
  });
});
