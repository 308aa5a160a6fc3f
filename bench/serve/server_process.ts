// The server under load, as a child process (`personafuse serve --port 0 --json`), and what
// Linux says about it and about the machine: the server's RSS (/proc/<pid>/status VmRSS,
// sampled every second), CPU seconds of the server, this process and the whole machine
// (/proc/<pid>/stat, process.cpuUsage, /proc/stat), load average and CPU pressure.
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { performance } from 'node:perf_hooks';

export interface ServerInfo {
  url: string;
  model?: string;
  experts?: string[];
  router?: boolean;
  loraLayout?: string;
  /** onnxruntime threads per replica, and engine replicas (serve's plan, lib/server/threads.ts) */
  threads?: number;
  replicas?: number;
  /** what became of malloc's thresholds (serve --tune-malloc, lib/cli/options.ts) */
  malloc?: string;
}

export interface SpawnedServer {
  child: ChildProcess;
  pid: number;
  info: ServerInfo;
  args: string[];
  startup_s: number;
  /** the last 64 KiB of its stderr */
  stderrTail(): string;
  /** set once it exited: code or signal */
  exit: { code: number | null; signal: string | null; at: number } | null;
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: string | null; stop_s: number; killed: boolean }>;
}

/** Starts `node <cli> serve ... --port 0 --json` and resolves once it printed its JSON line. */
export function spawnServer(cli: string, serveArgs: string[], timeoutMs: number, log: (s: string) => void): Promise<SpawnedServer> {
  const args = [cli, 'serve', ...serveArgs, '--port', '0', '--json'];
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => {
    stderr = (stderr + c).slice(-65536);
  });
  const server: Partial<SpawnedServer> & { exit: SpawnedServer['exit'] } = { child, pid: child.pid!, args: args.slice(1), exit: null, stderrTail: () => stderr };
  child.on('exit', (code, signal) => {
    server.exit = { code, signal, at: performance.now() };
  });
  server.stop = async (timeoutMs = 15000) => {
    const s0 = performance.now();
    if (server.exit) return { code: server.exit.code, signal: server.exit.signal, stop_s: 0, killed: false };
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    await exited;
    clearTimeout(timer);
    return { code: server.exit!.code, signal: server.exit!.signal, stop_s: (performance.now() - s0) / 1000, killed };
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the server printed no JSON line within ${timeoutMs / 1000} s; stderr:\n${stderr.slice(-2000)}`));
    }, timeoutMs);
    const onExit = (code: number | null, signal: string | null) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${signal ?? code}) before it was ready; stderr:\n${stderr.slice(-4000)}`));
    };
    child.once('exit', onExit);
    child.stdout!.setEncoding('utf8');
    const onData = (c: string) => {
      stdout += c;
      for (let nl = stdout.indexOf('\n'); nl >= 0; nl = stdout.indexOf('\n')) {
        const line = stdout.slice(0, nl).trim();
        stdout = stdout.slice(nl + 1);
        if (!line.startsWith('{')) {
          if (line) log(`server: ${line}`);
          continue;
        }
        let info: ServerInfo;
        try {
          info = JSON.parse(line) as ServerInfo;
        } catch {
          continue;
        }
        if (typeof info.url !== 'string') continue;
        clearTimeout(timer);
        child.off('exit', onExit);
        child.stdout!.off('data', onData);
        child.stdout!.resume(); // keep draining whatever it prints later
        server.info = info;
        server.startup_s = (performance.now() - t0) / 1000;
        resolve(server as SpawnedServer);
        return;
      }
    };
    child.stdout!.on('data', onData);
  });
}

/** VmRSS and VmHWM of a process in MiB, null when it is gone (or not Linux). */
export function readRss(pid: number): { rss_mib: number; hwm_mib: number } | null {
  try {
    const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s*(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
    return { rss_mib: kib('VmRSS') / 1024, hwm_mib: kib('VmHWM') / 1024 };
  } catch {
    return null;
  }
}

export interface RssSample { t_s: number; rss_mib: number }

/** Samples a process's RSS every `everyMs` (times in seconds from `origin`, a performance.now()). */
export class RssSampler {
  readonly samples: RssSample[] = [];
  #timer: NodeJS.Timeout | undefined;
  constructor(readonly pid: number, readonly origin: number, everyMs = 1000) {
    this.sample();
    this.#timer = setInterval(() => this.sample(), everyMs);
    this.#timer.unref();
  }
  sample(): RssSample | null {
    const r = readRss(this.pid);
    if (!r) return null;
    const s = { t_s: (performance.now() - this.origin) / 1000, rss_mib: r.rss_mib };
    this.samples.push(s);
    return s;
  }
  stop(): void {
    clearInterval(this.#timer);
  }
}

const CLK_TCK = 100; // USER_HZ: 100 on every Linux build Node runs on

/** CPU seconds (user + system) a process used so far, all its threads (or with `tid`, that
 *  thread only: tid = pid is the main thread); null when unreadable. */
export function processCpuSeconds(pid: number, tid?: number): number | null {
  try {
    const text = fs.readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK; // fields 14, 15: utime, stime
  } catch {
    return null;
  }
}

/** Busy and total CPU seconds of the whole machine (all cores) from /proc/stat. */
export function machineCpuSeconds(): { busy: number; total: number } | null {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0); // user nice system idle iowait irq softirq steal
    return { busy: (total - f[3] - f[4]) / CLK_TCK, total: total / CLK_TCK };
  } catch {
    return null;
  }
}

export interface CpuMark { server: number | null; serverMain: number | null; client: number; machine: { busy: number; total: number } | null; t: number }

export function cpuMark(serverPid: number | null): CpuMark {
  const u = process.cpuUsage();
  return {
    server: serverPid === null ? null : processCpuSeconds(serverPid),
    serverMain: serverPid === null ? null : processCpuSeconds(serverPid, serverPid),
    client: (u.user + u.system) / 1e6, machine: machineCpuSeconds(), t: performance.now(),
  };
}

/** CPU use between two marks: seconds, and cores' worth (seconds / wall). `others` is the rest of the machine. */
export function cpuBetween(a: CpuMark, b: CpuMark): Record<string, number | null> {
  const wall = (b.t - a.t) / 1000;
  const server = a.server !== null && b.server !== null ? b.server - a.server : null;
  // the server's main thread (HTTP, JSON, detokenizing the stream); the rest is the engine's worker
  // thread, onnxruntime's threads and V8's helpers
  const serverMain = a.serverMain !== null && b.serverMain !== null ? b.serverMain - a.serverMain : null;
  const client = b.client - a.client;
  const busy = a.machine && b.machine ? b.machine.busy - a.machine.busy : null;
  const others = busy !== null ? Math.max(0, busy - (server ?? 0) - client) : null;
  const cores = (s: number | null) => (s === null ? null : s / wall);
  return {
    wall_s: wall, server_s: server, server_main_thread_s: serverMain, client_s: client, machine_busy_s: busy, others_s: others,
    server_cores: cores(server), server_main_thread_cores: cores(serverMain), client_cores: cores(client), machine_busy_cores: cores(busy), others_cores: cores(others),
  };
}

/** The busiest other processes right now (CPU share over `ms`), for the record of what else ran. */
export async function busiestProcesses(exclude: number[], ms = 1000, top = 6): Promise<{ pid: number; cmd: string; cores: number; rss_mib: number }[]> {
  const snap = () => {
    const out = new Map<number, { cpu: number; cmd: string; rss: number }>();
    for (const d of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      const pid = Number(d);
      try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim().slice(0, 120) || stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
        out.set(pid, { cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK, cmd, rss: (Number(f[21]) * 4096) / 2 ** 20 });
      } catch {
        // gone
      }
    }
    return out;
  };
  const a = snap();
  await new Promise((r) => setTimeout(r, ms));
  const b = snap();
  const rows: { pid: number; cmd: string; cores: number; rss_mib: number }[] = [];
  for (const [pid, v] of b) {
    if (exclude.includes(pid)) continue;
    const before = a.get(pid);
    if (!before) continue;
    rows.push({ pid, cmd: v.cmd, cores: (v.cpu - before.cpu) / (ms / 1000), rss_mib: v.rss });
  }
  return rows.sort((x, y) => y.cores - x.cores).slice(0, top).filter((r) => r.cores > 0.01);
}
