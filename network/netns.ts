import { open, readFile, rm } from 'node:fs/promises';
import type { Launcher } from '../common/index.js';
import { ToolError, ipInNetns, umount, unshareNetWithLoopback } from './tools.js';

/**
 * Pod network namespaces are files under <runDir>/netns with a namespace
 * bind-mounted on them: they outlive the process that made them, so a
 * restarted daemon finds them again by path.
 */

/** Mount points in this mount namespace, as /proc/self/mountinfo spells them (octal escapes undone). */
async function mountPoints(): Promise<Set<string>> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (field) out.add(field.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}

/** Whether a namespace is still mounted on path. */
export async function netnsExists(path: string): Promise<boolean> {
  return (await mountPoints()).has(path);
}

/** Creates a new network namespace on path with its loopback up; leaves nothing behind on failure. */
export async function createNetns(path: string, launcher?: Launcher): Promise<void> {
  const fh = await open(path, 'wx', 0o444);
  await fh.close();
  try {
    await unshareNetWithLoopback(path, launcher);
  } catch (err) {
    await removeNetns(path, launcher).catch(() => undefined);
    throw err;
  }
}

/** Unmounts and deletes the namespace file; a path already gone is fine. */
export async function removeNetns(path: string, launcher?: Launcher): Promise<void> {
  // A path can carry stacked mounts if something bound it twice; peel them all.
  for (let i = 0; i < 8 && (await netnsExists(path)); i++) {
    try {
      await umount(path, launcher);
    } catch (err) {
      if (!(err instanceof ToolError) || (await netnsExists(path))) throw err;
    }
  }
  await rm(path, { force: true });
}

/**
 * Recreates a namespace that vanished before CNI DEL, holding an ifName
 * with the pod's old addresses: some plugins (bridge with ipMasq) learn what
 * to clean up from the addresses they find there, and leak otherwise.
 */
export async function createPlaceholderNetns(path: string, ifName: string, cidrs: readonly string[], launcher?: Launcher): Promise<void> {
  await removeNetns(path, launcher);
  await createNetns(path, launcher);
  try {
    // A veth with both ends inside: the dummy driver is not in every kernel, veth is (the bridge plugin needs it).
    await ipInNetns(path, ['link', 'add', ifName, 'type', 'veth', 'peer', 'name', 'placeholder0'], launcher);
    for (const cidr of cidrs) await ipInNetns(path, ['addr', 'add', cidr, 'dev', ifName], launcher);
  } catch (err) {
    await removeNetns(path, launcher).catch(() => undefined);
    throw err;
  }
}

/**
 * Puts back on ifName whichever of cidrs it lost. runsc (--network=sandbox)
 * moves the pod's addresses into gVisor and strips them from the netns; the
 * bridge plugin's DEL finds its masquerade rules through those addresses.
 * A namespace without ifName is left alone.
 */
export async function restoreAddresses(path: string, ifName: string, cidrs: readonly string[], launcher?: Launcher): Promise<void> {
  for (const cidr of cidrs) {
    try {
      // replace: adds a lost address, keeps one still there; one process per address.
      await ipInNetns(path, ['addr', 'replace', cidr, 'dev', ifName], launcher);
    } catch (err) {
      if (!(await linkExists(path, ifName, launcher))) return;
      throw err;
    }
  }
}

async function linkExists(path: string, ifName: string, launcher: Launcher | undefined): Promise<boolean> {
  return ipInNetns(path, ['link', 'show', 'dev', ifName], launcher).then(
    () => true,
    () => false,
  );
}

/** Adds (or replaces) each route on ifName; routes through a gateway follow the addresses they need. */
export async function restoreRoutes(path: string, ifName: string, routes: readonly { dst: string; gw?: string }[], launcher?: Launcher): Promise<void> {
  for (const r of routes) {
    const family = r.dst.includes(':') ? '-6' : '-4';
    await ipInNetns(path, [family, 'route', 'replace', r.dst, ...(r.gw ? ['via', r.gw] : []), 'dev', ifName], launcher);
  }
}
