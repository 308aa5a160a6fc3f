// The defensive safetensors reader: real files written by transformers/peft (test/fixtures, see FIXTURES.md),
// and hostile files written to a temp dir, each of which must fail with a clear error naming file and tensor.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  MAX_HEADER_BYTES, parseSafetensors, readSafetensors, SafetensorsDtype, SafetensorsTensor, tensorAsF32, tensorBits16, tensorF32,
} from '../lib/adapters/safetensors';
import { encodeSafetensors, TensorToWrite } from '../lib/adapters/safetensors_write';
import { bf16BitsToF32, f16BitsToF32 } from '../lib/kernels/dtype';
import { expectError } from './helpers/check';

const FIXTURE = path.join(__dirname, 'fixtures', 'tiny-llama');
const samples = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'tensor_samples.json'), 'utf8')).files as Record<
  string, Record<string, { dtype: string; shape: number[]; first: number[]; sum: number; abs_sum: number }>>;

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-safetensors-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

// ---- helpers: write files byte by byte -------------------------------------------------------------------

let counter = 0;
function writeFile(bytes: Uint8Array): string {
  const file = path.join(tmp, `t${counter++}.safetensors`);
  fs.writeFileSync(file, bytes);
  return file;
}

/** An 8-byte length (default: the header's), the header text, then `data`. */
function rawFile(header: string | Uint8Array, data: Uint8Array = new Uint8Array(0), length?: bigint): string {
  const h = typeof header === 'string' ? new TextEncoder().encode(header) : header;
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return writeFile(out);
}

/** A header object as JSON (padded to 8 like the reference writer) with `dataSize` zero bytes of data. */
function headerFile(header: unknown, dataSize: number): string {
  let text = JSON.stringify(header);
  while ((8 + text.length) % 8) text += ' ';
  return rawFile(text, new Uint8Array(dataSize));
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function valuesF64(t: SafetensorsTensor): Float64Array {
  if (t.dtype === 'F32') return Float64Array.from(tensorF32(t));
  const conv = t.dtype === 'F16' ? f16BitsToF32 : bf16BitsToF32;
  return Float64Array.from(tensorBits16(t), (h) => conv(h));
}


// ---- real files ------------------------------------------------------------------------------------------

describe('fixture files (written by transformers and peft)', () => {
  const files = Object.keys(samples);

  test('the fixtures list model.safetensors and every adapter', () => {
    expect(files).toContain('model.safetensors');
    expect(files.filter((f) => f.startsWith('adapters/')).length).toBeGreaterThanOrEqual(4);
  });

  test.each(files)('%s: every tensor with its dtype, shape and values', (rel) => {
    const file = readSafetensors(path.join(FIXTURE, rel));
    expect(file.metadata).toEqual({ format: 'pt' });
    const expected = samples[rel];
    expect([...file.tensors.keys()].sort()).toEqual(Object.keys(expected).sort());
    const dtypeName = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' } as Record<string, string>;
    for (const [name, t] of file.tensors) {
      const e = expected[name];
      expect(dtypeName[t.dtype]).toBe(e.dtype);
      expect(t.shape).toEqual(e.shape);
      const v = valuesF64(t);
      expect(v.length).toBe(e.shape.reduce((x, y) => x * y, 1));
      for (let i = 0; i < e.first.length; i++) expect(v[i]).toBeCloseTo(e.first[i], 8);
      let sum = 0;
      let abs = 0;
      for (const x of v) {
        sum += x;
        abs += Math.abs(x);
      }
      expect(Math.abs(sum - e.sum)).toBeLessThan(1e-9 * Math.max(1, e.abs_sum));
      expect(Math.abs(abs - e.abs_sum)).toBeLessThan(1e-9 * Math.max(1, e.abs_sum));
    }
  });

  test('F32, F16 and BF16 files are all among them', () => {
    const dtypes = new Set(files.flatMap((f) => [...readSafetensors(path.join(FIXTURE, f)).tensors.values()].map((t) => t.dtype)));
    expect([...dtypes].sort()).toEqual(['BF16', 'F16', 'F32']);
  });

  test('parseSafetensors on the bytes gives the same tensors as readSafetensors', () => {
    const rel = 'adapters/extraversion_low/adapter_model.safetensors';
    const a = readSafetensors(path.join(FIXTURE, rel));
    const b = parseSafetensors(fs.readFileSync(path.join(FIXTURE, rel)), rel);
    expect([...b.tensors.keys()]).toEqual([...a.tensors.keys()]);
    for (const [k, t] of a.tensors) expect(Buffer.from(b.tensors.get(k)!.data).equals(Buffer.from(t.data))).toBe(true);
  });

  test('tensors come in order of their offsets and tile the data', () => {
    const file = readSafetensors(path.join(FIXTURE, 'model.safetensors'));
    let end = -1;
    for (const t of file.tensors.values()) {
      if (end >= 0) expect(t.data.byteOffset).toBe(end);
      end = t.data.byteOffset + t.data.byteLength;
    }
  });
});

// ---- typed accessors -------------------------------------------------------------------------------------

describe('typed accessors', () => {
  const f32 = Float32Array.from([1.5, -2.25, 3.125]);
  const f16 = Uint16Array.from([0x3c00, 0xc000, 0x3555]); // 1, -2, ~0.3333
  const bf16 = Uint16Array.from([0x3f80, 0xc040]); // 1, -3

  test('aligned tensors are views into the file data (no copy)', () => {
    const file = readSafetensors(writeFile(encodeSafetensors({
      w: { dtype: 'F32', shape: [3], data: bytesOf(f32) },
      h: { dtype: 'F16', shape: [3], data: bytesOf(f16) },
    })));
    const w = file.tensors.get('w')!;
    const view = tensorF32(w);
    expect(Array.from(view)).toEqual(Array.from(f32));
    expect(view.buffer).toBe(w.data.buffer);
    const h = tensorBits16(file.tensors.get('h')!);
    expect(Array.from(h)).toEqual(Array.from(f16));
    expect(h.buffer).toBe(w.data.buffer);
  });

  test('unaligned tensors are copied, with the right values', () => {
    const file = readSafetensors(writeFile(encodeSafetensors({
      pad: { dtype: 'U8', shape: [1], data: Uint8Array.from([7]) },
      h: { dtype: 'BF16', shape: [2], data: bytesOf(bf16) },
      pad2: { dtype: 'U8', shape: [1], data: Uint8Array.from([9]) },
      w: { dtype: 'F32', shape: [3], data: bytesOf(f32) },
    })));
    const h = file.tensors.get('h')!;
    expect(h.data.byteOffset % 2).toBe(1);
    const hb = tensorBits16(h);
    expect(Array.from(hb, bf16BitsToF32)).toEqual([1, -3]);
    expect(hb.buffer).not.toBe(h.data.buffer);
    const w = file.tensors.get('w')!;
    expect(w.data.byteOffset % 4).not.toBe(0);
    expect(Array.from(tensorF32(w))).toEqual(Array.from(f32));
    expect(Array.from(file.tensors.get('pad')!.data)).toEqual([7]);
  });

  test('accessors refuse the wrong dtype', () => {
    const file = readSafetensors(writeFile(encodeSafetensors({
      w: { dtype: 'F32', shape: [3], data: bytesOf(f32) },
      i: { dtype: 'I64', shape: [1], data: new Uint8Array(8) },
    })));
    expectError(() => tensorBits16(file.tensors.get('w')!, 'w'), 'F16 or BF16', 'F32');
    expectError(() => tensorF32(file.tensors.get('i')!, 'i'), 'F32', 'I64');
    expectError(() => tensorAsF32(file.tensors.get('i')!, 'i'), 'F32, F16 or BF16', 'I64');
  });

  test('tensorAsF32 views F32 in place and widens F16 / BF16 exactly into a copy', () => {
    const file = readSafetensors(writeFile(encodeSafetensors({
      w: { dtype: 'F32', shape: [3], data: bytesOf(f32) },
      h: { dtype: 'F16', shape: [3], data: bytesOf(f16) },
      b: { dtype: 'BF16', shape: [2], data: bytesOf(bf16) },
    })));
    const w = file.tensors.get('w')!;
    expect(tensorAsF32(w).buffer).toBe(w.data.buffer);
    expect(Array.from(tensorAsF32(file.tensors.get('h')!))).toEqual(Array.from(f16, f16BitsToF32));
    expect(Array.from(tensorAsF32(file.tensors.get('b')!))).toEqual([1, -3]);
  });

  test('every dtype of the format is read, zero-size tensors included', () => {
    const dtypes: [SafetensorsDtype, number][] = [['F64', 8], ['I64', 8], ['U64', 8], ['I32', 4], ['U32', 4], ['I16', 2],
      ['U16', 2], ['I8', 1], ['U8', 1], ['BOOL', 1], ['F8_E4M3', 1], ['F8_E5M2', 1]];
    const tensors: Record<string, TensorToWrite> = {};
    for (const [d, size] of dtypes) tensors[d] = { dtype: d, shape: [2, 1], data: new Uint8Array(2 * size).fill(1) };
    tensors.empty = { dtype: 'F32', shape: [0, 5], data: new Uint8Array(0) };
    tensors.scalar = { dtype: 'F32', shape: [], data: bytesOf(Float32Array.from([4])) };
    const file = readSafetensors(writeFile(encodeSafetensors(tensors, { note: 'hi' })));
    expect(file.metadata).toEqual({ note: 'hi' });
    for (const [d, size] of dtypes) expect(file.tensors.get(d)!.data.byteLength).toBe(2 * size);
    expect(tensorF32(file.tensors.get('empty')!).length).toBe(0);
    expect(Array.from(tensorF32(file.tensors.get('scalar')!))).toEqual([4]);
  });

  test('a file with no tensors at all is valid', () => {
    const file = readSafetensors(headerFile({ __metadata__: { format: 'pt' } }, 0));
    expect(file.tensors.size).toBe(0);
  });
});

// ---- hostile files ---------------------------------------------------------------------------------------

describe('hostile files fail with a clear error naming the file (and the tensor)', () => {
  const t = (extra: Record<string, unknown> = {}) => ({ dtype: 'F32', shape: [2], data_offsets: [0, 8], ...extra });

  test('a file too short to hold the header length', () => {
    const file = writeFile(Uint8Array.from([1, 2, 3]));
    expectError(() => readSafetensors(file), file, 'at least 10 bytes', '3 bytes');
    expectError(() => readSafetensors(writeFile(new Uint8Array(0))), '0 bytes');
  });

  test('a huge header length (2^64 - 1), and one past the end of the file', () => {
    const huge = rawFile('{}', new Uint8Array(0), 0xffffffffffffffffn);
    expectError(() => readSafetensors(huge), `the header length of ${huge}`, '18446744073709551615');
    const past = rawFile('{"a":1}', new Uint8Array(16), 1000n);
    expectError(() => readSafetensors(past), past, '1000', 'only 23 bytes after the length');
  });

  test('a header length above 100 MiB is refused before anything is allocated', () => {
    const file = rawFile('{}', new Uint8Array(0), BigInt(MAX_HEADER_BYTES + 1));
    expectError(() => readSafetensors(file), String(MAX_HEADER_BYTES + 1));
  });

  test('a header length below 2', () => {
    expectError(() => readSafetensors(rawFile('{}', new Uint8Array(8), 1n)), 'between 2 and');
    expectError(() => readSafetensors(rawFile('{}', new Uint8Array(8), 0n)), 'between 2 and');
  });

  test('a header that is not UTF-8', () => {
    const file = rawFile(Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d]));
    expectError(() => readSafetensors(file), `the header of ${file}`, 'UTF-8');
  });

  test('a header that is not JSON', () => {
    const file = rawFile('{"w": {"dtype": "F32", ');
    expectError(() => readSafetensors(file), `the header of ${file}`, 'not JSON');
    expectError(() => readSafetensors(rawFile('hello world')), 'not JSON');
  });

  test('a header that is JSON but not an object', () => {
    for (const text of ['[1, 2, 3]', '42', 'null', '"text"', 'true']) {
      const file = rawFile(text);
      expectError(() => readSafetensors(file), `the header of ${file}`, 'a JSON object');
    }
  });

  test('a tensor entry that is not an object', () => {
    const file = headerFile({ w: [1, 2] }, 0);
    expectError(() => readSafetensors(file), `tensor 'w' in ${file}`, 'dtype, shape and data_offsets');
  });

  test('an unknown or missing dtype', () => {
    const file = headerFile({ 'layer.w': t({ dtype: 'F128' }) }, 8);
    expectError(() => readSafetensors(file), `tensor 'layer.w' in ${file}`, "'F128'", 'F32');
    expectError(() => readSafetensors(headerFile({ w: t({ dtype: undefined }) }, 8)), "tensor 'w'", 'undefined');
    expectError(() => readSafetensors(headerFile({ w: t({ dtype: 'f32' }) }, 8)), "'f32'");
    expectError(() => readSafetensors(headerFile({ w: t({ dtype: 'toString' }) }, 8)), "'toString'");
  });

  test('negative, fractional, non-numeric or absent shapes', () => {
    for (const shape of [[-2], [2.5], ['2'], [null], [1e300, 1e300]]) {
      const file = headerFile({ w: t({ shape }) }, 8);
      expectError(() => readSafetensors(file), `the shape of tensor 'w' in ${file}`);
    }
    expectError(() => readSafetensors(headerFile({ w: t({ shape: 2 }) }, 8)), "the shape of tensor 'w'", 'list');
    expectError(() => readSafetensors(headerFile({ w: t({ shape: undefined }) }, 8)), "the shape of tensor 'w'");
  });

  test('a shape whose size overflows is refused without allocating', () => {
    const file = headerFile({ w: t({ shape: [2 ** 40, 2 ** 40] }) }, 8);
    expectError(() => readSafetensors(file), "the shape of tensor 'w'");
  });

  test('data_offsets out of range, reversed, malformed', () => {
    const file = headerFile({ w: t({ data_offsets: [0, 16] }) }, 8);
    expectError(() => readSafetensors(file), `the data_offsets of tensor 'w' in ${file}`, '<= 8 (the data size)', '[0,16]');
    expectError(() => readSafetensors(headerFile({ w: t({ data_offsets: [8, 0] }) }, 8)), 'begin <= end', '[8,0]');
    for (const data_offsets of [[0], [0, 8, 9], [-8, 0], [0.5, 8.5], ['0', '8'], null, { begin: 0 }]) {
      expectError(() => readSafetensors(headerFile({ w: t({ data_offsets }) }, 8)), "the data_offsets of tensor 'w'");
    }
  });

  test('a byte length that does not match shape × dtype size', () => {
    const file = headerFile({ w: t({ shape: [3] }) }, 8);
    expectError(() => readSafetensors(file), `tensor 'w' in ${file}`, '12 bytes', '8 bytes [0, 8]');
    expectError(() => readSafetensors(headerFile({ w: t({ dtype: 'F16' }) }, 8)), '4 bytes', 'F16');
  });

  test('overlapping tensors', () => {
    const file = headerFile({ a: t({ shape: [4], data_offsets: [0, 16] }), b: t({ data_offsets: [8, 16] }) }, 16);
    expectError(() => readSafetensors(file), `tensor 'b' in ${file}`, "tensor 'a' ends at 16", '[8, 16]');
    const same = headerFile({ a: t(), b: t() }, 8);
    expectError(() => readSafetensors(same), "tensor 'b'", "'a'");
  });

  test('gaps between tensors or unused trailing bytes (accepted with allowGaps)', () => {
    const gap = headerFile({ a: t(), b: t({ data_offsets: [12, 20] }) }, 20);
    expectError(() => readSafetensors(gap), `tensor 'b' in ${gap}`, 'starting at 8', 'no gaps');
    expect(readSafetensors(gap, { allowGaps: true }).tensors.size).toBe(2);
    const trailing = headerFile({ a: t() }, 12);
    expectError(() => readSafetensors(trailing), `the data of ${trailing}`, '12 bytes', 'ending at 8');
    expect(readSafetensors(trailing, { allowGaps: true }).tensors.get('a')!.data.byteLength).toBe(8);
  });

  test('__metadata__ that is not a map of strings', () => {
    const file = headerFile({ __metadata__: { format: 1 }, a: t() }, 8);
    expectError(() => readSafetensors(file), `__metadata__['format'] in ${file}`, 'a string');
    expectError(() => readSafetensors(headerFile({ __metadata__: [1], a: t() }, 8)), '__metadata__', 'object of strings');
  });

  test('parseSafetensors names its source the same way', () => {
    expectError(() => parseSafetensors(Uint8Array.from([1, 2]), 'upload.safetensors'), 'upload.safetensors');
    expectError(() => parseSafetensors('nope' as unknown as Uint8Array), 'Uint8Array');
  });

  test('random corruption of a real file only ever gives a clear error or a valid file', () => {
    const original = fs.readFileSync(path.join(FIXTURE, 'adapters', 'neuroticism_low', 'adapter_model.safetensors'));
    let seed = 12345;
    const rand = () => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed / 2 ** 32;
    };
    const headerEnd = 8 + Number(original.readBigUInt64LE(0));
    let errors = 0;
    for (let i = 0; i < 300; i++) {
      const bytes = Uint8Array.from(original);
      const edits = 1 + Math.floor(rand() * 3);
      for (let j = 0; j < edits; j++) {
        const at = Math.floor(rand() * (rand() < 0.8 ? headerEnd : bytes.length));
        bytes[at] = Math.floor(rand() * 256);
      }
      const cut = rand() < 0.2 ? bytes.subarray(0, Math.floor(rand() * bytes.length)) : bytes;
      try {
        const file = parseSafetensors(cut, `mutant ${i}`);
        for (const t of file.tensors.values()) expect(t.data.byteLength).toBeLessThanOrEqual(cut.length);
      } catch (err) {
        errors++;
        expect(err).toBeInstanceOf(Error);
        expect((err as Error).message).toMatch(/^Expected .+ for .*mutant \d+.* but received /s);
      }
    }
    expect(errors).toBeGreaterThan(100);
  });
});
