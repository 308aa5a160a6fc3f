// A defensive reader for .safetensors files (https://github.com/huggingface/safetensors, format v1).
//
//   bytes [0, 8)        N: u64 little-endian, the header length
//   bytes [8, 8 + N)    the header: a UTF-8 JSON object
//                         { "<tensor name>": { "dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end] },
//                           ..., "__metadata__"?: { "<key>": "<string>" } }
//                       (writers pad it with spaces so that the data starts 8-aligned)
//   bytes [8 + N, EOF)  the data; each tensor's bytes are data[begin, end), row-major, little-endian
//
// Every rule below is checked before a single tensor is handed out, and each violation is an Error that
// names the file and the tensor, in the package's fixed wording ("Expected <what> for <arg> but received
// <value>"): a malformed or hostile file never crashes the process, never allocates what its header claims
// before the claim is checked against the file's size, and never yields a view past the data.
//   - N >= 2, N <= 100 MiB, N <= file size - 8
//   - the header is valid UTF-8, valid JSON, and a JSON object; __metadata__, if present, maps strings to strings
//   - each tensor: dtype known; shape a list of non-negative integers; data_offsets two integers with
//     begin <= end <= data size; end - begin == product(shape) * dtype size
//   - no two tensors overlap; no gaps: the tensors tile the data exactly (as the reference implementation
//     demands; `allowGaps` relaxes this)
import * as fs from 'node:fs';
import * as os from 'node:os';
import { describe, rangeError, typeError } from '../errors';
import { fromBits } from '../kernels/dtype';

/** Bytes per element of every dtype the format defines. */
export const SAFETENSORS_DTYPE_SIZES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
} as const;

export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPE_SIZES;

export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  /** The tensor's bytes: a view into the file's data, never a copy. */
  data: Uint8Array;
}

export interface SafetensorsFile {
  /** Where it came from (a path, or the name given to parseSafetensors). */
  source: string;
  /** The header's __metadata__ (empty when absent). */
  metadata: Record<string, string>;
  /** Tensors in order of their data offsets. */
  tensors: Map<string, SafetensorsTensor>;
}

export interface SafetensorsOptions {
  /** Accept unused bytes between or after tensors (the reference implementation refuses them). Default false. */
  allowGaps?: boolean;
}

/** The largest header accepted (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const LITTLE_ENDIAN = os.endianness() === 'LE';

/** Reads and validates a .safetensors file. Only the header is read before it has been checked. */
export function readSafetensors(path: string, options: SafetensorsOptions = {}): SafetensorsFile {
  if (typeof path !== 'string') throw typeError('path', 'a file path string', path);
  const fd = fs.openSync(path, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const prefix = readExactly(fd, 0, Math.min(8, size));
    const headerLength = checkHeaderLength(prefix, size, path);
    const header = readExactly(fd, 8, headerLength);
    const dataSize = size - 8 - headerLength;
    const entries = parseHeader(header, dataSize, path, options);
    // A fresh ArrayBuffer: tensor views are aligned exactly as their offsets are.
    const data = dataSize > 0 ? readExactly(fd, 8 + headerLength, dataSize) : new Uint8Array(0);
    return build(entries, data, path);
  } finally {
    fs.closeSync(fd);
  }
}

/** Validates the bytes of a whole .safetensors file held in memory. Views point into `bytes`. */
export function parseSafetensors(bytes: Uint8Array, source = 'the buffer', options: SafetensorsOptions = {}): SafetensorsFile {
  if (!(bytes instanceof Uint8Array)) throw typeError('bytes', 'a Uint8Array', bytes);
  const headerLength = checkHeaderLength(bytes.subarray(0, 8), bytes.length, source);
  const dataSize = bytes.length - 8 - headerLength;
  const entries = parseHeader(bytes.subarray(8, 8 + headerLength), dataSize, source, options);
  return build(entries, bytes.subarray(8 + headerLength), source);
}

/** An F32 tensor's values: a view into the file's data when 4-aligned (on a little-endian host), else a copy. */
export function tensorF32(t: SafetensorsTensor, name = 'tensor'): Float32Array {
  if (t.dtype !== 'F32') throw typeError(name, 'a tensor of dtype F32', `${t.dtype} tensor`);
  return view(t, 4, Float32Array);
}

/** An F16 or BF16 tensor's raw 16-bit patterns (see kernels.f16BitsToF32 / bf16BitsToF32): a view when
 *  2-aligned (on a little-endian host), else a copy. */
export function tensorBits16(t: SafetensorsTensor, name = 'tensor'): Uint16Array {
  if (t.dtype !== 'F16' && t.dtype !== 'BF16') throw typeError(name, 'a tensor of dtype F16 or BF16', `${t.dtype} tensor`);
  return view(t, 2, Uint16Array);
}

/** An F32, F16 or BF16 tensor's values as float32: a view of F32 data, 16-bit values widened (exactly) into a copy. */
export function tensorAsF32(t: SafetensorsTensor, name = 'tensor'): Float32Array {
  if (t.dtype === 'F32') return tensorF32(t, name);
  if (t.dtype !== 'F16' && t.dtype !== 'BF16') throw typeError(name, 'a tensor of dtype F32, F16 or BF16', `${t.dtype} tensor`);
  return fromBits(tensorBits16(t, name), t.dtype === 'BF16' ? 'bf16' : 'f16');
}

// ---------------------------------------------------------------------------------------------------------

interface Entry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

interface ParsedHeader {
  metadata: Record<string, string>;
  entries: Entry[];
}

type TypedCtor<T> = { new (buffer: ArrayBufferLike, byteOffset: number, length: number): T; new (length: number): T };

function view<T extends Float32Array | Uint16Array>(t: SafetensorsTensor, size: number, Ctor: TypedCtor<T>): T {
  const n = t.data.byteLength / size;
  if (LITTLE_ENDIAN && t.data.byteOffset % size === 0) return new Ctor(t.data.buffer, t.data.byteOffset, n);
  const out = new Ctor(n);
  if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(t.data);
  else {
    const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    for (let i = 0; i < n; i++) out[i] = size === 4 ? dv.getFloat32(i * 4, true) : dv.getUint16(i * 2, true);
  }
  return out;
}

function readExactly(fd: number, position: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, out, done, length - done, position + done);
    if (n === 0) throw rangeError('the file', `${length} bytes at offset ${position}`, `${done} (the file shrank while being read)`);
    done += n;
  }
  return out;
}

function checkHeaderLength(prefix: Uint8Array, fileSize: number, source: string): number {
  if (prefix.length < 8 || fileSize < 10) {
    throw rangeError(source, 'a safetensors file of at least 10 bytes (an 8-byte header length, then the header)',
      `a file of ${fileSize} bytes`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  const limit = Math.min(MAX_HEADER_BYTES, fileSize - 8);
  if (n < 2n || n > BigInt(limit)) {
    const why = n > BigInt(fileSize - 8) ? ` (the file has only ${fileSize - 8} bytes after the length)` : '';
    throw rangeError(`the header length of ${source}`,
      `an integer between 2 and ${limit} (at most 100 MiB and the file size less 8)`, `${n}${why}`);
  }
  return Number(n);
}

function parseHeader(bytes: Uint8Array, dataSize: number, source: string, options: SafetensorsOptions): ParsedHeader {
  const where = `the header of ${source}`;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw rangeError(where, 'valid UTF-8', 'bytes that are not UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw rangeError(where, 'a JSON object', `text that is not JSON (${(err as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw typeError(where, 'a JSON object', json);
  }
  const metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, info] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (info === null) continue;
      if (typeof info !== 'object' || Array.isArray(info)) throw typeError(`__metadata__ in ${source}`, 'an object of strings', info);
      for (const [k, v] of Object.entries(info as Record<string, unknown>)) {
        if (typeof v !== 'string') throw typeError(`__metadata__['${k}'] in ${source}`, 'a string', v);
        metadata[k] = v;
      }
      continue;
    }
    entries.push(checkEntry(name, info, dataSize, source));
  }
  checkLayout(entries, dataSize, source, options);
  return { metadata, entries };
}

function checkEntry(name: string, info: unknown, dataSize: number, source: string): Entry {
  const where = `tensor '${name}' in ${source}`;
  if (typeof info !== 'object' || info === null || Array.isArray(info)) {
    throw typeError(where, 'an object with dtype, shape and data_offsets', info);
  }
  const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>;
  if (typeof dtype !== 'string' || !Object.prototype.hasOwnProperty.call(SAFETENSORS_DTYPE_SIZES, dtype)) {
    const expected = `one of ${Object.keys(SAFETENSORS_DTYPE_SIZES).join(', ')}`;
    if (typeof dtype === 'string') throw rangeError(`the dtype of ${where}`, expected, describe(dtype));
    throw typeError(`the dtype of ${where}`, expected, dtype);
  }
  if (!Array.isArray(shape)) throw typeError(`the shape of ${where}`, 'a list of non-negative integers', shape);
  let elements = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw rangeError(`the shape of ${where}`, 'a list of non-negative integers', JSON.stringify(shape));
    }
    elements *= d;
    if (elements > Number.MAX_SAFE_INTEGER) {
      throw rangeError(`the shape of ${where}`, 'a shape that fits the file', JSON.stringify(shape));
    }
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0)) {
    throw rangeError(`the data_offsets of ${where}`, 'two non-negative integers [begin, end]', JSON.stringify(offsets) ?? 'undefined');
  }
  const [begin, end] = offsets as number[];
  if (begin > end || end > dataSize) {
    throw rangeError(`the data_offsets of ${where}`, `[begin, end] with begin <= end <= ${dataSize} (the data size)`,
      JSON.stringify(offsets));
  }
  const size = SAFETENSORS_DTYPE_SIZES[dtype as SafetensorsDtype];
  if (end - begin !== elements * size) {
    throw rangeError(`the data_offsets of ${where}`,
      `${elements * size} bytes (shape ${JSON.stringify(shape)} of ${dtype}, ${size} bytes each)`,
      `${end - begin} bytes [${begin}, ${end}]`);
  }
  return { name, dtype: dtype as SafetensorsDtype, shape: shape.slice() as number[], begin, end };
}

function checkLayout(entries: Entry[], dataSize: number, source: string, options: SafetensorsOptions): void {
  entries.sort((x, y) => x.begin - y.begin || x.end - y.end);
  let cursor = 0;
  let previous: Entry | undefined;
  for (const e of entries) {
    if (e.begin < cursor) {
      throw rangeError(`the data_offsets of tensor '${e.name}' in ${source}`,
        `bytes that no other tensor uses (tensor '${previous!.name}' ends at ${cursor})`, `[${e.begin}, ${e.end}]`);
    }
    if (e.begin > cursor && !options.allowGaps) {
      throw rangeError(`the data_offsets of tensor '${e.name}' in ${source}`,
        `a tensor starting at ${cursor} (where the previous one ends: the format leaves no gaps)`, `[${e.begin}, ${e.end}]`);
    }
    cursor = Math.max(cursor, e.end);
    previous = e;
  }
  if (cursor !== dataSize && !options.allowGaps) {
    throw rangeError(`the data of ${source}`, `${dataSize} bytes used by the tensors (no trailing bytes)`,
      `tensors ending at ${cursor}`);
  }
}

function build(parsed: ParsedHeader, data: Uint8Array, source: string): SafetensorsFile {
  const tensors = new Map<string, SafetensorsTensor>();
  for (const e of parsed.entries) {
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: data.subarray(e.begin, e.end) });
  }
  return { source, metadata: parsed.metadata, tensors };
}
