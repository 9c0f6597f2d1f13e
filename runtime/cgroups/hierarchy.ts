/**
 * Which cgroup hierarchies this host has, from /proc/self/mountinfo: v1
 * (one mount per controller or group of them) or v2 (one unified mount).
 * A hybrid host (v1 controllers plus an empty cgroup2, as here) is v1.
 */
import { readFile } from 'node:fs/promises';

export type CgroupLayout =
  /** `mounts`: every v1 hierarchy (named ones such as name=systemd too) with its controllers. */
  | { version: 1; mounts: { path: string; controllers: string[] }[] }
  | { version: 2; path: string };

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The layout a mountinfo text describes; undefined when it mounts no cgroup filesystem. */
export function parseMountinfo(text: string): CgroupLayout | undefined {
  const v1: { path: string; controllers: string[] }[] = [];
  let v2: string | undefined;
  for (const line of text.split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const mountPoint = pre.split(' ')[4];
    const [fstype, , superOpts = ''] = post.split(' ');
    if (!mountPoint) continue;
    if (fstype === 'cgroup2') v2 ??= unescape(mountPoint);
    if (fstype === 'cgroup') {
      const controllers = superOpts.split(',').filter((o) => o !== 'rw' && o !== 'ro' && !o.startsWith('release_agent=') && o !== 'clone_children' && o !== 'noprefix' && o !== 'xattr');
      v1.push({ path: unescape(mountPoint), controllers });
    }
  }
  if (v1.some((m) => m.controllers.includes('memory'))) return { version: 1, mounts: v1 };
  if (v2 !== undefined) return { version: 2, path: v2 };
  return undefined;
}

export async function readLayout(): Promise<CgroupLayout | undefined> {
  return parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

/** The mount holding `controller` on v1, or the unified mount on v2; undefined when the host lacks it. */
export function controllerRoot(layout: CgroupLayout, controller: string): string | undefined {
  if (layout.version === 2) return layout.path;
  return layout.mounts.find((m) => m.controllers.includes(controller))?.path;
}

/** Every directory tree a cgroup path exists in: each v1 hierarchy, or the one v2 tree. */
export function allRoots(layout: CgroupLayout): string[] {
  return layout.version === 2 ? [layout.path] : layout.mounts.map((m) => m.path);
}
