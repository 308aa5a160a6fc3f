// Stop strings over streamed text. The text decoded so far is checked for the earliest stop
// string; until a string is ruled out, the tail that could still become one is held back, so a
// stream never shows a stop string (or half of one) that the final text does not contain.
// A trailing U+FFFD (a character whose bytes have not all arrived) is held back too.

export interface StopCheck {
  /** text safe to show: ends before any stop string and any possible start of one */
  safe: string;
  /** true when a stop string was found; safe is then the final text */
  stopped: boolean;
}

export function checkStop(text: string, stops: readonly string[]): StopCheck {
  let cut = -1;
  for (const s of stops) {
    const at = text.indexOf(s);
    if (at >= 0 && (cut < 0 || at < cut)) cut = at;
  }
  if (cut >= 0) return { safe: text.slice(0, cut), stopped: true };
  let hold = 0;
  for (const s of stops) {
    for (let n = Math.min(s.length - 1, text.length); n > hold; n--) {
      if (text.endsWith(s.slice(0, n))) {
        hold = n;
        break;
      }
    }
  }
  let end = text.length - hold;
  while (end > 0 && text.charCodeAt(end - 1) === 0xfffd) end--;
  return { safe: text.slice(0, end), stopped: false };
}
