// When the source sends `basic.ack`: committed batches are acknowledged together (a quarter of the prefetch window, or
// after ACK_DELAY_MS, or at close), never before the commit, and a failing pipeline's close acknowledges what was
// written before it rejects the rest. A fake channel records the frames; no broker needed.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parsedOptions } from '../../testing/harness.js';
import { sourceOptions } from './index.js';
import { ACK_DELAY_MS, RabbitSource, ackEvery, type RabbitAck } from './source.js';

type Frame = [string, number];

/** A source as if consuming on a live channel (generation 1) that got `emitted` deliveries so far. */
function sourceOn(o: Record<string, unknown>, emitted: number) {
  const frames: Frame[] = [];
  const ch = {
    active: true,
    basicAck: (a: { deliveryTag: number; multiple: boolean }) => void frames.push(['ack', a.multiple ? a.deliveryTag : -1]),
    basicNack: (a: { deliveryTag: number; multiple: boolean; requeue?: boolean }) =>
      void frames.push([a.requeue ? 'nack-requeue' : 'nack', a.multiple ? a.deliveryTag : -1]),
    close: async () => undefined,
  };
  const src = new RabbitSource(parsedOptions(sourceOptions(), { queue: 'q', ...o }));
  Object.assign(src as object, { ch, gen: 1, emittedTag: emitted });
  const ack = (tag: number): RabbitAck => ({ gen: 1, tag });
  return { src, frames, ack };
}

describe('rabbitmq source acknowledgements', () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it('coalesces commits until a quarter of the prefetch window is committed', () => {
    expect(ackEvery(2000)).toBe(500);
    expect(ackEvery(3)).toBe(1);
    const { src, frames, ack } = sourceOn({ prefetch: 400 }, 400);
    src.commit([ack(40)]);
    src.commit([ack(80), ack(99)]);
    expect(frames).toEqual([]);
    src.commit([ack(100)]);
    expect(frames).toEqual([['ack', 100]]);
    // The timer armed by the first commit was cancelled by the ack: it sends nothing more.
    vi.advanceTimersByTime(ACK_DELAY_MS * 2);
    expect(frames).toEqual([['ack', 100]]);
  });

  it('acknowledges a partial window after ACK_DELAY_MS, not before', () => {
    const { src, frames, ack } = sourceOn({ prefetch: 2000 }, 30);
    src.commit([ack(10)]);
    vi.advanceTimersByTime(ACK_DELAY_MS - 1);
    src.commit([ack(30)]);
    expect(frames).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(frames).toEqual([['ack', 30]]);
  });

  it('drops acks of an earlier channel and never acks a tag twice', () => {
    const { src, frames, ack } = sourceOn({ prefetch: 4 }, 10);
    src.commit([{ gen: 0, tag: 9 } satisfies RabbitAck]);
    src.commit([ack(2)]);
    src.commit([ack(2)]);
    vi.advanceTimersByTime(ACK_DELAY_MS);
    expect(frames).toEqual([['ack', 2]]);
  });

  it('close acknowledges what the sink accepted, then applies on_failure to the unwritten rest only', async () => {
    const { src, frames, ack } = sourceOn({ prefetch: 2000, on_failure: 'requeue' }, 50);
    src.commit([ack(20)]);
    await src.close();
    expect(frames).toEqual([
      ['ack', 20],
      ['nack-requeue', 50],
    ]);
  });

  it('close after a clean drain sends the pending ack and nothing else', async () => {
    const { src, frames, ack } = sourceOn({ prefetch: 2000, on_failure: 'dead_letter' }, 50);
    src.commit([ack(50)]);
    await src.close();
    expect(frames).toEqual([['ack', 50]]);
  });
});
