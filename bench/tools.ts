/**
 * The external programs the bench setup and cleanup call (ip, iptables,
 * umount, apt-get, sync, version queries), and the floor of the network case
 * (unshare, umount, CNI plugins run by hand), each through one typed wrapper
 * with a timeout. The contenders' own tools (runsc, CNI plugins) go through
 * the repo's wrappers.
 */
import { execa } from 'execa';

const DEFAULT_TIMEOUT_MS = 30_000;

export interface ToolResult {
  ok: boolean;
  stdout: string;
  stderr: string;
}

async function run(binary: string, args: readonly string[], timeoutMs = DEFAULT_TIMEOUT_MS, env?: Record<string, string>, input?: string): Promise<ToolResult> {
  const r = await execa(binary, args, { reject: false, timeout: timeoutMs, env, ...(input === undefined ? { stdin: 'ignore' as const } : { input }) });
  return { ok: r.exitCode === 0 && !r.timedOut, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') || (r.timedOut ? `timed out after ${timeoutMs} ms` : '') };
}

/** Throws with the tool's own words when it failed. */
function must(what: string, r: ToolResult): ToolResult {
  if (!r.ok) throw new Error(`${what}: ${r.stderr.trim().slice(-500) || 'failed'}`);
  return r;
}

/** sync(1): every file system's dirty data written out. */
export async function syncDisks(): Promise<void> {
  must('sync', await run('sync', [], 120_000));
}

export const ip = {
  /** Names of links whose name starts with `prefix`. */
  async linksWithPrefix(prefix: string): Promise<string[]> {
    const r = must('ip -o link show', await run('ip', ['-o', 'link', 'show']));
    return r.stdout.split('\n').map((l) => l.split(':')[1]?.trim().split('@')[0] ?? '').filter((n) => n.startsWith(prefix));
  },
  async deleteLink(name: string): Promise<ToolResult> {
    return run('ip', ['link', 'delete', name]);
  },
};

export const iptables = {
  /** Rules of the nat table as `iptables -S` lines. */
  async natRules(): Promise<string[]> {
    const r = await run('iptables', ['-t', 'nat', '-S'], 60_000);
    return r.ok ? r.stdout.split('\n').filter(Boolean) : [];
  },
  async nat(args: readonly string[]): Promise<ToolResult> {
    return run('iptables', ['-w', '10', '-t', 'nat', ...args], 60_000);
  },
};

export const mount = {
  /** Mount points (from /proc/self/mountinfo order) under `dir`, deepest first. */
  async under(dir: string): Promise<string[]> {
    const { readFile } = await import('node:fs/promises');
    const text = await readFile('/proc/self/mountinfo', 'utf8');
    const points = text.split('\n').map((l) => l.split(' ')[4]).filter((p): p is string => p !== undefined && (p === dir || p.startsWith(`${dir}/`)));
    return [...new Set(points)].sort((a, b) => b.length - a.length);
  },
  async unmountLazy(path: string): Promise<ToolResult> {
    return run('umount', ['-l', path]);
  },
  async unmount(path: string): Promise<void> {
    must(`umount ${path}`, await run('umount', [path]));
  },
};

export const unshare = {
  /** A new network namespace kept alive by a bind mount on `file` (which must exist). */
  async netnsOn(file: string): Promise<void> {
    must(`unshare --net=${file}`, await run('unshare', [`--net=${file}`, 'true']));
  },
};

export const cniPlugin = {
  /** One CNI plugin call: parameters in `env`, the network config on stdin; resolves with its stdout. */
  async call(binary: string, env: Record<string, string>, conf: object, timeoutMs: number): Promise<string> {
    const r = await run(binary, [], timeoutMs, env, JSON.stringify(conf));
    if (!r.ok) throw new Error(`CNI ${env.CNI_COMMAND ?? '?'} ${binary}: ${(r.stdout.trim() || r.stderr.trim()).slice(-500) || 'failed'}`);
    return r.stdout;
  },
};

export const apt = {
  async isInstalled(pkg: string): Promise<boolean> {
    const r = await run('dpkg-query', ['-W', '-f=${Status}', pkg]);
    return r.ok && r.stdout.includes('install ok installed');
  },
  /** apt-get install; the bench's own setup only, never scripts/setup.sh. */
  async install(pkgs: readonly string[]): Promise<void> {
    const env = { DEBIAN_FRONTEND: 'noninteractive' };
    const first = await run('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], 600_000, env);
    if (first.ok) return;
    must('apt-get update', await run('apt-get', ['update'], 600_000, env));
    must(`apt-get install ${pkgs.join(' ')}`, await run('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], 600_000, env));
  },
};

/** First line of `BINARY ARGS` (a version query), or undefined when it fails. */
export async function versionOf(binary: string, args: readonly string[] = ['--version']): Promise<string | undefined> {
  const r = await run(binary, args, 10_000).catch(() => undefined);
  return r?.ok ? r.stdout.split('\n')[0]?.trim() : undefined;
}

export async function unameRelease(): Promise<string> {
  return (await versionOf('uname', ['-r'])) ?? 'unknown';
}
