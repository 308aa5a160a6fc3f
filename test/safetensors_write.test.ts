// writeSafetensors: what it writes, our reader and PEFT's layout read back exactly.
import { encodeSafetensors, parseSafetensors, tensorBits16, tensorF32 } from '../lib/adapters';
import { testRng } from './helpers/rng';

describe('encodeSafetensors', () => {
  test('round-trips F32 and F16/BF16 bits, metadata, order; the data starts 8-aligned', () => {
    const rng = testRng('st-write');
    const a = Float32Array.from({ length: 3 * 5 }, () => rng.uniform(-1, 1));
    const h = Uint16Array.from({ length: 7 }, () => rng.int(0, 0x7c00));
    const bytes = encodeSafetensors({ 'x.lora_A.weight': { dtype: 'F32', shape: [3, 5], data: a }, h: { dtype: 'BF16', shape: [7], data: h } }, { format: 'pt' });
    const headerLen = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    expect((8 + headerLen) % 8).toBe(0);
    const file = parseSafetensors(bytes);
    expect(file.metadata).toEqual({ format: 'pt' });
    expect([...file.tensors.keys()]).toEqual(['x.lora_A.weight', 'h']);
    expect(Array.from(tensorF32(file.tensors.get('x.lora_A.weight')!))).toEqual(Array.from(a));
    expect(Array.from(tensorBits16(file.tensors.get('h')!))).toEqual(Array.from(h));
  });

  test('a data length that does not match the shape is refused, naming the tensor', () => {
    expect(() => encodeSafetensors({ w: { dtype: 'F32', shape: [2, 2], data: new Float32Array(3) } })).toThrow(/tensors\.w\.data/);
  });
});
