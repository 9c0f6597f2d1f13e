/**
 * CRI's masked_paths and readonly_paths as mounts. runsc ignores the OCI
 * spec's linux.maskedPaths and linux.readonlyPaths (runsc 20240729), so, as
 * runc does by hand: a masked file is covered by an empty file no one may
 * execute, a masked directory by an empty read-only tmpfs, and a read-only
 * path is the image's own copy bound read-only.
 *
 * Paths under /proc and /sys are left alone: the sandbox's procfs and sysfs
 * are gVisor's own and do not have what kubelet's defaults hide there (and
 * mounting over a file they lack would fail the container).
 */
import { lstat, readFile, readlink, realpath } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { OciMount } from './oci-spec.js';

/** Symlinks followed inside the image before giving up on a path. */
const MAX_LINKS = 8;

export interface PathMountInput {
  /** The container's image snapshot, as the container sees it at /. */
  rootfsDir: string;
  masked: readonly string[];
  readonly: readonly string[];
  /** An empty host file with mode 0000 (PodRuntime makes it). */
  emptyFile: string;
  /** Destinations of the container's own mounts: those win. */
  taken: ReadonlySet<string>;
}

export async function pathMounts(input: PathMountInput): Promise<OciMount[]> {
  const out: OciMount[] = [];
  const seen = new Set(input.taken);
  for (const [path, how] of [...input.masked.map((p) => [p, 'mask'] as const), ...input.readonly.map((p) => [p, 'readonly'] as const)]) {
    const dest = posix.normalize(path);
    if (!dest.startsWith('/') || seen.has(dest) || /^\/(proc|sys)(\/|$)/.test(dest)) continue;
    const found = await resolveInImage(input.rootfsDir, dest);
    if (!found) continue;
    seen.add(dest);
    if (how === 'readonly') out.push({ destination: dest, type: 'bind', source: posix.join(input.rootfsDir, found.path), options: ['rbind', 'ro'] });
    else if (found.dir) out.push({ destination: dest, type: 'tmpfs', source: 'tmpfs', options: ['ro', 'nosuid', 'nodev', 'noexec', 'size=0'] });
    else out.push({ destination: dest, type: 'bind', source: input.emptyFile, options: ['rbind', 'ro'] });
  }
  return out;
}

/**
 * `path` inside the image, every symlink on the way resolved within the
 * image (component by component, so the host never follows one of the
 * image's absolute links); undefined when absent.
 */
export async function resolveInImage(rootfs: string, path: string): Promise<{ path: string; dir: boolean } | undefined> {
  let rest = path.split('/').filter((p) => p !== '' && p !== '.');
  let resolved: string[] = [];
  let dir = true;
  let hops = 0;
  while (rest.length > 0) {
    const name = rest.shift()!;
    if (name === '..') {
      resolved.pop();
      continue;
    }
    const candidate = [...resolved, name];
    const st = await lstat(posix.join(rootfs, ...candidate)).catch(() => undefined);
    if (!st) return undefined;
    if (st.isSymbolicLink()) {
      if (++hops > MAX_LINKS) return undefined;
      const target = await readlink(posix.join(rootfs, ...candidate));
      if (target.startsWith('/')) resolved = [];
      rest = [...target.split('/').filter((p) => p !== '' && p !== '.'), ...rest];
      continue;
    }
    if (rest.length > 0 && !st.isDirectory()) return undefined;
    resolved = candidate;
    dir = st.isDirectory();
  }
  return { path: `/${resolved.join('/')}`, dir };
}

/**
 * Host mounts below a read-only volume, each as a mount of its own with its
 * own read-only flag. In gVisor a bind is one sentry mount, read-only as a
 * whole, where Linux's non-recursive read-only bind (what Kubernetes asks
 * for) leaves a writable tmpfs mounted inside the volume writable. A
 * recursive read-only volume (KEP-3857) is what gVisor gives already, so it
 * gets none.
 */
export async function submountsOf(binds: readonly { hostPath: string; containerPath: string; readonly: boolean; recursiveReadOnly?: boolean }[], mountinfo?: string): Promise<OciMount[]> {
  const readOnly = binds.filter((b) => b.readonly && !b.recursiveReadOnly);
  if (readOnly.length === 0) return [];
  const text = mountinfo ?? (await readFile('/proc/self/mountinfo', 'utf8'));
  const points = text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const f = l.split(' ');
      return { path: unescapeMountinfo(f[4] ?? ''), ro: (f[5] ?? '').split(',').includes('ro') };
    });
  const out: OciMount[] = [];
  for (const b of readOnly) {
    const base = await realpath(b.hostPath).catch(() => b.hostPath);
    for (const p of points) {
      if (!p.path.startsWith(`${base}/`)) continue;
      out.push({ destination: posix.join(b.containerPath, p.path.slice(base.length)), type: 'bind', source: p.path, options: ['rbind', p.ro ? 'ro' : 'rw'] });
    }
  }
  // Parents before children, so each lands inside the one above it.
  return out.sort((x, y) => x.destination.split('/').length - y.destination.split('/').length);
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/**
 * Files of image snapshots, read once. A snapshot's path names its chain id
 * and its content never changes (a container writes to gVisor's overlay,
 * not to the snapshot), so CreateContainer need not read an image's
 * /etc/passwd and /etc/group again for each container: that was six
 * threadpool round trips on the call's path. Only files found are kept, so
 * a read that failed for a passing reason is made again next time.
 */
export class ImageFileCache {
  private readonly files = new Map<string, string>();

  constructor(private readonly maxEntries = 64) {}

  async read(rootfs: string, rel: string): Promise<string | undefined> {
    const key = `${rootfs}\0${rel}`;
    const kept = this.files.get(key);
    if (kept !== undefined) return kept;
    const text = await readImageFile(rootfs, rel);
    if (text === undefined) return undefined;
    if (this.files.size >= this.maxEntries) this.files.delete(this.files.keys().next().value!);
    this.files.set(key, text);
    return text;
  }
}

/** Reads a file of an image's rootfs, its links resolved inside the image (a hostile image must not make us read host files). */
export async function readImageFile(rootfs: string, rel: string): Promise<string | undefined> {
  const found = await resolveInImage(rootfs, `/${rel}`);
  if (!found || found.dir) return undefined;
  return readFile(join(rootfs, found.path), 'utf8').catch(() => undefined);
}
