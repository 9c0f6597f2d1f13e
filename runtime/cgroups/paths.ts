/**
 * Where a pod's sandbox cgroup lives, for kubelet's two cgroup drivers.
 * Pure functions: the result is a path relative to a hierarchy's root
 * ("/kubepods/burstable/pod1/<id>"), the same on cgroup v1 (under each
 * controller's mount) and v2 (under the unified mount).
 */

export type CgroupDriver = 'cgroupfs' | 'systemd';

/** The daemon-wide parent of sandboxes whose pod names no cgroup_parent, unless configured otherwise. */
export const DEFAULT_CGROUP_PARENT = 'gvisor-cri';

/** Prefix of the scope a sandbox gets under the systemd driver (CRI-O's "crio-<id>.scope" convention). */
export const SYSTEMD_SCOPE_PREFIX = 'gvisor-cri';

/** A cgroup_parent or config value we cannot place a sandbox under. */
export class CgroupPathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CgroupPathError';
  }
}

const SLICE_SUFFIX = '.slice';

/**
 * The cgroupfs path systemd gives a slice: every dash-separated prefix is
 * a parent slice, so "kubepods-burstable-pod1.slice" lives at
 * "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice".
 * "-.slice" is the root slice.
 */
export function expandSlice(slice: string): string {
  if (!slice.endsWith(SLICE_SUFFIX) || slice.includes('/')) throw new CgroupPathError(`"${slice}" is not a systemd slice name (expected e.g. "kubepods-burstable-pod1.slice")`);
  const name = slice.slice(0, -SLICE_SUFFIX.length);
  if (name === '-') return '/';
  const parts = name.split('-');
  if (parts.some((p) => p === '')) throw new CgroupPathError(`systemd slice name "${slice}" has an empty component`);
  let path = '';
  let prefix = '';
  for (const p of parts) {
    prefix = prefix ? `${prefix}-${p}` : p;
    path += `/${prefix}${SLICE_SUFFIX}`;
  }
  return path;
}

/**
 * The OCI `slice:prefix:name` form runc and runsc take with a systemd
 * cgroup manager, turned into the cgroupfs path systemd would make for it:
 * the slice's path, then the scope unit "<prefix>-<name>.scope".
 */
export function systemdCgroupPath(spec: string): string {
  const parts = spec.split(':');
  if (parts.length !== 3 || parts.some((p) => p === '')) throw new CgroupPathError(`"${spec}" is not of the systemd form slice:prefix:name`);
  const [slice, prefix, name] = parts as [string, string, string];
  if (name.includes('/') || prefix.includes('/')) throw new CgroupPathError(`"${spec}": a scope name cannot hold "/"`);
  const base = expandSlice(slice);
  return `${base === '/' ? '' : base}/${prefix}-${name}.scope`;
}

/** "/a/b" with no empty, "." or ".." component: a path that stays inside the hierarchy. */
function checkCgroupfsPath(path: string, what: string): string {
  if (!path.startsWith('/')) throw new CgroupPathError(`${what} "${path}" must be an absolute cgroup path (e.g. /kubepods/burstable/pod1)`);
  const parts = path.split('/').filter((p) => p !== '');
  if (parts.some((p) => p === '.' || p === '..')) throw new CgroupPathError(`${what} "${path}" may not hold "." or ".."`);
  return parts.length === 0 ? '/' : `/${parts.join('/')}`;
}

/**
 * The daemon-wide parent as the driver wants it: "gvisor-cri" becomes
 * "/gvisor-cri" (cgroupfs) or "gvisor-cri.slice" (systemd); a value
 * already in the driver's form is taken as is.
 */
export function defaultParentFor(driver: CgroupDriver, configured: string): string {
  if (driver === 'systemd') return configured.endsWith(SLICE_SUFFIX) ? configured : `${configured.replace(/^\/+/, '')}${SLICE_SUFFIX}`;
  return configured.startsWith('/') ? configured : `/${configured}`;
}

/**
 * The sandbox cgroup of pod sandbox `sandboxId`: under the pod's
 * cgroup_parent when kubelet gave one, else under the daemon-wide parent,
 * never at a hierarchy's root. cgroupfs: "<parent>/<id>"; systemd: the
 * parent is a slice name and the sandbox is the scope "gvisor-cri-<id>.scope"
 * in it (kubelet's systemd driver hands "kubepods-burstable-pod<uid>.slice").
 */
export function sandboxCgroupPath(driver: CgroupDriver, cgroupParent: string | undefined, defaultParent: string, sandboxId: string): string {
  const parent = cgroupParent || defaultParentFor(driver, defaultParent);
  if (driver === 'systemd') return systemdCgroupPath(`${parent}:${SYSTEMD_SCOPE_PREFIX}:${sandboxId}`);
  const base = checkCgroupfsPath(parent, 'cgroup parent');
  return `${base === '/' ? '' : base}/${sandboxId}`;
}

/** The ancestors of a cgroup path, nearest first, without the root: "/a/b/c" → ["/a/b", "/a"]. */
export function ancestors(path: string): string[] {
  const out: string[] = [];
  const parts = path.split('/').filter((p) => p !== '');
  for (let i = parts.length - 1; i > 0; i--) out.push(`/${parts.slice(0, i).join('/')}`);
  return out;
}
