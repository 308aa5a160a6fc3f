// How many cores this process may use: os.availableParallelism() (Node 20's libuv reads the CPU
// affinity but not a cgroup's CPU quota), capped by the cgroup v2 quota in /sys/fs/cgroup/cpu.max,
// so a container limited to 2 CPUs on a 64-core node counts 2, not 64. Every default thread count
// (onnxruntime's threads per session, the cores replicas share, the server's plan) starts here: 64
// threads in a 2-CPU container each get a sliver of a core and wait on each other at every operator.
import * as fs from 'node:fs';
import * as os from 'node:os';

/** os.availableParallelism(), capped by a cgroup v2 CPU quota ("<quota> <period>", or "max <period>"). */
export function usableCores(cpuMax = '/sys/fs/cgroup/cpu.max'): number {
  const cores = os.availableParallelism();
  let text: string;
  try {
    text = fs.readFileSync(cpuMax, 'utf8');
  } catch {
    return cores; // no cgroup v2 here
  }
  const [quota, period] = text.trim().split(/\s+/).map(Number);
  if (!(quota > 0) || !(period > 0)) return cores; // 'max': no quota
  return Math.max(1, Math.min(cores, Math.ceil(quota / period)));
}
