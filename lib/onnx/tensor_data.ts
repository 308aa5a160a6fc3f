// The bytes of ONNX initializers, wherever they live: raw_data, typed repeated fields, or an
// external data file (location/offset/length relative to the model's folder). And a writer that
// moves initializers into one external data file, so rewritten models stay small protobufs and
// models over 2 GB keep working.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fromBits, f32ToF16Bits, f32ToBf16Bits } from '../kernels/dtype';
import { metadataEntry, ONNX_BFLOAT16, ONNX_FLOAT, ONNX_FLOAT16, TensorProto } from './proto';

/** TensorProto.DataLocation.EXTERNAL */
const EXTERNAL = 1;

export function isExternal(t: TensorProto): boolean {
  return t.dataLocation === EXTERNAL;
}

/** A key of an initializer's external_data entries (location, offset, length). */
export function externalField(t: TensorProto, key: string): string | undefined {
  return t.externalData.find((e) => e.key === key)?.value;
}

export function elementCount(t: TensorProto): number {
  return t.dims.reduce((n, d) => n * Number(d), 1);
}

// bytes per element of the fixed-size ONNX types (TensorProto.DataType); strings have none
const ELEMENT_SIZE: Record<number, number> = {
  1: 4, // float
  2: 1, 3: 1, 9: 1, // uint8, int8, bool
  4: 2, 5: 2, 10: 2, 16: 2, // uint16, int16, float16, bfloat16
  6: 4, 12: 4, // int32, uint32
  7: 8, 11: 8, 13: 8, // int64, double, uint64
};

function elementSize(dataType: number): number {
  const size = ELEMENT_SIZE[dataType];
  if (size === undefined) throw new Error(`Unsupported initializer data type ${dataType} (expected a fixed-size numeric type)`);
  return size;
}

/** Bytes an initializer's values take (fixed-size numeric types; 0 for others, e.g. strings). */
export function byteLength(t: TensorProto): number {
  return (ELEMENT_SIZE[t.dataType] ?? 0) * elementCount(t);
}

/** Raw little-endian bytes of a numeric initializer held as raw or external data (float/float16/bfloat16 also from typed fields). */
export function tensorBytes(t: TensorProto, modelDir: string): Uint8Array {
  const size = elementSize(t.dataType) * elementCount(t);
  if (isExternal(t)) {
    const location = externalField(t, 'location');
    if (!location) throw new Error(`Initializer ${t.name} is external but has no location`);
    const file = path.resolve(modelDir, location);
    const offset = Number(externalField(t, 'offset') ?? 0);
    const length = Number(externalField(t, 'length') ?? size);
    if (length !== size) throw new Error(`Initializer ${t.name}: external length ${length} != ${size} bytes for its shape`);
    const out = new Uint8Array(size);
    const fd = fs.openSync(file, 'r');
    try {
      let done = 0;
      while (done < size) {
        const n = fs.readSync(fd, out, done, Math.min(size - done, 1 << 30), offset + done);
        if (n <= 0) throw new Error(`Initializer ${t.name}: ${file} ends before offset ${offset + size}`);
        done += n;
      }
    } finally {
      fs.closeSync(fd);
    }
    return out;
  }
  if (t.rawData.length > 0) {
    if (t.rawData.length !== size) throw new Error(`Initializer ${t.name}: raw_data has ${t.rawData.length} bytes, expected ${size}`);
    return t.rawData;
  }
  if (t.dataType === ONNX_FLOAT) return new Uint8Array(Float32Array.from(t.floatData).buffer);
  // float16/bfloat16 values may sit in int32_data, one per element
  if (t.dataType === ONNX_FLOAT16 || t.dataType === ONNX_BFLOAT16) return new Uint8Array(Uint16Array.from(t.int32Data).buffer);
  throw new Error(`Initializer ${t.name} (data type ${t.dataType}) keeps its values in typed fields, not raw data`);
}

/** An initializer's values as float32 (float16 / bfloat16 widened). */
export function tensorFloat32(t: TensorProto, modelDir: string): Float32Array {
  const bytes = tensorBytes(t, modelDir);
  const n = elementCount(t);
  // a copy, not bytes.slice(): protobuf may hand out Buffers, whose slice() is a view
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : new Uint8Array(bytes);
  if (t.dataType === ONNX_FLOAT) return new Float32Array(aligned.buffer, aligned.byteOffset, n).slice();
  return fromBits(new Uint16Array(aligned.buffer, aligned.byteOffset, n), t.dataType === ONNX_FLOAT16 ? 'f16' : 'bf16');
}

/** float32 values encoded in the initializer's own data type. */
export function encodeLike(t: TensorProto, values: Float32Array): Uint8Array {
  if (t.dataType === ONNX_FLOAT) return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const conv = t.dataType === ONNX_FLOAT16 ? f32ToF16Bits : f32ToBf16Bits;
  const bits = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) bits[i] = conv(values[i]);
  return new Uint8Array(bits.buffer);
}

/** Appends tensors to one external data file and points their TensorProtos at it. */
export class ExternalDataWriter {
  readonly file: string;
  #fd: number;
  #offset = 0;

  constructor(file: string) {
    this.file = file;
    this.#fd = fs.openSync(file, 'w');
  }

  /** Writes `bytes` (aligned to 64) and rewrites t to reference them. */
  put(t: TensorProto, bytes: Uint8Array): void {
    const pad = (64 - (this.#offset % 64)) % 64;
    if (pad) {
      fs.writeSync(this.#fd, new Uint8Array(pad), 0, pad, this.#offset);
      this.#offset += pad;
    }
    let done = 0;
    while (done < bytes.length) done += fs.writeSync(this.#fd, bytes, done, bytes.length - done, this.#offset + done);
    t.dataLocation = EXTERNAL;
    t.rawData = new Uint8Array(0);
    t.floatData = [];
    t.int32Data = [];
    t.externalData = [
      metadataEntry('location', path.basename(this.file)),
      metadataEntry('offset', String(this.#offset)),
      metadataEntry('length', String(bytes.length)),
    ];
    this.#offset += bytes.length;
  }

  close(): void {
    fs.closeSync(this.#fd);
  }
}
