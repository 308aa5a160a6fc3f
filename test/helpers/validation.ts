// The argument-validation cases of each op (test/<op>.test.ts, test/binding.test.ts): every bad
// argument is a TypeError (wrong kind of value) or RangeError (wrong size or contents) whose
// message names the argument; async variants fail the same way; nothing crashes the process; a
// refused call writes nothing. Here: one small bank with valid arguments for every op (each test
// breaks exactly one of them), and the check that the sync and async variants fail alike.
import { binding } from '../../lib/kernels/binding';
import { randomBank } from './bank';
import { expectAsyncFails, expectThrows, poison } from './check';
import { testRng } from './rng';

export type ErrorClass = new (...args: never[]) => Error;

/** The sync call throws and the async one fails (rejects, or throws while called) alike. */
export async function bothFail(
  sync: () => unknown, async: () => Promise<unknown>, cls: ErrorClass, ...patterns: RegExp[]
): Promise<void> {
  expectThrows(sync, cls, ...patterns);
  await expectAsyncFails(async, cls, ...patterns);
}

// The fixture's bank (experts E, rank r, din, dout) and its T tokens or requests of k slots.
export const E = 3, r = 2, din = 5, dout = 4, T = 2, k = 2;

export function fixture() {
  const rng = testRng();
  const { bank } = randomBank(rng, { E, r, din, dout });
  return {
    rng,
    bank,
    x: rng.f32(T * din),
    ids: Int32Array.from([0, 1, 2, -1]),
    w: rng.f32(T * k),
    y: rng.f32(T * dout),
    out: () => ({ a: poison(new Float32Array(3 * din * k * r)), b: poison(new Float32Array(3 * k * r * dout)), rankCapacity: k * r, slots: Int32Array.from([2, 0]) }),
    mIds: Int32Array.from([0, 2]),
    mW: rng.f32(2),
    W: rng.f32(din * dout),
  };
}

export type Fixture = ReturnType<typeof fixture>;

/** The raw native binding, to show the C++ layer validates on its own (the TS layer is thin). */
export const nb = () => binding();

/** The fixture with the bank's native handle, for calls to the raw binding. */
export const nativeFixture = () => {
  const f = fixture();
  return { ...f, nbank: f.bank.native };
};
