// One record as one message, through the encoder's record-level path where it has one (JSON byte pass-through).

import type { Encoder, SluiceRecord } from './types.js';

export function encodeRecord(enc: Encoder, r: SluiceRecord): string | Uint8Array {
  return enc.encodeRecord ? enc.encodeRecord(r) : enc.encode(r.value);
}
