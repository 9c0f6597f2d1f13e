/**
 * Process-table accounting from /proc: who belongs to a contender, and how
 * much memory it holds. Sandbox processes (runsc-sandbox, runsc-gofer) are
 * the same for every gVisor contender and are counted apart from the
 * daemon's own processes.
 */
import { readdir, readFile } from 'node:fs/promises';

export interface ProcInfo {
  pid: number;
  ppid: number;
  argv: string[];
}

export interface MemoryFigure {
  /** Sum of VmRSS (shared pages counted once per process). */
  rssBytes: number;
  /** Sum of Pss (shared pages split between their users): the fairer sum. */
  pssBytes: number;
  processes: number;
  /** How many processes of each program (argv[0] base name, runsc subcommand) were counted. */
  programs: Record<string, number>;
}

export async function processTable(): Promise<ProcInfo[]> {
  const out: ProcInfo[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      // The command name may hold spaces and parentheses: fields start after the last ')'.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const argv = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0').filter((a) => a !== '');
      out.push({ pid: Number(name), ppid: Number(rest[1]), argv });
    } catch {
      // Exited while we looked.
    }
  }
  return out;
}

/** `roots` and every process below them. */
export function descendants(table: readonly ProcInfo[], roots: readonly number[]): ProcInfo[] {
  const children = new Map<number, ProcInfo[]>();
  for (const p of table) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p]);
  const seen = new Set<number>();
  const out: ProcInfo[] = [];
  const queue = table.filter((p) => roots.includes(p.pid));
  while (queue.length > 0) {
    const p = queue.shift()!;
    if (seen.has(p.pid)) continue;
    seen.add(p.pid);
    out.push(p);
    queue.push(...(children.get(p.pid) ?? []));
  }
  return out;
}

/** A gVisor sandbox or gofer process (runsc re-executes itself under these names). */
export function isSandboxProcess(p: ProcInfo): boolean {
  const a0 = p.argv[0] ?? '';
  return a0 === 'runsc-sandbox' || a0 === 'runsc-gofer' || (a0.endsWith('runsc') && (p.argv.includes('boot') || p.argv.includes('gofer')));
}

/**
 * Sandbox processes of the runsc state root `root` or a root below it
 * (containerd's shim appends the namespace), with their children (systrap's
 * stub processes, which have no argv).
 */
export function sandboxProcessesOf(table: readonly ProcInfo[], root: string): ProcInfo[] {
  const under = (r: string): boolean => r === root || r.startsWith(`${root}/`);
  const tops = table.filter((p) => isSandboxProcess(p) && p.argv.some((a, i) => (a.startsWith('--root=') && under(a.slice(7))) || (a === '--root' && under(p.argv[i + 1] ?? ''))));
  return descendants(table, tops.map((p) => p.pid));
}

/** `roots` and every process below them, leaving out sandbox processes and everything below those. */
export function helpersBelow(table: readonly ProcInfo[], roots: readonly number[]): ProcInfo[] {
  const sandboxTrees = new Set(descendants(table, table.filter(isSandboxProcess).map((p) => p.pid)).map((p) => p.pid));
  return descendants(table, roots).filter((p) => !sandboxTrees.has(p.pid));
}

async function kib(path: string, field: string): Promise<number> {
  try {
    const text = await readFile(path, 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export async function memoryOf(procs: readonly ProcInfo[]): Promise<MemoryFigure> {
  let rssBytes = 0;
  let pssBytes = 0;
  const programs: Record<string, number> = {};
  for (const p of procs) {
    const base = (p.argv[0] ?? '?').split('/').pop() ?? '?';
    const name = base === 'runsc' ? `runsc ${p.argv.find((a, i) => i > 0 && !a.startsWith('-') && !p.argv[i - 1].match(/^--(root|log|log-format)$/)) ?? ''}` : base;
    programs[name] = (programs[name] ?? 0) + 1;
    rssBytes += await kib(`/proc/${p.pid}/status`, 'VmRSS');
    pssBytes += await kib(`/proc/${p.pid}/smaps_rollup`, 'Pss');
  }
  return { rssBytes, pssBytes, processes: procs.length, programs };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once gone or after a bound. */
export async function terminate(pid: number, graceMs = 5000): Promise<void> {
  if (!isAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && isAlive(pid)) await new Promise((r) => setTimeout(r, 50));
  if (isAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
}
