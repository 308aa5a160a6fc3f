// Running the native toolchain from a test (cmake, compilers, the built C programs), in the
// repository root, with the failure's whole output in the error.
import { spawnSync, SpawnSyncReturns } from 'node:child_process';
import * as path from 'node:path';

export const root = path.resolve(__dirname, '..', '..');

export function run(cmd: string, args: string[], timeoutMs = 240_000): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', timeout: timeoutMs });
  if (r.error) throw r.error;
  return r;
}

/** stdout of a run that must have exited 0. */
export function ok(r: SpawnSyncReturns<string>, what: string): string {
  if (r.status !== 0) throw new Error(`${what} exited with ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Whether `cmd --version` runs. */
export function available(cmd: string): boolean {
  return spawnSync(cmd, ['--version'], { encoding: 'utf8' }).status === 0;
}
