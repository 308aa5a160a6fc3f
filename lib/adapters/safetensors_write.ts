// Writing .safetensors files (the layout readSafetensors documents): used to save adapters made
// in Node (random banks for benchmarks, converted adapters) in the format PEFT reads.
import * as fs from 'node:fs';
import { SAFETENSORS_DTYPE_SIZES, SafetensorsDtype } from './safetensors';
import { rangeError, typeError } from '../errors';

export interface TensorToWrite {
  dtype: SafetensorsDtype;
  shape: number[];
  /** the values' bytes, little-endian: e.g. a Float32Array for F32, Uint16Array bits for F16/BF16 */
  data: ArrayBufferView;
}

/** The file's bytes: tensors in the given order, tiling the data; header padded to 8 bytes. */
export function encodeSafetensors(tensors: Record<string, TensorToWrite>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const size = SAFETENSORS_DTYPE_SIZES[t.dtype];
    if (!size) throw typeError(`tensors.${name}.dtype`, 'a safetensors dtype (F32, F16, BF16, ...)', t.dtype);
    const bytes = t.shape.reduce((n, d) => n * d, size);
    if (t.data.byteLength !== bytes) {
      throw rangeError(`tensors.${name}.data`, `${bytes} bytes for shape [${t.shape.join(', ')}] of ${t.dtype}`, `${t.data.byteLength} bytes`);
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const head = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const t of Object.values(tensors)) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}

export function writeSafetensors(file: string, tensors: Record<string, TensorToWrite>, metadata: Record<string, string> = {}): void {
  fs.writeFileSync(file, encodeSafetensors(tensors, metadata));
}
