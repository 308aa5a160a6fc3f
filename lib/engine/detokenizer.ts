// Text deltas of a growing token sequence without decoding the whole sequence at every token
// (the prefix/read offsets of text-generation-inference's decode_token): decode a short window
// twice — without and with the new tokens — and emit the difference. Decoding the window's
// first token in both keeps decoders that drop a leading space (Metaspace) consistent; a
// window ending in U+FFFD (a character whose bytes are still arriving) waits for more tokens.
export class Detokenizer {
  #prefix = 0;
  #read = 0;

  constructor(private readonly decode: (ids: readonly number[]) => string) {}

  /** The text that tokens[read..] add; advances past it. */
  next(tokens: readonly number[]): string {
    const before = this.decode(tokens.slice(this.#prefix, this.#read));
    const after = this.decode(tokens.slice(this.#prefix));
    if (after.length <= before.length || after.endsWith('\ufffd')) return '';
    this.#prefix = this.#read;
    this.#read = tokens.length;
    return after.slice(before.length);
  }
}
