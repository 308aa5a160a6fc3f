// A progress bar on stderr for long work (injection, merging), only when stderr is a terminal
// and the output is not --json.
import { MultiBar, Presets, SingleBar } from 'cli-progress';
import { Progress } from '../onnx/write';

/** Runs `work` with a progress callback; the bar is stopped however the work ends (a thrown
 *  error must not leave the terminal with a hidden cursor and a half-drawn bar). */
export function withProgressBar<T>(flags: { json?: boolean }, work: (onProgress: Progress) => T): T {
  const bar = progressBar(flags);
  let result: T;
  try {
    result = work(bar.onProgress);
  } catch (err) {
    bar.stop();
    throw err;
  }
  if (result instanceof Promise) return result.finally(() => bar.stop()) as T;
  bar.stop();
  return result;
}

function progressBar(flags: { json?: boolean } = {}): { onProgress: Progress; stop: () => void } {
  if (flags.json || process.stderr.isTTY !== true) return { onProgress: () => undefined, stop: () => undefined };
  const multi = new MultiBar({ format: ' {stage} |{bar}| {value}/{total}', hideCursor: true, clearOnComplete: false }, Presets.shades_classic);
  const bars = new Map<string, SingleBar>();
  return {
    onProgress: (stage, done, total) => {
      let bar = bars.get(stage);
      if (!bar) {
        bar = multi.create(total, 0, { stage });
        bars.set(stage, bar);
      }
      bar.setTotal(total);
      bar.update(done, { stage });
    },
    stop: () => multi.stop(),
  };
}
