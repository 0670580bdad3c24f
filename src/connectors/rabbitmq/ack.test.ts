// When the source sends `basic.ack`: at once for each commit, up to its last delivery tag (the broker's prefetch
// window also counts the messages in flight on the socket, so an ack delay stalls delivery: coalescing commits for up
// to 50 ms measured 20k and 31k msg/s against 35k and 31k in two alternating pairs), never for an earlier channel,
// never twice; a failing pipeline's close rejects only what was never written. A fake channel records the frames.

import { describe, expect, it } from 'vitest';
import { parsedOptions } from '../../testing/harness.js';
import { sourceOptions } from './index.js';
import { RabbitSource, type RabbitAck } from './source.js';

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
  it('acknowledges each commit at once, up to the last tag of its batches', () => {
    const { src, frames, ack } = sourceOn({ prefetch: 2000 }, 100);
    src.commit([ack(40)]);
    expect(frames).toEqual([['ack', 40]]);
    src.commit([ack(80), ack(99)]);
    expect(frames).toEqual([
      ['ack', 40],
      ['ack', 99],
    ]);
  });

  it('drops acks of an earlier channel and never acks a tag twice', () => {
    const { src, frames, ack } = sourceOn({ prefetch: 4 }, 10);
    src.commit([{ gen: 0, tag: 9 } satisfies RabbitAck]);
    src.commit([ack(2)]);
    src.commit([ack(2)]);
    expect(frames).toEqual([['ack', 2]]);
  });

  it('close after a failure applies on_failure to the unwritten messages only', async () => {
    const { src, frames, ack } = sourceOn({ prefetch: 2000, on_failure: 'requeue' }, 50);
    src.commit([ack(20)]);
    await src.close();
    expect(frames).toEqual([
      ['ack', 20],
      ['nack-requeue', 50],
    ]);
  });

  it('close after a clean drain sends nothing more', async () => {
    const { src, frames, ack } = sourceOn({ prefetch: 2000, on_failure: 'dead_letter' }, 50);
    src.commit([ack(50)]);
    await src.close();
    expect(frames).toEqual([['ack', 50]]);
  });
});
