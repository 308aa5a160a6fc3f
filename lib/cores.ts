// How many cores this process may use: os.availableParallelism() (Node 20's libuv reads the CPU
// affinity but not a cgroup's CPU quota), capped by the CPU quota of the cgroup this process is in,
// so a container limited to 2 CPUs on a 64-core node counts 2, not 64. Every default thread count
// (onnxruntime's threads per session, the cores replicas share, the kernels' pool, the server's
// plan) starts here: 64 threads in a 2-CPU container each get a sliver of a core and wait on each
// other at every operator.
//
// Where the quota is: the cgroup named in /proc/self/cgroup, under /sys/fs/cgroup, and every cgroup
// above it (a limit on a parent binds its children; the smallest counts):
//   cgroup v2 ("0::<path>")                 <path>/cpu.max: "<quota> <period>" or "max <period>"
//   cgroup v1 ("N:...cpu...:<path>")        cpu,cpuacct/<path>/cpu.cfs_quota_us (-1: none) and
//                                           cpu.cfs_period_us (or cpu/ instead of cpu,cpuacct/)
// Inside a container with its own cgroup namespace the path is "/", the container's own limit.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Where to look for the quota (tests give a fake tree). */
export interface CgroupFiles {
  /** the cgroup filesystem's mount point (default /sys/fs/cgroup) */
  root: string;
  /** this process's cgroups, /proc/self/cgroup's format */
  self: string;
}

const SYSTEM: CgroupFiles = { root: '/sys/fs/cgroup', self: '/proc/self/cgroup' };

/**
 * os.availableParallelism(), capped by the CPU quota of this process's cgroup (rounded up, at least
 * 1). `cpuMax` reads that one cgroup v2 cpu.max file instead of finding the cgroup; `files` points the
 * search at another tree.
 */
export function usableCores(cpuMax?: string, files: CgroupFiles = SYSTEM): number {
  const cores = os.availableParallelism();
  const limit = cpuMax !== undefined ? cpuMaxLimit(read(cpuMax)) : cgroupCpuLimit(files);
  return limit === undefined ? cores : Math.max(1, Math.min(cores, Math.ceil(limit)));
}

/** The tightest CPU quota (in cores, fractional) over this process's cgroups and their ancestors; undefined: none. */
export function cgroupCpuLimit(files: CgroupFiles = SYSTEM): number | undefined {
  const self = read(files.self);
  if (self === undefined) return undefined;
  let best: number | undefined;
  const take = (v: number | undefined) => {
    if (v !== undefined && (best === undefined || v < best)) best = v;
  };
  for (const line of self.split('\n')) {
    const m = /^\d+:([^:]*):(\/.*)$/.exec(line.trim());
    if (!m) continue;
    const [, controllers, cgroup] = m;
    if (controllers === '') {
      for (const dir of upwards(files.root, cgroup)) take(cpuMaxLimit(read(path.join(dir, 'cpu.max'))));
    } else if (controllers.split(',').includes('cpu')) {
      for (const mount of [controllers, 'cpu,cpuacct', 'cpu']) {
        const base = path.join(files.root, mount);
        if (!fs.existsSync(base)) continue;
        for (const dir of upwards(base, cgroup)) take(cfsLimit(read(path.join(dir, 'cpu.cfs_quota_us')), read(path.join(dir, 'cpu.cfs_period_us'))));
        break;
      }
    }
  }
  return best;
}

/** base/cgroup and each folder above it up to base. */
function upwards(base: string, cgroup: string): string[] {
  const dirs: string[] = [];
  for (let p = path.posix.normalize(cgroup); ; p = path.posix.dirname(p)) {
    dirs.push(path.join(base, p));
    if (p === '/' || p === '.') return dirs;
  }
}

function read(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** cgroup v2 cpu.max: "<quota> <period>" in cores, undefined for "max" or no file. */
function cpuMaxLimit(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const [quota, period] = text.trim().split(/\s+/).map(Number);
  return quota > 0 && period > 0 ? quota / period : undefined;
}

/** cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us in cores, undefined for -1 or no file. */
function cfsLimit(quota: string | undefined, period: string | undefined): number | undefined {
  const q = Number(quota?.trim());
  const p = Number(period?.trim());
  return q > 0 && p > 0 ? q / p : undefined;
}
