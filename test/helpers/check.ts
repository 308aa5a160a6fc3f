// Comparisons with useful failure messages: the worst element, its index, both values, the
// bound it broke, and the seed of the inputs.
import { seedNote } from './rng';

// Global lookups are slow inside jest's vm context: keep local references for the hot loops.
const abs = Math.abs;
const isNaNum = Number.isNaN;

/** Unit roundoff of float32 (round to nearest): one f32 add, multiply or fma of exact inputs
 *  is off by at most U32 times the magnitude of its result. */
export const U32 = 2 ** -24;

/** Absolute floor added to every bound: far below any value the tests produce (their data are
 *  O(1e-3..1e3)), so a reference value of exactly 0 with a magnitude of 0 demands an exact 0. */
export const TINY = 1e-35;

/**
 * Per-element absolute bounds |got - ref| <= bound[i]: got, ref the same length.
 * `bound` is one number for all elements or one per element. NaN anywhere in got (and not in
 * ref) fails. Equal values (Infinity included) always pass.
 */
export function expectClose(
  got: ArrayLike<number>, ref: ArrayLike<number>, bound: number | ArrayLike<number>, what: string,
): void {
  if (got.length !== ref.length) {
    throw new Error(`${what}: length ${got.length} but the reference has ${ref.length} (${seedNote()})`);
  }
  let worst = -1;
  let worstRatio = 0;
  let bad = 0;
  for (let i = 0; i < got.length; i++) {
    const g = got[i];
    const r = ref[i];
    if (g === r || (isNaNum(g) && isNaNum(r))) continue;
    const b = typeof bound === 'number' ? bound : bound[i];
    const d = abs(g - r);
    const ratio = isNaNum(d) ? Infinity : d / b;
    if (!(ratio <= 1)) bad++;
    if (worst < 0 || ratio > worstRatio || isNaNum(ratio)) {
      worst = i;
      worstRatio = ratio;
    }
  }
  if (bad > 0) {
    const b = typeof bound === 'number' ? bound : bound[worst];
    throw new Error(
      `${what}: ${bad} of ${got.length} elements outside the bound; worst at index ${worst}: ` +
        `got ${got[worst]}, reference ${ref[worst]}, |diff| ${abs(got[worst] - ref[worst])} > bound ${b} ` +
        `(${worstRatio.toPrecision(3)}x the bound) (${seedNote()})`,
    );
  }
}

/** The bit patterns of two float32 arrays are identical (NaN payloads and -0 included). */
export function expectBitsEqual(got: Float32Array, want: Float32Array, what: string): void {
  if (got.length !== want.length) {
    throw new Error(`${what}: length ${got.length}, expected ${want.length} (${seedNote()})`);
  }
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  let diff = 0;
  let first = -1;
  for (let i = 0; i < g.length; i++) {
    if (g[i] !== w[i]) {
      diff++;
      if (first < 0) first = i;
    }
  }
  if (diff > 0) {
    throw new Error(
      `${what}: ${diff} of ${g.length} elements differ in their bits; first at index ${first}: ` +
        `got ${got[first]} (0x${g[first].toString(16)}), expected ${want[first]} (0x${w[first].toString(16)}) ` +
        `(${seedNote()})`,
    );
  }
}

/** Integer arrays equal element by element, reporting the first difference. */
export function expectIntsEqual(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  if (got.length !== want.length) {
    throw new Error(`${what}: length ${got.length}, expected ${want.length} (${seedNote()})`);
  }
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== want[i]) {
      throw new Error(`${what}: first difference at index ${i}: got ${got[i]}, expected ${want[i]} (${seedNote()})`);
    }
  }
}

/** The addon makes its arrays in Node's main realm, which under jest is not the test's realm:
 *  `instanceof Float32Array` is false for them, so tests check the tag instead. */
export function typedArrayTag(v: unknown): string {
  return Object.prototype.toString.call(v).slice(8, -1);
}

/** A quiet NaN with a recognisable payload: what poisoned outputs hold until a kernel writes them. */
export const POISON_BITS = 0x7fc0dead;

/** Fills a Float32Array with POISON_BITS (returns it). */
export function poison(a: Float32Array): Float32Array {
  new Uint32Array(a.buffer, a.byteOffset, a.length).fill(POISON_BITS);
  return a;
}

/** Number of elements of a[from, to) that still hold the poison pattern. */
export function countPoisoned(a: Float32Array, from = 0, to = a.length): number {
  const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
  let n = 0;
  for (let i = from; i < to; i++) if (u[i] === POISON_BITS) n++;
  return n;
}

/** Number of NaNs (any payload) in a[from, to). */
export function countNaN(a: ArrayLike<number>, from = 0, to = a.length): number {
  let n = 0;
  for (let i = from; i < to; i++) if (isNaNum(a[i])) n++;
  return n;
}

/** Per-element absolute bound `units * U32 * magnitude + TINY` (1% headroom for γ_n = n·u/(1 - n·u)). */
export function boundFrom(magnitude: ArrayLike<number>, units: number, unit = U32): Float64Array {
  const out = new Float64Array(magnitude.length);
  for (let i = 0; i < out.length; i++) out[i] = 1.01 * units * unit * magnitude[i] + TINY;
  return out;
}

type ErrorClass = new (...args: never[]) => Error;

/**
 * e is an instance of cls, or of the class of that name in another realm: errors made by the
 * addon come from Node's main realm, whose TypeError is not the jest test realm's TypeError.
 */
export function isErrorOf(e: unknown, cls: ErrorClass): boolean {
  if (e instanceof cls) return true;
  for (let p = e === null || typeof e !== 'object' ? null : Object.getPrototypeOf(e); p; p = Object.getPrototypeOf(p)) {
    if (Object.prototype.hasOwnProperty.call(p, 'constructor') && p.constructor.name === cls.name) return true;
  }
  return false;
}

function checkError(e: unknown, cls: ErrorClass, patterns: RegExp[], what: string): void {
  if (!isErrorOf(e, Error)) throw new Error(`${what}: threw a non-Error ${String(e)}`);
  const err = e as Error;
  if (!isErrorOf(e, cls)) {
    throw new Error(`${what}: expected a ${cls.name} but got ${err.constructor.name}: ${err.message}`);
  }
  for (const p of patterns) {
    if (!p.test(err.message)) throw new Error(`${what}: the message "${err.message}" does not match ${p}`);
  }
}

/** fn() throws an instance of cls whose message matches every pattern. */
export function expectThrows(fn: () => unknown, cls: ErrorClass, ...patterns: RegExp[]): Error {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  if (caught === undefined) throw new Error(`expected a ${cls.name} matching ${patterns.join(', ')} but nothing was thrown`);
  checkError(caught, cls, patterns, 'thrown error');
  return caught as Error;
}

/**
 * An async call fails with an instance of cls matching every pattern, either by rejecting or by
 * throwing while it is called (the strict form, rejection only, is expectRejectsOnly).
 */
export async function expectAsyncFails(fn: () => Promise<unknown>, cls: ErrorClass, ...patterns: RegExp[]): Promise<Error> {
  let caught: unknown;
  let threw = false;
  try {
    await fn();
  } catch (e) {
    caught = e;
    threw = true;
  }
  if (!threw) throw new Error(`expected a ${cls.name} matching ${patterns.join(', ')} but the call resolved`);
  checkError(caught, cls, patterns, 'async failure');
  return caught as Error;
}

/** The call returns a Promise (it does not throw synchronously) and that Promise rejects with cls. */
export async function expectRejectsOnly(fn: () => Promise<unknown>, cls: ErrorClass, ...patterns: RegExp[]): Promise<void> {
  let p: Promise<unknown>;
  try {
    p = fn();
  } catch (e) {
    const msg = e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e);
    throw new Error(`expected a rejected Promise but the call threw synchronously: ${msg}`);
  }
  // the addon's Promises come from Node's main realm: check the tag, not instanceof
  if (typedArrayTag(p) !== 'Promise') throw new Error(`expected a Promise but the call returned ${String(p)}`);
  let caught: unknown;
  let rejected = false;
  try {
    await p;
  } catch (e) {
    caught = e;
    rejected = true;
  }
  if (!rejected) throw new Error(`expected the Promise to reject with a ${cls.name} but it resolved`);
  checkError(caught, cls, patterns, 'rejection');
}

/**
 * Runs fn, which must throw an Error in the package's fixed wording ("Expected … for … but
 * received …") containing every fragment (plain strings match literally); returns the error.
 */
export function expectError(fn: () => unknown, ...fragments: (string | RegExp)[]): Error {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(Error);
  const e = caught as Error;
  expect(e.message).toMatch(/^Expected .+ for .+ but received .+/s);
  for (const f of fragments) expect(e.message).toMatch(f instanceof RegExp ? f : new RegExp(f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  return e;
}
