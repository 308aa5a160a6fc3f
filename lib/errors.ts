// One error factory with fixed wording, the same as the native layer's:
//   "Expected <what> for <argument> but received <value>"
// TypeError when the kind of value is wrong, RangeError when its size or contents are.

export function describe(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
    return `${v.constructor.name} of length ${(v as unknown as { length: number }).length}`;
  }
  if (Array.isArray(v)) return `Array of length ${v.length}`;
  if (typeof v === 'string') return `'${v}' of type string`;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return `${String(v)} of type ${typeof v}`;
  if (typeof v === 'function') return 'a function';
  return 'an object';
}

export function typeError(arg: string, expected: string, received: unknown): TypeError {
  return new TypeError(`Expected ${expected} for ${arg} but received ${describe(received)}`);
}

export function rangeError(arg: string, expected: string, received: string): RangeError {
  return new RangeError(`Expected ${expected} for ${arg} but received ${received}`);
}

/** Thrown when a disposed object (a bank, a model) is used. */
export class DisposedError extends Error {
  constructor(what: string) {
    super(`${what} is disposed`);
    this.name = 'DisposedError';
  }
}

export function expectInteger(v: unknown, arg: string, lo: number, hi: number): number {
  const expected = `an integer between ${lo} and ${hi}`;
  if (typeof v !== 'number') throw typeError(arg, expected, v);
  if (!Number.isInteger(v) || v < lo || v > hi) throw rangeError(arg, expected, describe(v));
  return v;
}
