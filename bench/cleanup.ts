/**
 * The backstop after the contenders' own orderly teardown, and the sweep of
 * leftovers of an earlier, killed bench run: processes that name the bench
 * dir, runsc state, mounts (netns, rootfs, overlays) under it, the run's
 * bridges and its iptables rules, then the dir itself.
 */
import { readFileSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { BENCH_DIR_PREFIX, benchDirOf, bridgeName, networkName } from './env.js';
import { isAlive, processTable } from './procs.js';
import { ip, iptables, mount } from './tools.js';

/** Contenders' networks, then the network case's NetworkManager (m) and hand-run (h) networks. */
const LETTERS = ['r', 'n', 'g', 'c', 'm', 'h'];

/**
 * Removes iptables nat rules whose comment names one of `networks`, and the
 * CNI chains they jump to; rules whose comment names a pod of `liveIds`
 * (the CNI container id) stay.
 */
export async function removeNatRules(networks: readonly string[], liveIds: ReadonlySet<string> = new Set()): Promise<number> {
  const rules = await iptables.natRules();
  const live = [...liveIds];
  const ours = rules.filter((r) => r.startsWith('-A ') && networks.some((n) => r.includes(`\\"${n}\\"`) || r.includes(`"${n}"`)) && !live.some((id) => r.includes(id)));
  const chains = new Set<string>();
  let removed = 0;
  for (const rule of ours) {
    const chain = rule.split(' ')[1];
    const target = / -j (CNI-[A-Za-z0-9-]+)/.exec(rule)?.[1];
    if (target) chains.add(target);
    // Delete by position: re-parsing iptables' quoting is not worth it.
    const listing = (await iptables.nat(['-S', chain])).stdout.split('\n').filter((l) => l.startsWith('-A '));
    const pos = listing.indexOf(rule);
    if (pos >= 0 && (await iptables.nat(['-D', chain, String(pos + 1)])).ok) removed++;
  }
  for (const c of chains) {
    await iptables.nat(['-F', c]);
    await iptables.nat(['-X', c]);
  }
  return removed;
}

/** Tears down everything the bench run `pid` left (its own run at the end, or a dead earlier one). */
export async function sweepRun(pid: number, log: (line: string) => void): Promise<void> {
  const dir = benchDirOf(pid);
  // Processes: daemons, shims, adapter waiters, sandboxes (their argv names the dir).
  const table = await processTable();
  const procs = table.filter((p) => p.pid !== process.pid && p.argv.some((a) => a.includes(`${dir}/`) || a === dir));
  if (procs.length > 0) log(`cleanup: killing ${procs.length} leftover processes of ${dir}`);
  for (const p of procs) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && procs.some((p) => isAlive(p.pid) && !isZombie(p.pid))) await new Promise((r) => setTimeout(r, 50));
  const points = await mount.under(dir);
  for (const m of points) await mount.unmountLazy(m);
  if (points.length > 0) log(`cleanup: unmounted ${points.length} mounts under ${dir}`);
  const bridges = LETTERS.map((l) => bridgeName(pid, l));
  for (const b of await ip.linksWithPrefix(bridges[0].slice(0, -1))) {
    if (bridges.includes(b) && (await ip.deleteLink(b)).ok) log(`cleanup: deleted bridge ${b}`);
  }
  const removed = await removeNatRules(LETTERS.map((l) => networkName(pid, l)));
  if (removed > 0) log(`cleanup: removed ${removed} iptables nat rules`);
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

/** A zombie waits for its parent's reap, not for us. */
function isZombie(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return true;
  }
}

/** Sweeps bench dirs whose run is no longer alive. */
export async function sweepLeftovers(log: (line: string) => void): Promise<void> {
  const names = await readdir('/tmp').catch(() => [] as string[]);
  for (const name of names) {
    const full = `/tmp/${name}`;
    if (!full.startsWith(BENCH_DIR_PREFIX)) continue;
    const pid = Number(full.slice(BENCH_DIR_PREFIX.length));
    if (!Number.isInteger(pid) || pid === process.pid || isAlive(pid)) continue;
    log(`cleanup: sweeping leftovers of an earlier bench run (${full})`);
    await sweepRun(pid, log);
  }
}
