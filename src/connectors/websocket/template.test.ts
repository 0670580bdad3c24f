import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { compileTemplate, TemplateError } from './template.js';

describe('templates', () => {
  it('renders literals, time, uuid and env with one instant per rendering', () => {
    const t = compileTemplate('{"ts":{{ now_ms }},"s":{{now_s}},"iso":"{{ now_iso }}","id":"{{ uuid }}","k":"{{ env "K" }}"}');
    const out = JSON.parse(t.render({}, 1_700_000_000_123, { K: 'key' }));
    expect(out).toMatchObject({ ts: 1_700_000_000_123, s: 1_700_000_000, iso: '2023-11-14T22:13:20.123Z', k: 'key' });
    expect(out.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(compileTemplate('plain').constant).toBe(true);
  });

  it('signs with hmac_sha256 (hex and base64) over concatenated parts', () => {
    const t = compileTemplate('{{ hmac_sha256 (env "SECRET") (concat "GET/realtime" now_ms) }}|{{ hmac_sha256 "k" "m" "base64" }}');
    const [hex, b64] = t.render({}, 42, { SECRET: 's3' }).split('|');
    expect(hex).toBe(createHmac('sha256', 's3').update('GET/realtime42').digest('hex'));
    expect(b64).toBe(createHmac('sha256', 'k').update('m').digest('base64'));
  });

  it('renders channels as JSON, channel as text, and json/join helpers', () => {
    const t = compileTemplate('{"params":{{ channels }},"one":{{ json channel }},"j":"{{ join channels "," }}"}');
    expect(JSON.parse(t.render({ channels: ['a@trade', 'b'], channel: 'a@trade' }))).toEqual({ params: ['a@trade', 'b'], one: 'a@trade', j: 'a@trade,b' });
    expect(compileTemplate('{{ channel }}').uses.has('channel')).toBe(true);
  });

  it('reports syntax errors with the column', () => {
    const bad = (s: string) => {
      try {
        compileTemplate(s);
      } catch (e) {
        expect(e).toBeInstanceOf(TemplateError);
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    expect(bad('ab {{ nope }}')).toBe("template column 7: unknown function 'nope' (known: now_ms, now_s, now_iso, uuid, env, hmac_sha256, concat, json, join, base64, channels, channel, connection)");
    expect(bad('{{ env }}')).toMatch(/column 4: 'env' takes 1 argument/);
    expect(bad('{{ now_ms ')).toMatch(/missing '}}'/);
    expect(bad('{{ "x" "y" }}')).toMatch(/column 8: only a function name can take arguments/);
    expect(bad('{{ concat "x }}')).toMatch(/column 11: unterminated string/);
    expect(bad('{{ hmac_sha256 (env "A" "x") }}')).toMatch(/column 17: 'env' takes 1/);
  });

  it('fails at render time for a missing env variable, naming it', () => {
    expect(() => compileTemplate('{{ env "NOPE_NOT_SET" }}').render({}, 0, {})).toThrow("environment variable 'NOPE_NOT_SET' is not set");
  });
});
